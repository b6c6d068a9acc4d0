"""Retries of RunwayGenerateOperator reconnect to the generation of the earlier try."""

from __future__ import annotations

import time
from typing import Any

import pytest

from runway_provider.exceptions import RunwayInputError, RunwayTaskError, RunwayTaskTimeoutError
from runway_provider.operators.runway import XCOM_RUNWAY_TASK, RunwayGenerateOperator
from runway_provider.spend import STATE_KEY, request_fingerprint
from runway_provider.testing import Scenario
from tests.helpers import (
    FAST,
    MemoryTaskStateStore,
    RecordingTaskInstance,
    TaskDeferred,
    advance,
    job_options,
)

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"


@pytest.fixture
def store() -> MemoryTaskStateStore:
    return MemoryTaskStateStore()


def new_try(store: MemoryTaskStateStore) -> dict[str, Any]:
    """A fresh context for the next try: XComs are cleared, the task state store is not."""
    return {"ti": RecordingTaskInstance(), "task_state_store": store}


def operator(**kwargs: Any) -> RunwayGenerateOperator:
    defaults: dict[str, Any] = {
        "task_id": "generate",
        "prompt": "A paper boat",
        "image": IMAGE,
        "poll_interval": 0.1,
    }
    return RunwayGenerateOperator(**{**defaults, **kwargs})


def saved(op: RunwayGenerateOperator, runway_task_id: str, submitted_at: float) -> dict[str, Any]:
    """What an earlier try of ``op`` left in the task state store after submitting."""
    return {
        "phase": "submitted",
        "fingerprint": request_fingerprint(op.route, op.build_payload()),
        "route": op.route.path,
        "route_family": op.route_family.value,
        "runway_task_id": runway_task_id,
        "submitted_at": submitted_at,
    }


def test_first_try_saves_the_task_then_marks_it_done_on_success(runway_conn, store):
    saved: list[Any] = []
    original_set = store.set
    store.set = lambda key, value: (saved.append(dict(value)), original_set(key, value))  # type: ignore[method-assign]
    op = operator(wait_for_completion=True)
    runway_task_id = op.execute(new_try(store))
    fingerprint = request_fingerprint(op.route, op.build_payload())
    assert [(value["phase"], value["fingerprint"]) for value in saved] == [
        ("submitting", fingerprint),
        ("submitted", fingerprint),
        ("done", fingerprint),
    ]
    assert "runway_task_id" not in saved[0]  # the marker is written before the POST
    assert saved[1]["runway_task_id"] == runway_task_id
    assert time.time() - 30 < saved[1]["submitted_at"] <= time.time()
    # Kept, not removed: a try that runs again after this success reconnects instead of paying again.
    done = store.values[STATE_KEY]
    assert done == {**saved[1], "phase": "done", "succeeded_at": done["succeeded_at"]}
    assert saved[1]["submitted_at"] <= done["succeeded_at"] <= time.time()


def test_retry_after_a_timed_out_wait_reconnects(runway_conn, emulator, store):
    op = operator(wait_for_completion=True, timeout=0.5, options=job_options(running_seconds=2))
    with pytest.raises(RunwayTaskTimeoutError):
        op.execute(new_try(store))
    [first_id] = emulator.jobs
    assert store.values[STATE_KEY]["runway_task_id"] == first_id
    advance(emulator, first_id, 1.5)  # the retry waits the end of its run, not all of it

    context = new_try(store)
    retry = operator(wait_for_completion=True, timeout=10, options=job_options(running_seconds=2))
    assert retry.execute(context) == first_id
    assert list(emulator.jobs) == [first_id]  # one paid generation
    assert context["ti"].xcom[XCOM_RUNWAY_TASK]["status"] == "SUCCEEDED"


def test_retry_after_success_returns_it_without_waiting(runway_conn, emulator, store, capsys):
    fast = job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    op = operator(wait_for_completion=True, options=fast)
    runway_task_id = op.hook.submit_generate(prompt="A paper boat", image=IMAGE, options=fast)
    store.set(STATE_KEY, saved(op, runway_task_id, time.time()))
    assert op.execute(new_try(store)) == runway_task_id
    assert len(emulator.jobs) == 1
    assert "already succeeded" in capsys.readouterr().out


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_retry_after_a_failed_generation_submits_anew(runway_conn, emulator, store, capsys, outcome):
    # The same request both times: the emulator's default scenario decides how the job ends.
    emulator.scenario = Scenario(outcome=outcome, not_found_seconds=0, queued_seconds=0, running_seconds=0)
    with pytest.raises(RunwayTaskError):
        operator(wait_for_completion=True).execute(new_try(store))
    [failed_id] = emulator.jobs
    emulator.scenario = FAST
    new_id = operator(wait_for_completion=True).execute(new_try(store))
    assert new_id != failed_id and list(emulator.jobs) == [failed_id, new_id]
    out = capsys.readouterr().out
    assert f"Runway task {failed_id} from an earlier try ended without a video" in out
    assert "submitting a new generation" in out


