"""Seconds a worker slot is held while one generation renders, per sensor mode, on a real Airflow.

    python benchmarks/worker_slots.py [--seconds 60]

Starts the emulator and a real Airflow (api-server, scheduler with LocalExecutor, dag-processor,
triggerer), runs ``benchmarks/dags/runway_worker_slots.py`` (one generation of ``--seconds``,
waited on by ``RunwayTaskSensor`` in poke, reschedule and deferrable mode), and reads how long each
sensor held a worker from Airflow's own records: the execution API's record of every time a
worker started the task instance (``Task started``) and handed it back (``Task instance state
updated`` to deferred, up_for_reschedule or a final state). One JSON line per mode.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

# The real-Airflow harness is test code (tests/cluster.py), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from tests.cluster import AirflowCluster

DAG_ID = "runway_worker_slots"
MODES = ("poke", "reschedule", "deferrable")
_LINE = re.compile(
    r"^(?P<time>\S+Z) \[\w+\s*\] (?P<event>Task started|Task instance state updated)\s.*?ti_id=(?P<ti>[0-9a-f-]+)"
)
_NEW_STATE = re.compile(r"new_state=(\w+)")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the generation takes")
    args = parser.parse_args(argv)
    emulator = Emulator(
        scenario=Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=args.seconds - 2)
    )
    with EmulatorServer(emulator) as server, tempfile.TemporaryDirectory() as home:
        cluster = AirflowCluster(
            home=Path(home),
            dags_folder=Path(__file__).parent / "dags",
            connection=server.connection_json(),
            api_port=_free_port(),
        )
        cluster.start()
        try:
            cluster.wait_for_dag(DAG_ID)
            cluster.trigger(DAG_ID, "slots")
            state = cluster.wait_for_run(DAG_ID, "slots", timeout=args.seconds + 300)
            rows = cluster.query(
                "SELECT task_id, id, state, duration FROM task_instance WHERE dag_id = ? AND run_id = 'slots'",
                DAG_ID,
            )
            segments = _segments((Path(home) / "api-server.log").read_text())
        finally:
            cluster.stop()
    results = []
    for task_id, ti_id, ti_state, duration in sorted(rows):
        if not task_id.startswith("wait_"):
            continue
        held = segments.get(ti_id.replace("-", ""), [])
        result = {
            "mode": task_id.removeprefix("wait_"),
            "generation_s": args.seconds,
            "worker_slot_s": round(sum(end - start for start, end in held), 2),
            "worker_runs": len(held),
            "task_state": ti_state,
            "task_instance_duration_s": round(duration or 0, 2),
            "dag_run": state,
        }
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def _segments(api_log: str) -> dict[str, list[tuple[float, float]]]:
    """(start, end) of every time a worker held each task instance, from the execution API's log."""
    started: dict[str, float] = {}
    held: dict[str, list[tuple[float, float]]] = {}
    for line in api_log.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        ti_id = match["ti"].replace("-", "")
        at = datetime.datetime.fromisoformat(match["time"].replace("Z", "+00:00")).timestamp()
        if match["event"] == "Task started":
            started[ti_id] = at
        elif _NEW_STATE.search(line) and ti_id in started:
            held.setdefault(ti_id, []).append((started.pop(ti_id), at))
    return held


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
