"""The content-batch example under `airflow dags test`: 10 prompts in, 10 videos, a manifest and a summary
out; a rerun sends nothing, and after editing one row exactly one generation is sent."""

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
ACCOUNTS = ("manifest.jsonl", "summary.json")
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
            # The edited sheet below lies beside the videos, under the root run conf must keep to.
            env={"RUNWAY_VIDEOS_URI": f"file://{videos}/", "RUNWAY_EXAMPLES_ROOT": f"file://{tmp_path}/"},
        )
        sandbox.migrate()
        pool = sandbox.airflow(
            "pools", "set", "runway_api", "4", "Concurrent Runway generations", "--include-deferred"
        )
        assert pool.returncode == 0, pool.stderr
        result = sandbox.dags_test("example_runway_content_batch", timeout=900)
        assert result.returncode == 0, result.output[-4000:]
        first_run = len(emulator.submissions())
        manifest_text = (videos / "manifest.jsonl").read_text()
        summary = json.loads((videos / "summary.json").read_text())
        assert (summary["generated"], summary["reused"], summary["rejected"], summary["failed"]) == (
            10,
            0,
            0,
            0,
        )
        assert summary["video_seconds_by_model"] == {"gen4": 65}  # seven rows of 5 s, three of 10 s
        files = {path.name: path.stat().st_mtime_ns for path in videos.iterdir() if path.name not in ACCOUNTS}
        events_after_first = sandbox.database_text("asset_event").count("runway_task_id")

        # The same sheet again (a rerun, a backfill, a clear): every row is reused, nothing is sent.
        rerun = sandbox.dags_test("example_runway_content_batch", timeout=900)
        assert rerun.returncode == 0, rerun.output[-4000:]
        second_run = len(emulator.submissions()) - first_run
        # The same lines, each now reused instead of stored.
        assert [json.loads(line) for line in (videos / "manifest.jsonl").read_text().splitlines()] == [
            {**json.loads(line), "outcome": "reused"} for line in manifest_text.splitlines()
        ]
        assert {
            path.name: path.stat().st_mtime_ns for path in videos.iterdir() if path.name not in ACCOUNTS
        } == files
        assert sandbox.database_text("asset_event").count("runway_task_id") == events_after_first

        # One row edited: exactly one generation.
        sheet = tmp_path / "prompts.csv"
        lines = (ROOT / "example_dags/data/prompts.csv").read_text().splitlines()
        lines[3] = lines[3].replace(lines[3].split(",")[0], "A paper lantern drifts over a night river.", 1)
        sheet.write_text("\n".join(lines) + "\n")
        edited = sandbox.dags_test(
            "example_runway_content_batch", "-c", json.dumps({"sheet": str(sheet)}), timeout=900
        )
        assert edited.returncode == 0, edited.output[-4000:]
        third_run = len(emulator.submissions()) - first_run - second_run
        print(f"submissions: first run {first_run}, rerun {second_run}, after editing one row {third_run}")
        assert (first_run, second_run, third_run) == (10, 0, 1)
        edited_manifest = [json.loads(line) for line in (videos / "manifest.jsonl").read_text().splitlines()]
        assert edited_manifest[2]["prompt"] == "A paper lantern drifts over a night river."
        assert [entry for index, entry in enumerate(edited_manifest) if index != 2] == [
            {**json.loads(line), "outcome": "reused"}
            for index, line in enumerate(manifest_text.splitlines())
            if index != 2
        ]
        assert edited_manifest[2]["outcome"] == "stored"
        (videos / "manifest.jsonl").write_text(manifest_text)  # the checks below read the first run's

    stored = sorted(videos.glob("*.mp4"))
    assert len(stored) == 11 == len(emulator.submissions())
    assert {path.stem for path in stored} == set(emulator.jobs)
    manifest = [json.loads(line) for line in (videos / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 10
    prompts = [
        line.split(",")[0] for line in (ROOT / "example_dags/data/prompts.csv").read_text().splitlines()[1:]
    ]
    assert [entry["prompt"] for entry in manifest] == prompts
    for index, entry in enumerate(manifest):
        assert entry["row"] == index and entry["outcome"] == "stored"
        assert entry["uri"] == f"file://{videos}/{entry['runway_task_id']}.mp4"
        assert entry["sha256"] == SAMPLE_SHA
        assert entry["billed"]["model"] == "gen4" and entry["billed"]["seconds"] in (5, 10)
    styles = {job.body["prompt"]: job.body.get("style") for job in emulator.jobs.values()}
    assert styles["A paper boat gently rocks on calm water."] == "cinematic"
    assert styles["Autumn leaves swirl around a park bench."] is None
    events = sandbox.database_text("asset_event")
    assert events.count("runway_task_id") == 11 and "http" not in events
    assert all(f"file://{path}" in sandbox.database_text("asset") for path in stored)
