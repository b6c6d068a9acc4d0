"""`make demo`: run example DAG (a) through Airflow against the local CometAPI emulator.

Starts the emulator, runs `airflow dags test example_runway_generate_and_sense` in a throwaway
Airflow home (.airflow-demo/), prints the generated video's URL, and stops the emulator.
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.request
from pathlib import Path

from runway_provider.testing import EmulatorServer
from runway_provider.testing.sandbox import AirflowSandbox

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "example_runway_generate_and_sense"


def main() -> int:
    home = ROOT / ".airflow-demo"
    shutil.rmtree(home, ignore_errors=True)
    started = time.monotonic()
    with EmulatorServer() as server:
        print(f"CometAPI emulator listening on {server.base_url}")
        sandbox = AirflowSandbox(home=home, dags_folder=ROOT / "example_dags", connection=server.connection_json())
        print(f"Running `airflow dags test {DAG_ID}` (Airflow home: {home}) ...", flush=True)
        result = sandbox.dags_test(DAG_ID)
        (home / "dags-test.log").write_text(result.output)
        if result.returncode != 0:
            print(result.output[-5000:])
            print(f"airflow dags test failed (exit {result.returncode}); full log in {home / 'dags-test.log'}")
            return 1
        [runway_task] = sandbox.xcom(DAG_ID, "wait_for_video")
        with urllib.request.urlopen(runway_task["video_url"], timeout=10) as response:
            size, content_type = len(response.read()), response.headers["Content-Type"]
        print(f"Task states: {sorted(f'{t}={s}' for (t, _), s in sandbox.task_states(DAG_ID).items())}")
        print(f"Runway task id: {runway_task['runway_task_id']} ({runway_task['status']})")
        print(f"Result URL: {runway_task['video_url']} ({size} bytes, {content_type})")
    print(f"Demo finished in {time.monotonic() - started:.1f} s; the emulator is stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
