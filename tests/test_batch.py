"""What became of each row of a batch (runway_provider.batch), read against the emulator."""

from __future__ import annotations

import time
from typing import Any

import pytest

from runway_provider.batch import row_outcome, summarize
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import OutputKind, RouteFamily
from tests.helpers import job_options

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/boat.jpg"
NOW = job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0)


def finished(hook: RunwayHook, **scenario: Any) -> str:
    options = job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0, **scenario)
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE, options=options)
    time.sleep(0.2)
    return runway_task_id


def request(family: str = "reverse", reused: dict | None = None) -> dict[str, Any]:
    return {
        "route": "/runway/pro/generate",
        "route_family": family,
        "fingerprint": "f",
        "request": {},
        "reused": reused,
    }


def test_a_stored_row_says_where_with_what_was_billed(hook):
    stored = {
        "uri": "file:///v/a.mp4",
        "sha256": "s",
        "runway_task_id": "a",
        "reused": False,
        "billed": {"x": 1},
    }
    outcome = row_outcome(stored=stored, request=request(), runway_task_id="a", hook=hook)
    assert outcome == {
        "outcome": "stored",
        "runway_task_id": "a",
        "uri": "file:///v/a.mp4",
        "sha256": "s",
        "billed": {"x": 1},
    }


@pytest.mark.parametrize(("here", "pushed"), [(True, None), (False, {"uri": "file:///elsewhere/a.mp4"})])
def test_a_reused_row_is_reused_whether_found_here_or_copied(hook, here, pushed):
    stored = {"uri": "u", "sha256": "s", "runway_task_id": "a", "reused": here}
    assert (
        row_outcome(stored=stored, request=request(reused=pushed), runway_task_id="a", hook=hook)["outcome"]
        == "reused"
    )


def test_a_row_that_sent_nothing_fails_saying_so(hook, emulator):
    outcome = row_outcome(stored=None, request=None, runway_task_id=None, hook=hook)
    assert outcome["outcome"] == "failed" and "nothing was submitted" in outcome["why"]
    assert emulator.requests == []


@pytest.mark.parametrize("code", ["SAFETY.INPUT.TEXT", "INPUT_PREPROCESSING.SAFETY.TEXT"])
def test_a_moderated_row_is_rejected_with_the_services_code_and_reason(hook, code):
    runway_task_id = finished(hook, outcome="failed", failure_code=code, failure="The prompt was flagged.")
    outcome = row_outcome(stored=None, request=request(), runway_task_id=runway_task_id, hook=hook)
    assert outcome == {
        "outcome": "rejected",
        "runway_task_id": runway_task_id,
        "code": code,
        "reason": "The prompt was flagged.",
    }


def test_any_other_failure_is_failed_with_why(hook):
    runway_task_id = finished(
        hook, outcome="failed", failure_code="INTERNAL.BAD_OUTPUT.CODE01", failure="Bad output."
    )
    outcome = row_outcome(stored=None, request=request(), runway_task_id=runway_task_id, hook=hook)
    assert (
        outcome["outcome"] == "failed"
        and "Bad output." in outcome["why"]
        and "INTERNAL.BAD_OUTPUT" in outcome["why"]
    )


def test_a_generated_row_not_stored_and_one_still_running_are_failed(hook):
    done = finished(hook)
    outcome = row_outcome(stored=None, request=request(), runway_task_id=done, hook=hook)
    assert outcome["outcome"] == "failed" and "generated but not stored" in outcome["why"]
    running = hook.submit_generate(prompt="A boat", image=IMAGE, options=job_options(running_seconds=60))
    outcome = row_outcome(stored=None, request=request(), runway_task_id=running, hook=hook)
    assert outcome["outcome"] == "failed" and "still" in outcome["why"]


def test_an_official_row_is_read_on_the_official_route(hook, emulator):
    runway_task_id = hook.submit_image_to_video(prompt_image=IMAGE, prompt_text="A boat")
    row_outcome(stored=None, request=request("official"), runway_task_id=runway_task_id, hook=hook)
    assert emulator.requests[-1]["path"] == f"/runwayml/v1/tasks/{runway_task_id}"


def test_summarize_counts_rows_and_what_this_run_generated_per_model():
    def video(model: str, seconds: Any, outcome: str = "stored") -> dict[str, Any]:
        return {"outcome": outcome, "billed": {"model": model, "output": "video", "seconds": seconds}}

    lines = [
        video("gen4", 5),
        video("gen4", 10),
        video("gen4_turbo", 2.5),
        video("gen4", None),
        video("gen4", 10, outcome="reused"),  # nothing sent this run
        {"outcome": "stored", "billed": {"model": "gen4_image", "output": "image", "images": 1}},
        {"outcome": "rejected", "code": "SAFETY.INPUT.TEXT", "reason": "r"},
        {"outcome": "failed", "why": "w"},
    ]
    assert summarize(lines) == {
        "rows": 8,
        "generated": 5,
        "reused": 1,
        "rejected": 1,
        "failed": 1,
        "video_seconds_by_model": {"gen4": 15, "gen4_turbo": 2.5},
        "images_by_model": {"gen4_image": 1},
        "videos_of_unknown_length_by_model": {"gen4": 1},
    }


def test_a_generate_task_in_a_mapped_task_group_is_read_per_row():
    """The transfer reads the request of its own row: a task in a mapped task group is a mapped upstream."""
    import pendulum
    from airflow.sdk import DAG, task_group

    from runway_provider.operators.runway import RunwayGenerateOperator
    from runway_provider.refs import Upstream
    from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator

    built: dict[str, Any] = {}
    with DAG("rows", start_date=pendulum.datetime(2026, 1, 1), schedule=None):

        @task_group(group_id="row")
        def produce(prompt):
            built["generate"] = RunwayGenerateOperator(task_id="generate", prompt=prompt, image=IMAGE)
            built["store"] = RunwayToObjectStorageOperator(
                task_id="store", runway_task=built["generate"].output, destination="file:///tmp/rows/"
            )

        produce.expand(prompt=["A boat", "A kite"])
    assert Upstream.of(built["generate"].output) == Upstream(
        "row.generate", True, RouteFamily.REVERSE, OutputKind.VIDEO
    )
    assert Upstream.above(built["store"]) == Upstream("row.generate", True)
