"""Content batch: a prompt sheet in, videos and a manifest in your own storage out.

Reads ``data/prompts.csv`` (prompt, image, ratio, optional style), generates one video per row,
copies each into ``destination`` and writes ``manifest.jsonl`` beside them. Each video lands as an
asset event on the ``runway-videos`` alias, which ``example_runway_new_videos`` is scheduled on.

Concurrency: every generation runs in the ``runway_api`` pool, created with deferred tasks counted::

    airflow pools set runway_api 4 "Concurrent Runway generations" --include-deferred

The generate task waits for its own video (deferred, so it holds no worker slot): its pool slot
spans the whole generation, which is what caps the generations in flight. A separate sensor would
release the generate task's slot at submission and cap nothing.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, AssetAlias, ObjectStoragePath, task

from runway_provider.operators.runway import XCOM_SUBMITTED_AT, RunwayGenerateOperator
from runway_provider.transfers.runway_to_object_storage import (
    DEFAULT_ASSET_ALIAS,
    RunwayToObjectStorageOperator,
)

SHEET = Path(__file__).parent / "data" / "prompts.csv"
# Where the videos go: any Airflow object storage URI, e.g. s3://aws_default@my-bucket/runway/
DESTINATION = os.environ.get("RUNWAY_VIDEOS_URI", "file:///tmp/runway-videos/")

with DAG(
    dag_id="example_runway_content_batch",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example", "runway"],
    params={"sheet": str(SHEET), "destination": DESTINATION},
) as dag:

    @task
    def read_sheet(params: dict | None = None) -> list[dict]:
        assert params is not None
        with open(params["sheet"], newline="") as sheet:
            rows = list(csv.DictReader(sheet))
        return [
            {
                "prompt": row["prompt"],
                "image": row["image"],
                "ratio": row["ratio"] or "1280:720",
                "style": row.get("style") or None,
            }
            for row in rows
        ]

    rows = read_sheet()

    # --8<-- [start:content_batch]
    generate = RunwayGenerateOperator.partial(
        task_id="generate",
        pool="runway_api",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
        timeout=30 * 60,
        retries=2,
    ).expand_kwargs(rows)

    store = RunwayToObjectStorageOperator.partial(
        task_id="store_video",
        destination="{{ params.destination }}",
        # A mapped task's outlets must be given here: Airflow records asset events only for
        # outlets it knows from the parsed DAG.
        outlets=[AssetAlias(DEFAULT_ASSET_ALIAS)],
        retries=2,
    ).expand(runway_task=generate.output)
    # --8<-- [end:content_batch]

    @task
    def write_manifest(rows: list[dict], stored: list[dict], params: dict | None = None, ti=None) -> str:
        assert params is not None and ti is not None
        submitted = ti.xcom_pull(task_ids="generate", key=XCOM_SUBMITTED_AT)
        lines = [
            json.dumps(
                {
                    "prompt": row["prompt"],
                    "runway_task_id": video["runway_task_id"],
                    "uri": video["uri"],
                    "sha256": video["sha256"],
                    "bytes": video["bytes"],
                    "seconds_to_stored": round(video["stored_at"] - submitted_at, 1),
                }
            )
            # Slices read every mapped result in one request (iterating logs a spurious "not found").
            for row, video, submitted_at in zip(rows[:], stored[:], submitted[:], strict=True)
        ]
        manifest = ObjectStoragePath(params["destination"]) / "manifest.jsonl"
        manifest.write_text("\n".join(lines) + "\n")
        return str(manifest)

    write_manifest(rows, store.output)
