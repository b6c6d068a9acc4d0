"""OpenLineage events of a real `airflow dags test` run: the content batch with the file transport.

The generate task's COMPLETE event reads the row's image URL and outputs the Runway task; the
transfer's reads that same Runway task and outputs the stored file, so the graph joins on it. A
rerun that reuses the stored videos reports the same datasets.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.testing.sandbox import AirflowSandbox
from tests.helpers import TEST_API_KEY

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "runway_provider/testing/media/sample.mp4").read_bytes()
DAG_ID = "example_runway_content_batch"
SIGNED_IMAGE = "https://Media.Example.com/frames/paper-boat.jpg?X-Amz-Signature=sig-secret"
DATA_IMAGE = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def datasets(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(item["namespace"], item["name"]) for item in items]


def complete_events(text: str) -> list[dict[str, dict[str, list[dict[str, Any]]]]]:
    """The task COMPLETE events of each DAG run, in run order: ``[{task_id: [events by map index]}]``."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for line in text.splitlines():
        event = json.loads(line)
        airflow = event["run"]["facets"].get("airflow", {})
        if event["eventType"] != "COMPLETE" or "taskInstance" not in airflow:
            continue
        tasks = runs.setdefault(airflow["dagRun"]["run_id"], {})
        tasks.setdefault(airflow["task"]["task_id"], []).append(event)
    for tasks in runs.values():
        for events in tasks.values():
            events.sort(
                key=lambda event: event["run"]["facets"]["airflow"]["taskInstance"].get("map_index", -1)
            )
    return list(runs.values())


def test_generate_and_store_report_joined_inputs_and_outputs(tmp_path):
    sheet = tmp_path / "sheet.csv"
    with sheet.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "image", "ratio", "style"])
        writer.writerow(["A paper boat gently rocks on calm water.", SIGNED_IMAGE, "1280:720", "cinematic"])
        writer.writerow(["A kite climbs into a bright blue sky.", DATA_IMAGE, "1280:720", ""])
    videos, events_file = tmp_path / "videos", tmp_path / "lineage" / "events.jsonl"
    events_file.parent.mkdir()
    emulator = Emulator(
        api_key=TEST_API_KEY, scenario=Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=1)
    )
    with EmulatorServer(emulator) as server:
        sandbox = AirflowSandbox(
            home=tmp_path / "airflow",
            dags_folder=ROOT / "example_dags",
            connection=server.connection_json(),
            env={
                # OpenLineage's file transport, configured the way a deployment would: one JSON event a line.
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                    {"type": "file", "log_file_path": str(events_file), "append": True}
                ),
                "AIRFLOW__OPENLINEAGE__NAMESPACE": "runway-tests",
                # The run conf's sheet and destination lie under this root.
                "RUNWAY_EXAMPLES_ROOT": f"file://{tmp_path}/",
            },
        )
        sandbox.migrate()
        pool = sandbox.airflow("pools", "set", "runway_api", "2", "Runway generations", "--include-deferred")
        assert pool.returncode == 0, pool.stderr
        conf = json.dumps({"sheet": str(sheet), "destination": f"file://{videos}/"})
        # The second run reuses both stored videos (the example's reuse_from): nothing is generated.
        for _ in range(2):
            result = sandbox.dags_test(DAG_ID, "--conf", conf, timeout=900)
            assert result.returncode == 0, result.output[-4000:]
        callback_url = json.loads(server.connection_json())["extra"]["callback_url"]
        runway_namespace = f"runway://{server.base_url.split('://')[1]}"
    assert len(emulator.submissions()) == 2

    text = events_file.read_text()
    first, second = complete_events(text)
    # Each row of the batch is a mapped task group: its tasks are row.generate and row.store_video.
    generated, stored = first["row.generate"], first["row.store_video"]
    assert len(generated) == len(stored) == 2

    # Generate: the row's image URL in (origin and path; the signature and the data: URI left out)...
    jobs = {job.body["prompt"]: runway_task_id for runway_task_id, job in emulator.jobs.items()}
    boat, kite = (
        jobs["A paper boat gently rocks on calm water."],
        jobs["A kite climbs into a bright blue sky."],
    )
    assert datasets(generated[0]["inputs"]) == [("https://media.example.com", "/frames/paper-boat.jpg")]
    assert datasets(generated[1]["inputs"]) == []
    # ... and the Runway task out.
    assert datasets(generated[0]["outputs"]) == [(runway_namespace, f"reverse/{boat}")]
    assert datasets(generated[1]["outputs"]) == [(runway_namespace, f"reverse/{kite}")]
    for event in generated:
        tags = {tag["key"]: tag["value"] for tag in event["run"]["facets"]["tags"]["tags"]}
        assert tags["runway.route"] == "/runway/pro/generate" and tags["runway.model"] == "gen4"
    # Nothing derived from the request alone, from which a guessed prompt could be confirmed: the
    # fingerprints the stored records hold appear in no event, whole or cut short.
    fingerprints = [json.loads(p.read_text())["fingerprint"] for p in videos.glob("*.runway.json")]
    assert len(fingerprints) == 2 and not [f for f in fingerprints if f[:12] in text]

    # Store: the Runway task in (the same dataset the generate task put out), the stored file out.
    sha256 = hashlib.sha256(SAMPLE).hexdigest()
    for event, runway_task_id in zip(stored, (boat, kite), strict=True):
        assert datasets(event["inputs"]) == [(runway_namespace, f"reverse/{runway_task_id}")]
        [output] = event["outputs"]
        assert (output["namespace"], output["name"]) == ("file", f"{videos}/{runway_task_id}.mp4")
        assert (videos / f"{runway_task_id}.mp4").read_bytes() == SAMPLE
        assert output["facets"]["version"]["datasetVersion"] == sha256
        assert output["outputFacets"]["outputStatistics"]["size"] == len(SAMPLE)

    # The rerun reused both videos and stored nothing anew: the same datasets, the same versions.
    for task_id in ("row.generate", "row.store_video"):
        assert [(datasets(e["inputs"]), datasets(e["outputs"])) for e in second[task_id]] == [
            (datasets(e["inputs"]), datasets(e["outputs"])) for e in first[task_id]
        ], task_id
    assert [e["outputs"][0]["facets"]["version"] for e in second["row.store_video"]] == [
        e["outputs"][0]["facets"]["version"] for e in stored
    ]

    # Never in any event: the key, the webhook, the URL's signature, the data: URI.
    for secret in (TEST_API_KEY, callback_url, "sig-secret", DATA_IMAGE[:40]):
        assert secret not in text, secret
