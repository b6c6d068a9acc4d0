"""docs/first-dag.md works as written: its DAG file and its shell steps, taken from the page itself,
run under a real Airflow against the emulator started by its console command, and store a video.

And what the page and Troubleshooting promise after a failed store: rerunning only the store task
in the same run stores the video without a second generation."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.testing.emulator import connection_json
from runway_provider.testing.sandbox import AirflowSandbox
from tests.helpers import free_port

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "first-dag.md").read_text()
SAMPLE_SHA = hashlib.sha256((ROOT / "runway_provider/testing/media/sample.mp4").read_bytes()).hexdigest()
DAG_ID = "first_runway_video"
EXPORT = re.compile(r"^export AIRFLOW_CONN_RUNWAY_DEFAULT=.*$", re.M)


def page_block(marker: str, language: str) -> str:
    """The first ``language`` code block after the page's ``<!-- first-dag:<marker> -->`` comment."""
    after = PAGE.split(f"<!-- first-dag:{marker} -->", 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", after, re.S)
    assert found, f"no {language} block after the {marker} marker"
    return found.group(1)


def newcomer_env(home: Path) -> dict[str, str]:
    """A fresh shell: the project's virtualenv on PATH, nothing of Airflow's set, HOME its own."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    # PYTHONPATH: the checkout under test, not another one installed in the virtualenv.
    return env | {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def console_emulator(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``runway-emulator`` as the page starts it (on a free port): its base URL and the export line it prints."""
    port = free_port()
    process = subprocess.Popen(
        ["runway-emulator", "--port", str(port)],
        env=newcomer_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        [export] = [line.rstrip("\n") for line in lines if line.startswith("export ")]
        yield f"http://127.0.0.1:{port}", export
    finally:
        process.terminate()
        process.wait(10)


def test_the_page_shows_what_the_emulator_prints_on_its_default_port():
    expected = "export AIRFLOW_CONN_RUNWAY_DEFAULT=" + shlex.quote(
        connection_json("http://127.0.0.1:8765", "127.0.0.1", api_key="emulator-key")
    )
    assert expected in PAGE
    assert EXPORT.findall(page_block("steps", "bash")) == [expected]


def test_the_first_dag_page_runs_as_written_and_stores_a_video(tmp_path, console_emulator):
    base_url, export = console_emulator
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir()
    (work / "first_runway_dag.py").write_text(page_block("file", "python"))
    # The one line the page asks to replace: the export the emulator printed.
    steps = EXPORT.sub(lambda _: export, page_block("steps", "bash"))
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", steps],
        cwd=work,
        env=newcomer_env(home),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "state=success" in output
    [video] = (home / "runway-videos").glob("*.mp4")
    assert hashlib.sha256(video.read_bytes()).hexdigest() == SAMPLE_SHA
    record = json.loads((home / "runway-videos" / f"{video.name}.runway.json").read_text())
    assert record["runway_task_id"] == video.stem and record["sha256"] == SAMPLE_SHA
    assert video.name in done.stdout  # the page's last step, `ls`, shows it
    jobs = requests.get(f"{base_url}/_emulator/jobs", timeout=10).json()
    assert [job["runway_task_id"] for job in jobs] == [video.stem]  # one generation


def test_after_a_failed_store_rerunning_only_the_store_task_generates_nothing_new(tmp_path):
    home, dags = tmp_path / "home", tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    (dags / "first_runway_dag.py").write_text(page_block("file", "python"))
    # A file where the videos folder should be: the store fails after the video was generated.
    (home / "runway-videos").write_text("in the way")
    emulator = Emulator(scenario=Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=1))
    with EmulatorServer(emulator) as server:
        sandbox = AirflowSandbox(
            home=tmp_path / "airflow",
            dags_folder=dags,
            connection=server.connection_json(),
            env={"HOME": str(home), "PYTHONPATH": str(ROOT)},
        )
        failed = sandbox.dags_test(DAG_ID)
        assert failed.returncode != 0 and "FileExistsError" in failed.output, failed.output[-3000:]
        assert sandbox.task_states(DAG_ID) == {
            ("generate", -1): "success",
            ("wait_for_video", -1): "success",
            ("store", -1): "failed",
        }
        [generated] = sandbox.xcom(DAG_ID, "generate")
        (home / "runway-videos").unlink()  # the cause, fixed
        with sqlite3.connect(sandbox.home / "airflow.db") as db:
            [(run_id,)] = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchall()
        # What Troubleshooting says to do under `airflow dags test`: only the store task, same run.
        rerun = sandbox.airflow("tasks", "test", DAG_ID, "store", run_id)
        assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
        assert len(emulator.submissions()) == 1
        stored = home / "runway-videos" / f"{generated}.mp4"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == SAMPLE_SHA
        assert sandbox.task_states(DAG_ID)[("store", -1)] == "success"
