"""The content-batch example under `airflow dags test`: 10 prompts in, 10 videos and a manifest out."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.testing.sandbox import AirflowSandbox
from tests.helpers import TEST_API_KEY

pytestmark = pytest.mark.dags
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_SHA = hashlib.sha256((ROOT / "runway_provider/testing/media/sample.mp4").read_bytes()).hexdigest()


def test_batch_of_ten_prompts(tmp_path):
    videos = tmp_path / "videos"
    emulator = Emulator(
        api_key=TEST_API_KEY, scenario=Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=1)
    )
    with EmulatorServer(emulator) as server:
        sandbox = AirflowSandbox(
            home=tmp_path / "airflow",
            dags_folder=ROOT / "example_dags",
            connection=server.connection_json(),
            env={"RUNWAY_VIDEOS_URI": f"file://{videos}/"},
        )
        sandbox.migrate()
        pool = sandbox.airflow(
            "pools", "set", "runway_api", "4", "Concurrent Runway generations", "--include-deferred"
        )
        assert pool.returncode == 0, pool.stderr
        result = sandbox.dags_test("example_runway_content_batch", timeout=900)
        assert result.returncode == 0, result.output[-4000:]

    stored = sorted(videos.glob("*.mp4"))
    assert len(stored) == 10 == len(emulator.submissions())
    assert {path.stem for path in stored} == set(emulator.jobs)
    manifest = [json.loads(line) for line in (videos / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 10
    prompts = [
        line.split(",")[0] for line in (ROOT / "example_dags/data/prompts.csv").read_text().splitlines()[1:]
    ]
    assert [entry["prompt"] for entry in manifest] == prompts
    for entry in manifest:
        assert entry["uri"] == f"file://{videos}/{entry['runway_task_id']}.mp4"
        assert entry["sha256"] == SAMPLE_SHA and entry["bytes"] > 1000
        assert 0 < entry["seconds_to_stored"] < 600
    styles = {job.body["prompt"]: job.body.get("style") for job in emulator.jobs.values()}
    assert styles["A paper boat gently rocks on calm water."] == "cinematic"
    assert styles["Autumn leaves swirl around a park bench."] is None
    events = sandbox.database_text("asset_event")
    assert events.count("runway_task_id") == 10 and "http" not in events
    assert all(f"file://{path}" in sandbox.database_text("asset") for path in stored)
