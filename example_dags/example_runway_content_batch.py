"""Content batch: a prompt sheet in, videos and a manifest in your own storage out.

Reads ``data/prompts.csv`` or the run conf's ``sheet`` (prompt, image, ratio, optional style),
generates one video per row,
copies each into ``destination`` with a record of its request beside it (``<video>.runway.json``)
and writes ``manifest.jsonl`` from those records. Each new video lands as an asset event on the
``runway-videos`` alias, which ``example_runway_new_videos`` is scheduled on.

Reruns cost nothing: ``reuse_from`` points the generate task at the destination, so a row whose
request was generated and stored before (same fingerprint, object intact) reuses the stored video
and sends nothing; only new or edited rows are generated. A backfill, a clear of the whole run or a
rerun after a downstream failure pays only for what changed.

Concurrency: every generation runs in the ``runway_api`` pool, created with deferred tasks counted::

    airflow pools set runway_api 4 "Concurrent Runway generations" --include-deferred

The generate task waits for its own video (deferred, so it holds no worker slot): its pool slot
spans the whole generation, which is what caps the generations in flight. A separate sensor would
release the generate task's slot at submission and cap nothing.

Run conf may choose ``sheet`` and ``destination`` only under ``RUNWAY_EXAMPLES_ROOT`` (see
``runway_examples_root.py``, which goes with this file).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pendulum
from airflow.sdk import DAG, AssetAlias, ObjectStoragePath, task
from runway_examples_root import DESTINATION, under_root

from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.transfers.runway_to_object_storage import (
    DEFAULT_ASSET_ALIAS,
    RunwayToObjectStorageOperator,
)

SHEET = Path(__file__).parent / "data" / "prompts.csv"

with DAG(
    dag_id="example_runway_content_batch",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example", "runway"],
    params={"sheet": str(SHEET), "destination": DESTINATION},
) as dag:

    @task
    def check_run_conf(params: dict | None = None) -> None:
        """Before anything is read or paid for: run conf stays under RUNWAY_EXAMPLES_ROOT."""
        assert params is not None
        under_root("destination", params["destination"])
        if params["sheet"] != str(SHEET):  # the sheet that comes with the example
            under_root("sheet", params["sheet"])

    @task
    def read_sheet(params: dict | None = None) -> list[dict]:
        assert params is not None
        rows = list(csv.DictReader(ObjectStoragePath(params["sheet"]).read_text().splitlines()))
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
    check_run_conf() >> rows

    # --8<-- [start:content_batch]
    generate = RunwayGenerateOperator.partial(
        task_id="generate",
        pool="runway_api",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
        timeout=30 * 60,
        retries=2,
        # Rows already generated and stored there are reused: nothing is sent for them.
        reuse_from="{{ params.destination }}",
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
    def write_manifest(stored: list[dict], params: dict | None = None) -> str:
        assert params is not None
        destination = ObjectStoragePath(params["destination"])
        lines = []
        # A slice reads every mapped result in one request (iterating logs a spurious "not found").
        for video in stored[:]:
            # The record beside each video says which request produced it (prompt, fingerprint...).
            record = json.loads((destination / f"{video['uri'].rsplit('/', 1)[-1]}.runway.json").read_text())
            entry = {
                "prompt": record["request"]["prompt"],
                "runway_task_id": record["runway_task_id"],
                "uri": record["uri"],
                "sha256": record["sha256"],
                "bytes": record["bytes"],
                "fingerprint": record["fingerprint"],
                "seconds_to_stored": round(record["stored_at"] - record["submitted_at"], 1),
            }
            lines.append(json.dumps(entry))
        manifest = destination / "manifest.jsonl"
        manifest.write_text("\n".join(lines) + "\n")
        return str(manifest)

    write_manifest(store.output)
