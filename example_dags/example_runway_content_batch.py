"""Content batch: a prompt sheet in, videos, a manifest of every row and a run summary in your own storage out.

Reads ``data/prompts.csv`` or the run conf's ``sheet`` (prompt, image, ratio, optional style,
optional seconds, optional ``options`` as JSON), generates one video per row in a mapped task
group, copies each into ``destination`` with a record of its request beside it
(``<video>.runway.json``, which says what was billed), and writes ``manifest.jsonl`` with one line
per row and ``summary.json`` (rows generated, reused, rejected, failed; seconds of video per model).
Each new video lands as an asset event on the ``runway-videos`` alias, which
``example_runway_new_videos`` is scheduled on.

One rejected row does not sink the batch: each row is its own mapped task group (generate, store,
account), so a row Runway's moderation refuses (``SAFETY.*``) fails only its own generate task; the
other rows are stored, the manifest says ``rejected`` with the service's code and reason for that
row, and only then does ``check_batch`` fail the run, so alerts still fire.

Reruns cost nothing: ``reuse_from`` points the generate task at the destination, so a row whose
request was generated and stored before (same fingerprint, object intact) reuses the stored video
and sends nothing; only new, edited or earlier failed rows are generated. A backfill, a clear of the
whole run or a rerun after a downstream failure pays only for what is not stored yet.

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
from airflow.sdk import DAG, AssetAlias, ObjectStoragePath, task, task_group
from runway_examples_root import DESTINATION, under_root

from runway_provider.batch import row_outcome, summarize
from runway_provider.compat import AirflowFailException
from runway_provider.hooks.runway import RunwayHook
from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.transfers.runway_to_object_storage import (
    DEFAULT_ASSET_ALIAS,
    RunwayToObjectStorageOperator,
)

SHEET = Path(__file__).parent / "data" / "prompts.csv"


def row_options(row: dict) -> dict | None:
    """A row's ``options`` (JSON text) with its ``seconds``: the length asked for, and billed for."""
    options = json.loads(row.get("options") or "{}")
    if row.get("seconds"):
        options["seconds"] = int(row["seconds"])
    return options or None


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
                "options": row_options(row),
            }
            for row in rows
        ]

    rows = read_sheet()
    check_run_conf() >> rows

    # --8<-- [start:content_batch]
    @task_group(group_id="row")
    def produce(prompt, image, ratio, style, options):
        """One row: generate, store, and say what became of it, whatever happened."""
        generate = RunwayGenerateOperator(
            task_id="generate",
            prompt=prompt,
            image=image,
            ratio=ratio,
            style=style,
            options=options,
            pool="runway_api",
            wait_for_completion=True,
            deferrable=True,
            poll_interval=5,
            timeout=30 * 60,
            retries=2,
            # Rows already generated and stored there are reused: nothing is sent for them.
            reuse_from="{{ params.destination }}",
        )
        store = RunwayToObjectStorageOperator(
            task_id="store_video",
            runway_task=generate.output,
            destination="{{ params.destination }}",
            # Airflow records asset events only for outlets it knows from the parsed DAG.
            outlets=[AssetAlias(DEFAULT_ASSET_ALIAS)],
            retries=2,
        )
        # Runs whatever became of generate and store: a rejected row is accounted, not lost.
        return generate >> store >> account(prompt)

    @task(trigger_rule="all_done")
    def account(prompt: str, ti=None) -> dict:
        def pulled(task_id: str, key: str = "return_value"):
            return ti.xcom_pull(task_ids=f"row.{task_id}", key=key, map_indexes=ti.map_index)

        outcome = row_outcome(
            stored=pulled("store_video"),
            request=pulled("generate", "runway_request"),
            runway_task_id=pulled("generate", "runway_task_id"),
            hook=RunwayHook(),
        )
        return {"row": ti.map_index, "prompt": prompt, **outcome}

    outcomes = produce.expand_kwargs(rows)
    # --8<-- [end:content_batch]

    # The default trigger rule: every row's account succeeds whatever became of the row, and a run
    # whose conf was refused must write nothing anywhere.
    @task
    def write_manifest(outcomes: list[dict], params: dict | None = None) -> dict:
        """One line per row, in sheet order, and the run's summary beside it."""
        assert params is not None
        destination = ObjectStoragePath(params["destination"])
        destination.mkdir(parents=True, exist_ok=True)  # a run that stored nothing still accounts
        # A slice reads every mapped result in one request (iterating logs a spurious "not found").
        lines = sorted(outcomes[:], key=lambda line: line["row"])
        (destination / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        summary = summarize(lines)
        (destination / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"Batch summary: {json.dumps(summary)}")
        return summary

    @task
    def check_batch(summary: dict) -> None:
        """Fail the run, after everything good is stored and accounted, when a row did not make it."""
        if summary["rejected"] or summary["failed"]:
            raise AirflowFailException(
                f"{summary['rejected']} row(s) rejected and {summary['failed']} failed of {summary['rows']}; "
                "see manifest.jsonl. The other rows are stored: a rerun pays only for rows not stored yet."
            )

    check_batch(write_manifest(outcomes))
