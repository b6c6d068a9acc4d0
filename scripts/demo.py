"""`make demo`: run the example DAGs through Airflow against the local CometAPI emulator.

Starts the emulator, runs `airflow dags test example_runway_generate_and_sense` in a throwaway
Airflow home (.airflow-demo/) and prints the generated video's URL, then runs the content batch
(10 prompts from example_dags/data/prompts.csv) into .airflow-demo/videos/ and shows the stored
videos and their manifest. Stops the emulator at the end, and points at docs/first-dag.md.
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
BATCH_DAG_ID = "example_runway_content_batch"


def main() -> int:
    home = ROOT / ".airflow-demo"
    videos = home / "videos"
    shutil.rmtree(home, ignore_errors=True)
    started = time.monotonic()
    with EmulatorServer() as server:
        print(f"CometAPI emulator listening on {server.base_url}")
        sandbox = AirflowSandbox(
            home=home,
            dags_folder=ROOT / "example_dags",
            connection=server.connection_json(),
            env={"RUNWAY_VIDEOS_URI": f"file://{videos}/"},
        )
        print(f"Running `airflow dags test {DAG_ID}` (Airflow home: {home}) ...", flush=True)
        if not run_dag(sandbox, DAG_ID):
            return 1
        [runway_task] = sandbox.xcom(DAG_ID, "wait_for_video")
        with urllib.request.urlopen(runway_task["video_url"], timeout=10) as response:
            size, content_type = len(response.read()), response.headers["Content-Type"]
        print(f"Task states: {sorted(f'{t}={s}' for (t, _), s in sandbox.task_states(DAG_ID).items())}")
        print(f"Runway task id: {runway_task['runway_task_id']} ({runway_task['status']})")
        # Served by this script's emulator: the URL works only until the demo ends.
        print(f"Result URL (until the demo ends): {runway_task['video_url']} ({size} bytes, {content_type})")

        print(f"\nRunning the content batch `airflow dags test {BATCH_DAG_ID}` into {videos} ...", flush=True)
        sandbox.airflow(
            "pools", "set", "runway_api", "4", "Concurrent Runway generations", "--include-deferred"
        )
        if not run_dag(sandbox, BATCH_DAG_ID):
            return 1
        stored = sorted(videos.glob("*.mp4"))
        print(f"Stored {len(stored)} videos in {videos}:")
        for path in stored:
            print(f"  {path.name} ({path.stat().st_size} bytes)")
        manifest = videos / "manifest.jsonl"
        print(f"Manifest {manifest} ({len(manifest.read_text().splitlines())} lines), first line:")
        print("  " + manifest.read_text().splitlines()[0])
    print(f"Demo finished in {time.monotonic() - started:.1f} s; the emulator is stopped, the videos stay.")
    print("Next: write your own DAG — docs/first-dag.md (`source .venv/bin/activate` first).")
    return 0


def run_dag(sandbox: AirflowSandbox, dag_id: str) -> bool:
    result = sandbox.dags_test(dag_id)
    log = sandbox.home / f"{dag_id}.log"
    log.write_text(result.output)
    if result.returncode != 0:
        print(result.output[-5000:])
        print(f"airflow dags test {dag_id} failed (exit {result.returncode}); full log in {log}")
    return result.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
