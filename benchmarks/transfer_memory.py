"""Peak memory of RunwayToObjectStorageOperator while it stores videos of growing size.

    python benchmarks/transfer_memory.py [--sizes-mb 20,200]

The emulator serves a video of each size; a fresh child process stores it to a local directory
while the parent samples the child's RSS every 20 ms. One JSON line per size: peak RSS growth over
the child's baseline (after imports), against the file size. Flat means streaming works.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runway_provider.testing import EmulatorServer

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CHILD = """
import json, os, sys
from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator
from airflow.sdk.execution_time.context import OutletEventAccessors
import requests  # imported before the baseline, like every other module the transfer uses
baseline = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
print(json.dumps({"baseline": baseline}), flush=True)
sys.stdin.readline()
task = {"runway_task_id": "big", "status": "SUCCEEDED", "output_urls": [sys.argv[1]]}
result = RunwayToObjectStorageOperator(task_id="store", runway_task=task, destination=sys.argv[2]).execute(
    {"outlet_events": OutletEventAccessors()}
)
print(json.dumps({"bytes": result["bytes"]}), flush=True)
"""


def measure(server: EmulatorServer, size: int, folder: Path) -> dict[str, Any]:
    url = f"{server.base_url}/_emulator/media/size-{size}.mp4"
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(folder) + "/"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "AIRFLOW_CONN_RUNWAY_DEFAULT": server.connection_json()},
    )
    assert process.stdin is not None and process.stdout is not None
    baseline = json.loads(process.stdout.readline())["baseline"]
    process.stdin.write("go\n")
    process.stdin.flush()
    started, peak = time.monotonic(), baseline
    while process.poll() is None:
        with contextlib.suppress(OSError, IndexError):
            peak = max(peak, int(Path(f"/proc/{process.pid}/statm").read_text().split()[1]) * PAGE_SIZE)
        time.sleep(0.02)
    stored = json.loads(process.stdout.read().strip().splitlines()[-1])["bytes"]
    (folder / "big.mp4").unlink()
    return {
        "file_mb": round(stored / 1e6, 1),
        "peak_rss_growth_mb": round((peak - baseline) / 1e6, 1),
        "growth_per_file_size": round((peak - baseline) / stored, 4),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="20,200")
    args = parser.parse_args(argv)
    results = []
    with EmulatorServer() as server, tempfile.TemporaryDirectory() as folder:
        for size_mb in args.sizes_mb.split(","):
            result = measure(server, int(float(size_mb) * 1_000_000), Path(folder))
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


if __name__ == "__main__":
    main()