def test_retry_after_a_lost_task_submits_anew(runway_conn, emulator, store):
    op = operator(wait_for_completion=True, not_found_grace=60)
    store.set(STATE_KEY, saved(op, "vanished", time.time() - 3600))
    new_id = op.execute(new_try(store))
    assert list(emulator.jobs) == [new_id]


@pytest.mark.usefixtures("quick_backoff")
def test_retry_reconnects_when_the_check_fails_transiently(runway_conn, emulator, store, capsys):
    op = operator(wait_for_completion=True)
    runway_task_id = operator().execute(new_try(store))
    store.set(STATE_KEY, saved(op, runway_task_id, time.time()))
    emulator.jobs[runway_task_id].pending_faults = ["503"] * 3
    assert op.execute(new_try(store)) == runway_task_id
    assert len(emulator.jobs) == 1
    assert "Could not check Runway task" in capsys.readouterr().out


def test_deferrable_retry_reconnects_with_the_original_submission_time(runway_conn, emulator, store):
    submitted_at = time.time() - 30
    slow = job_options(running_seconds=60)
    op = operator(wait_for_completion=True, deferrable=True, timeout=600, options=slow)
    runway_task_id = op.hook.submit_generate(prompt="A paper boat", image=IMAGE, options=slow)
    store.set(STATE_KEY, saved(op, runway_task_id, submitted_at))
    with pytest.raises(TaskDeferred) as caught:
        op.execute(new_try(store))
    _, kwargs = caught.value.trigger.serialize()
    assert kwargs["runway_task_id"] == runway_task_id
    assert kwargs["submitted_at"] == submitted_at  # not_found_grace still counts from the submission
    assert kwargs["end_time"] == pytest.approx(time.time() + 600, abs=5)  # a fresh wait for this try
    assert len(emulator.jobs) == 1


def test_retry_without_waiting_returns_the_earlier_task(runway_conn, emulator, store):
    op = operator()
    runway_task_id = op.hook.submit_generate(prompt="A paper boat", image=IMAGE)
    store.set(STATE_KEY, saved(op, runway_task_id, time.time()))
    context = new_try(store)
    assert op.execute(context) == runway_task_id
    assert context["ti"].xcom["runway_task_id"] == runway_task_id
    assert len(emulator.jobs) == 1
    # Not known to have succeeded yet: the record stays as it was, for a later try to reconnect.
    assert store.values[STATE_KEY] == saved(op, runway_task_id, store.values[STATE_KEY]["submitted_at"])


def test_bad_input_on_a_retry_sends_nothing(runway_conn, emulator, store):
    store.set(STATE_KEY, saved(operator(), "earlier", time.time()))
    with pytest.raises(RunwayInputError, match="ratio"):
        operator(ratio="wide").execute(new_try(store))
    assert emulator.requests == []


def test_without_any_store_to_write_the_marker_to_nothing_is_sent(runway_conn, emulator):
    """No ``task_state_store`` and no task runner to write the Variable through (compat.state_store):
    the marker cannot be written, so the create is never sent, rather than sent unrecorded."""
    with pytest.raises(Exception):  # noqa: B017  # whatever Airflow raises outside its task runner
        operator().execute({"ti": RecordingTaskInstance()})
    assert emulator.requests == []


def test_an_official_retry_checks_its_task_on_the_official_route(runway_conn, emulator, store):
    from runway_provider.operators.runway import RunwayImageToVideoOperator

    def animate(**kwargs: Any) -> RunwayImageToVideoOperator:
        return RunwayImageToVideoOperator(
            task_id="animate", prompt_image=IMAGE, poll_interval=0.1, wait_for_completion=True, **kwargs
        )

    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0.2, running_seconds=2)
    with pytest.raises(RunwayTaskTimeoutError):
        animate(timeout=0.3).execute({**new_try(store), "ti": RecordingTaskInstance(max_tries=1)})
    [runway_task_id] = emulator.jobs
    advance(emulator, runway_task_id, 1.5)  # the retry waits the end of its run, not all of it
    assert animate(timeout=30).execute(new_try(store)) == runway_task_id  # reconnected, not lost
    assert len(emulator.create_requests()) == 1
    polls = [r["path"] for r in emulator.requests if r["method"] != "POST" or r["path"] == "/runway/feed"]
    assert polls and all(path == f"/runwayml/v1/tasks/{runway_task_id}" for path in polls)
