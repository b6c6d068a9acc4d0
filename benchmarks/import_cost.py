"""What this provider adds to DAG parsing: import time of its modules over ``import airflow.sdk``.

    python benchmarks/import_cost.py [--runs 9]

Each measurement is a fresh interpreter that imports ``airflow.sdk`` first (every DAG file does),
timing it, then times the import of the operator, sensor and hook modules. Printed per candidate, as
JSON lines: the median of ``--runs`` in milliseconds, and the median share of ``import airflow.sdk``
measured in the same process (a ratio, so a loaded machine slows both sides alike; the target is
under 2%). Beside them the modules a DAG file imports (operator, sensor, transfer), and the http
provider's ``HttpSensor`` (what users would reach for instead).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile

CANDIDATES = {
    "runway_provider (operator, sensor, hook)": [
        "runway_provider.operators.runway",
        "runway_provider.sensors.runway",
        "runway_provider.hooks.runway",
    ],
    "runway_provider (what a DAG file imports: operator, sensor, transfer)": [
        "runway_provider.operators.runway",
        "runway_provider.sensors.runway",
        "runway_provider.transfers.runway_to_object_storage",
    ],
    "apache-airflow-providers-http HttpSensor": ["airflow.providers.http.sensors.http"],
}
_BYTECODE_CACHE = tempfile.mkdtemp(prefix="runway-import-cost-")
PROBE = """
import sys, time
begin = time.perf_counter()
import airflow.sdk
start = time.perf_counter()
for name in {modules!r}:
    __import__(name)
elapsed = time.perf_counter() - start
print(elapsed, start - begin, sorted(m for m in ("aiohttp", "requests") if m in sys.modules))
"""


def measure(modules: list[str], runs: int) -> tuple[float, float, list[str]]:
    times, shares, heavy = [], [], []
    # As an installed package is imported: from bytecode. A first run (not counted) writes it, in a
    # cache of its own (PYTHONDONTWRITEBYTECODE, which some shells set, would time the compiler).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = _BYTECODE_CACHE
    for run in range(runs + 1):
        out = (
            subprocess.run(
                [sys.executable, "-c", PROBE.format(modules=modules)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        elapsed, sdk, loaded = out.split(" ", 2)
        if run == 0:
            continue
        times.append(float(elapsed))
        shares.append(float(elapsed) / float(sdk))
        heavy = ast.literal_eval(loaded)
    return statistics.median(times), statistics.median(shares), heavy


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    results: list[dict[str, object]] = []
    for name, modules in CANDIDATES.items():
        try:
            median, share, heavy = measure(modules, args.runs)
        except subprocess.CalledProcessError as err:
            print(json.dumps({"modules": name, "error": err.stderr.strip().splitlines()[-1]}), flush=True)
            continue
        result = {
            "modules": name,
            "median_ms_over_airflow_sdk": round(median * 1000, 1),
            "median_share_of_airflow_sdk_percent": round(share * 100, 2),
            "runs": args.runs,
            "imports_aiohttp_or_requests": heavy,
        }
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
