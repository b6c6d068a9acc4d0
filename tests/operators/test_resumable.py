"""Retries of RunwayGenerateOperator reconnect to the generation of the earlier try."""

from __future__ import annotations

import time
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from runway_provider.exceptions import RunwayTaskError, RunwayTaskTimeoutError
from runway_provider.operators.runway import STATE_SUBMITTED_TASK, XCOM_RUNWAY_TASK, RunwayGenerateOperator
from tests.helpers import MemoryTaskStateStore, RecordingTaskInstance, job_options

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


def test_first_try_saves_the_task_then_forgets_it_on_success(runway_conn, store):
    saved: list[Any] = []
    original_set = store.set
    store.set = lambda key, value: (saved.append(value), original_set(key, value))  # type: ignore[method-assign]
    runway_task_id = operator(wait_for_completion=True).execute(new_try(store))
    assert saved[0]["runway_task_id"] == runway_task_id
    assert time.time() - 30 < saved[0]["submitted_at"] <= time.time()
    assert store.values == {}


def test_retry_after_a_timed_out_wait_reconnects(runway_conn, emulator, store):
    op = operator(wait_for_completion=True, timeout=0.5, options=job_options(running_seconds=2))
    with pytest.raises(RunwayTaskTimeoutError):
        op.execute(new_try(store))
    [first_id] = emulator.jobs
    assert store.values[STATE_SUBMITTED_TASK]["runway_task_id"] == first_id

    context = new_try(store)
    retry = operator(wait_for_completion=True, timeout=10, options=job_options(running_seconds=2))
    assert retry.execute(context) == first_id
    assert list(emulator.jobs) == [first_id]  # one paid generation
    assert context["ti"].xcom[XCOM_RUNWAY_TASK]["status"] == "SUCCEEDED"


def test_retry_after_success_returns_it_without_waiting(runway_conn, emulator, store, capsys):
    fast = job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    runway_task_id = operator(options=fast).hook.submit_generate(
        prompt="A paper boat", image=IMAGE, options=fast
    )
    store.set(STATE_SUBMITTED_TASK, {"runway_task_id": runway_task_id, "submitted_at": time.time()})
    assert operator(wait_for_completion=True, options=fast).execute(new_try(store)) == runway_task_id
    assert len(emulator.jobs) == 1
    assert "already succeeded" in capsys.readouterr().out


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_retry_after_a_failed_generation_submits_anew(runway_conn, emulator, store, capsys, outcome):
    scenario = job_options(outcome=outcome, not_found_seconds=0, queued_seconds=0, running_seconds=0)
    with pytest.raises(RunwayTaskError):
        operator(wait_for_completion=True, options=scenario).execute(new_try(store))
    [failed_id] = emulator.jobs
    new_id = operator(wait_for_completion=True).execute(new_try(store))
    assert new_id != failed_id and list(emulator.jobs) == [failed_id, new_id]
    out = capsys.readouterr().out
    assert f"Runway task {failed_id} from an earlier try ended without a video" in out
    assert "submitting a new generation" in out


def test_retry_after_a_lost_task_submits_anew(runway_conn, emulator, store):
    store.set(STATE_SUBMITTED_TASK, {"runway_task_id": "vanished", "submitted_at": time.time() - 3600})
    new_id = operator(wait_for_completion=True, not_found_grace=60).execute(new_try(store))
    assert list(emulator.jobs) == [new_id]


def test_retry_reconnects_when_the_check_fails_transiently(runway_conn, emulator, store, capsys):
    runway_task_id = operator().execute(new_try(store))
    store.set(STATE_SUBMITTED_TASK, {"runway_task_id": runway_task_id, "submitted_at": time.time()})
    emulator.jobs[runway_task_id].pending_faults = ["503"] * 3
    assert operator(wait_for_completion=True).execute(new_try(store)) == runway_task_id
    assert len(emulator.jobs) == 1
    assert "Could not check Runway task" in capsys.readouterr().out


def test_deferrable_retry_reconnects_with_the_original_submission_time(runway_conn, emulator, store):
    submitted_at = time.time() - 30
    runway_task_id = operator().hook.submit_generate(
        prompt="p", image=IMAGE, options=job_options(running_seconds=60)
    )
    store.set(STATE_SUBMITTED_TASK, {"runway_task_id": runway_task_id, "submitted_at": submitted_at})
    with pytest.raises(TaskDeferred) as caught:
        operator(wait_for_completion=True, deferrable=True, timeout=600).execute(new_try(store))
    _, kwargs = caught.value.trigger.serialize()
    assert kwargs["runway_task_id"] == runway_task_id
    assert kwargs["submitted_at"] == submitted_at  # not_found_grace still counts from the submission
    assert kwargs["end_time"] == pytest.approx(time.time() + 600, abs=5)  # a fresh wait for this try
    assert len(emulator.jobs) == 1


def test_retry_without_waiting_returns_the_earlier_task(runway_conn, emulator, store):
    runway_task_id = operator().hook.submit_generate(prompt="p", image=IMAGE)
    store.set(STATE_SUBMITTED_TASK, {"runway_task_id": runway_task_id, "submitted_at": time.time()})
    context = new_try(store)
    assert operator().execute(context) == runway_task_id
    assert context["ti"].xcom["runway_task_id"] == runway_task_id
    assert len(emulator.jobs) == 1 and store.values == {}


def test_bad_input_on_a_retry_sends_nothing(runway_conn, emulator, store):
    store.set(STATE_SUBMITTED_TASK, {"runway_task_id": "earlier", "submitted_at": time.time()})
    with pytest.raises(Exception, match="ratio"):
        operator(ratio="wide").execute(new_try(store))
    assert emulator.requests == []


def test_without_task_state_store_warns_once(runway_conn, capsys):
    operator().execute({"ti": RecordingTaskInstance()})
    warnings = [line for line in capsys.readouterr().out.splitlines() if "no task_state_store" in line]
    assert len(warnings) == 1 and "pay for" in warnings[0]
