"""The content-batch example under `airflow dags test` with a balance floor and a rejected row: every row
accounted in the manifest, the good rows stored, the run failed only after that, and a rerun paying only
for the row not stored yet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.testing.sandbox import AirflowSandbox
from tests.helpers import TEST_API_KEY

pytestmark = pytest.mark.dags
ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "example_runway_content_batch"
REJECTION = {"outcome": "failed", "failure_code": "SAFETY.INPUT.TEXT", "failure": "The prompt was flagged."}
HEADER = "prompt,image,ratio,style,seconds,options"
ROWS = [
    "A paper boat gently rocks on calm water.,https://example.com/frames/boat.jpg,1280:720,cinematic,5,",
    "Autumn leaves swirl around a park bench.,https://example.com/frames/bench.jpg,1280:720,,10,",
    # The row the emulator's moderation refuses (a test sheet's column; the shipped sheet has none).
    "A forbidden scene.,https://example.com/frames/x.jpg,1280:720,,5,"
    + '"'
    + json.dumps({"emulator": REJECTION}).replace('"', '""')
    + '"',
    "A kite climbs into a bright blue sky.,https://example.com/frames/kite.jpg,960:960,,5,",
]


def manifest(videos: Path) -> list[dict]:
    return [json.loads(line) for line in (videos / "manifest.jsonl").read_text().splitlines()]


def test_a_rejected_row_is_accounted_and_a_rerun_pays_only_for_it(tmp_path):
    videos = tmp_path / "videos"
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("\n".join([HEADER, *ROWS]) + "\n")
    conf = ("-c", json.dumps({"sheet": str(sheet)}))
    emulator = Emulator(
        api_key=TEST_API_KEY,
        scenario=Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=1),
        remaining_quota=40_000,
    )
    with EmulatorServer(emulator) as server:
        sandbox = AirflowSandbox(
            home=tmp_path / "airflow",
            dags_folder=ROOT / "example_dags",
            connection=server.connection_json(min_remaining_quota=50_000),
            env={"RUNWAY_VIDEOS_URI": f"file://{videos}/", "RUNWAY_EXAMPLES_ROOT": f"file://{tmp_path}/"},
        )
        sandbox.migrate()
        pool = sandbox.airflow("pools", "set", "runway_api", "4", "Runway generations", "--include-deferred")
        assert pool.returncode == 0, pool.stderr

        # Below the floor: no create is sent, every row says why, and the run fails.
        below = sandbox.dags_test(DAG_ID, *conf, timeout=900)
        assert below.returncode != 0
        assert emulator.create_requests() == [] and len(emulator.quota_queries()) == 4
        assert (videos / "manifest.jsonl").exists(), below.output[-6000:]
        lines = manifest(videos)
        assert [line["outcome"] for line in lines] == ["failed"] * 4
        assert all("nothing was submitted" in line["why"] for line in lines)
        assert "below the floor of 50000" in below.output and emulator.quota_key not in below.output

        # Above it: four creates, one rejected by moderation, three stored; the run still fails.
        emulator.remaining_quota = 60_000
        batch = sandbox.dags_test(DAG_ID, *conf, timeout=900)
        assert batch.returncode != 0, batch.output[-4000:]
        assert len(emulator.create_requests()) == 4 and len(emulator.submissions()) == 4
        lines = manifest(videos)
        assert [line["outcome"] for line in lines] == ["stored", "stored", "rejected", "stored"]
        assert [line["row"] for line in lines] == [0, 1, 2, 3]
        rejected = lines[2]
        assert (rejected["code"], rejected["reason"]) == ("SAFETY.INPUT.TEXT", "The prompt was flagged.")
        assert rejected["prompt"] == "A forbidden scene."
        stored = sorted(videos.glob("*.mp4"))
        assert len(stored) == 3
        assert {line["uri"] for line in lines if line["outcome"] == "stored"} == {
            f"file://{path}" for path in stored
        }
        assert lines[1]["billed"] == {
            "route": "/runway/pro/generate",
            "model": "gen4",
            "output": "video",
            "ratio": "1280:720",
            "seconds": 10,
        }
        summary = json.loads((videos / "summary.json").read_text())
        assert summary == {
            "rows": 4,
            "generated": 3,
            "reused": 0,
            "rejected": 1,
            "failed": 0,
            "video_seconds_by_model": {"gen4": 20},
            "images_by_model": {},
            "videos_of_unknown_length_by_model": {},
        }
        states = sandbox.task_states(DAG_ID)
        assert states[("row.generate", 2)] == "failed" and states[("row.store_video", 2)] == "upstream_failed"
        assert states[("write_manifest", -1)] == "success" and states[("check_batch", -1)] == "failed"
        print(
            f"rejected-row run: stored {len(stored)}, manifest {len(lines)} lines, summary {json.dumps(summary)}"
        )

        # The rejected row rewritten: a rerun sends one create, reuses the three stored rows, and succeeds.
        sheet.write_text(
            "\n".join(
                [
                    HEADER,
                    *ROWS[:2],
                    "A calm harbour at dawn.,https://example.com/frames/x.jpg,1280:720,,5,",
                    ROWS[3],
                ]
            )
            + "\n"
        )
        rerun = sandbox.dags_test(DAG_ID, *conf, timeout=900)
        assert rerun.returncode == 0, rerun.output[-4000:]
        assert len(emulator.submissions()) == 5
        lines = manifest(videos)
        assert [line["outcome"] for line in lines] == ["reused", "reused", "stored", "reused"]
        assert len(sorted(videos.glob("*.mp4"))) == 4
        summary = json.loads((videos / "summary.json").read_text())
        assert (summary["generated"], summary["reused"], summary["rejected"], summary["failed"]) == (
            1,
            3,
            0,
            0,
        )
        assert summary["video_seconds_by_model"] == {"gen4": 5}
        for text in (sandbox.database_text("xcom"), (videos / "manifest.jsonl").read_text()):
            assert emulator.quota_key not in text and TEST_API_KEY not in text
