"""Packaging gate of `make test`: build the sdist and wheel, `twine check` them, install the wheel
into a clean virtual environment and check that `airflow providers list` shows this provider with
this version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from runway_provider import __version__  # noqa: E402


def run(*command: str | os.PathLike[str], **kwargs: object) -> str:
    print("+", " ".join(map(str, command)), flush=True)
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs).stdout  # type: ignore[call-overload]


def main() -> None:
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
    artifacts = sorted(dist.iterdir())
    print(run(sys.executable, "-m", "twine", "check", "--strict", *artifacts))
    [wheel] = [path for path in artifacts if path.suffix == ".whl"]
    with tempfile.TemporaryDirectory() as folder:
        venv = Path(folder) / "venv"
        run(sys.executable, "-m", "venv", venv)
        run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(Path(folder) / "home"),
            "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        }
        listed = run(venv / "bin" / "airflow", "providers", "list", env=env, cwd=folder)
    line = next((line for line in listed.splitlines() if line.startswith("airflow-provider-runway")), None)
    if line is None or __version__ not in line:
        sys.exit(f"airflow providers list does not show airflow-provider-runway {__version__}:\n{listed}")
    print(
        f"Packaging OK: {', '.join(path.name for path in artifacts)}; `airflow providers list`: {line.strip()}"
    )


if __name__ == "__main__":
    main()
