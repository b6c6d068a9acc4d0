"""What this provider adds to DAG parsing: import time of its modules over ``import airflow.sdk``.

    python benchmarks/import_cost.py [--runs 9]

Each measurement is a fresh interpreter that imports ``airflow.sdk`` first (every DAG file does),
then times the import of the operator, sensor and hook modules. The median of ``--runs`` is printed,
beside the same figure for the http provider's ``HttpSensor`` (what users would reach for instead),
as JSON lines.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys

CANDIDATES = {
    "runway_provider (operator, sensor, hook)": [
        "runway_provider.operators.runway",
        "runway_provider.sensors.runway",
        "runway_provider.hooks.runway",
    ],
    "apache-airflow-providers-http HttpSensor": ["airflow.providers.http.sensors.http"],
}
PROBE = """
import sys, time
import airflow.sdk
start = time.perf_counter()
for name in {modules!r}:
    __import__(name)
elapsed = time.perf_counter() - start
print(elapsed, sorted(m for m in ("aiohttp", "requests") if m in sys.modules))
"""


def measure(modules: list[str], runs: int) -> tuple[float, list[str]]:
    times, heavy = [], []
    for _ in range(runs):
        out = (
            subprocess.run(
                [sys.executable, "-c", PROBE.format(modules=modules)],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        elapsed, loaded = out.split(" ", 1)
        times.append(float(elapsed))
        heavy = ast.literal_eval(loaded)
    return statistics.median(times), heavy


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    results: list[dict[str, object]] = []
    for name, modules in CANDIDATES.items():
        try:
            median, heavy = measure(modules, args.runs)
        except subprocess.CalledProcessError as err:
            print(json.dumps({"modules": name, "error": err.stderr.strip().splitlines()[-1]}), flush=True)
            continue
        result = {
            "modules": name,
            "median_ms_over_airflow_sdk": round(median * 1000, 1),
            "runs": args.runs,
            "imports_aiohttp_or_requests": heavy,
        }
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
