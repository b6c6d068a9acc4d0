"""Tests of runway_provider.wait_decision: what one wait decides, and how its outcomes and events resolve.

Tasks are built with normalize_task from reference bodies, and most events come from a real
TaskWatch, so that the watch and resolve_event are checked against each other. Time is controlled
through submitted_at / end_time relative to time.time(), never by mocking the clock.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from runway_provider.exceptions import (
    RunwayAuthenticationError,
    RunwayError,
    RunwayTaskCancelledError,
    RunwayTaskError,
    RunwayTaskFailedError,
    RunwayTaskLostError,
    RunwayTaskTimeoutError,
    RunwayTransientError,
)
from runway_provider.models import RouteFamily, RunwayTask, RunwayTaskStatus
from runway_provider.protocol import normalize_task
from runway_provider.wait_decision import (
    NO_CANCEL_NOTE,
    Outcome,
    OutcomeStatus,
    TaskWatch,
    error_outcome,
    resolve_event,
)

pytestmark = pytest.mark.unit

EVENT_SUCCESS, EVENT_FAILED = OutcomeStatus.SUCCESS, OutcomeStatus.FAILED
EVENT_TIMEOUT, EVENT_ERROR = OutcomeStatus.TIMEOUT, OutcomeStatus.ERROR

S = RunwayTaskStatus
TASK_ID = "3d957031-9a2a-45e2-9dc7-bc8513059c50"
RESULT_URL = "https://runwaycdn.cometapi.com/attachments/video/runway/20260313/3d957031.mp4"
LOG = logging.getLogger("test")
UNKNOWN_WARNING = "does not know"


# --- builders --------------------------------------------------------------------------------------


def feed(status: str, *, nested: dict[str, Any] | None = None, **fields: Any) -> RunwayTask:
    """A task normalized from the current feed wrapper (§3.2)."""
    data = {
        "task_id": TASK_ID,
        "action": "IMAGE_TO_VIDEO",
        "status": status,
        "fail_reason": "",
        "progress": "0%",
        "data": nested,
        **fields,
    }
    return normalize_task(
        {"code": "success", "message": "", "data": data},
        200,
        runway_task_id=TASK_ID,
        route_family=RouteFamily.REVERSE,
    )


def succeeded() -> RunwayTask:
    return feed(
        "SUCCESS",
        progress="100%",
        result_url=RESULT_URL,
        nested={"id": TASK_ID, "status": "SUCCEEDED", "output": [RESULT_URL]},
    )


def succeeded_without_url() -> RunwayTask:
    return feed("SUCCESS", progress="100%", nested={"id": TASK_ID, "status": "SUCCEEDED"})


def failed() -> RunwayTask:
    return feed(
        "FAILURE",
        progress="100%",
        nested={
            "id": TASK_ID,
            "status": "FAILED",
            "failure": "Prompt flagged by moderation",
            "failureCode": "SAFETY.INPUT.TEXT",
        },
    )


def cancelled() -> RunwayTask:
    return feed("FAILURE", progress="100%", nested={"id": TASK_ID, "status": "CANCELLED"})


def not_visible() -> RunwayTask:
    body = {"code": "task_not_exist", "message": "task_not_exist", "data": None}
    return normalize_task(body, 400, runway_task_id=TASK_ID, route_family=RouteFamily.REVERSE)


def make_watch(
    *, end_in: float = 3600.0, submitted_ago: float = 0.0, poll_interval: float = 10.0, grace: float = 120.0
) -> TaskWatch:
    now = time.time()
    return TaskWatch(
        runway_task_id=TASK_ID,
        end_time=now + end_in,
        poll_interval=poll_interval,
        not_found_grace=grace,
        submitted_at=now - submitted_ago,
        log=LOG,
    )


def transient(retry_after: float | None = None) -> RunwayTransientError:
    return RunwayTransientError(
        f"CometAPI answered HTTP 503 for Runway task {TASK_ID}: service unavailable",
        http_status=503,
        runway_task_id=TASK_ID,
        retry_after=retry_after,
    )


def unknown_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and UNKNOWN_WARNING in r.getMessage()]


# --- observe() -------------------------------------------------------------------------------------


def test_observe_success_with_url_gives_success_event_with_task():
    task = succeeded()
    event = make_watch().observe(task)
    assert event.status == EVENT_SUCCESS
    assert event.runway_task_id == TASK_ID
    assert event.task == task
    assert event.task.video_url == RESULT_URL
    json.dumps(event.to_event())  # events cross the triggerer boundary: they must serialize
    assert set(event.to_event()) == {"status", "runway_task_id", "task", "message"}


def test_observe_success_without_url_is_failed():
    event = make_watch().observe(succeeded_without_url())
    assert event.status == EVENT_FAILED
    assert "without any output URL" in event.message
    assert TASK_ID in event.message
    assert event.task.status == "SUCCEEDED"


def test_observe_failed_names_failure_and_code():
    event = make_watch().observe(failed())
    assert event.status == EVENT_FAILED
    assert "Prompt flagged by moderation" in event.message
    assert "SAFETY.INPUT.TEXT" in event.message
    assert TASK_ID in event.message


def test_observe_cancelled_is_failed_event():
    event = make_watch().observe(cancelled())
    assert event.status == EVENT_FAILED
    assert "cancelled" in event.message
    assert event.task.status == "CANCELLED"


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(feed("QUEUED", nested={"id": TASK_ID, "status": "PENDING"}), id="PENDING"),
        pytest.param(
            feed("IN_PROGRESS", progress="37%", nested={"id": TASK_ID, "status": "RUNNING"}), id="RUNNING"
        ),
    ],
)
def test_observe_non_terminal_keeps_waiting(task):
    watch = make_watch()
    assert watch.observe(task) is None
    assert watch.last_task == task


def test_observe_unknown_warns_once_per_status(caplog):
    caplog.set_level(logging.WARNING, logger="test")
    watch = make_watch()
    task = feed("AWAITING_MODERATION")
    assert task.status is S.UNKNOWN
    assert [watch.observe(task) for _ in range(3)] == [None, None, None]
    warnings = unknown_warnings(caplog)
    assert len(warnings) == 1
    assert "AWAITING_MODERATION" in warnings[0].getMessage()
    assert TASK_ID in warnings[0].getMessage()

    assert watch.observe(feed("UNKNOWN")) is None  # a different unknown status warns again
    assert len(unknown_warnings(caplog)) == 2


def test_observe_not_visible_within_grace_keeps_waiting():
    watch = make_watch(submitted_ago=10, grace=120)
    assert watch.observe(not_visible()) is None


def test_observe_not_visible_past_grace_is_lost():
    event = make_watch(submitted_ago=3600, grace=120).observe(not_visible())
    assert event.status == EVENT_FAILED
    assert TASK_ID in event.message
    assert "lost" in event.message
    assert event.task.visible is False


# --- observe_error() -------------------------------------------------------------------------------


def test_observe_error_transient_keeps_waiting_and_is_remembered():
    watch = make_watch()
    error = transient()
    assert watch.observe_error(error) is None
    assert watch.last_error is error


def test_observe_resets_last_error():
    watch = make_watch()
    watch.observe_error(transient())
    watch.observe(feed("IN_PROGRESS", nested=None))
    assert watch.last_error is None


def test_observe_error_authentication_ends_the_wait():
    watch = make_watch()
    error = RunwayAuthenticationError(
        "CometAPI refused the API key (HTTP 401): Invalid token", http_status=401, runway_task_id=TASK_ID
    )
    event = watch.observe_error(error)
    assert event.status == EVENT_ERROR
    assert event.runway_task_id == TASK_ID
    assert "Invalid token" in event.message


# --- check_deadline() ------------------------------------------------------------------------------


def test_check_deadline_before_end_time_is_none():
    watch = make_watch(end_in=60)
    watch.observe(feed("IN_PROGRESS", nested=None))
    assert watch.check_deadline() is None


def test_check_deadline_after_end_time_is_timeout():
    watch = make_watch(end_in=-1)
    watch.observe(feed("IN_PROGRESS", progress="37%", nested={"id": TASK_ID, "status": "RUNNING"}))
    event = watch.check_deadline()
    assert event.status == EVENT_TIMEOUT
    assert event.runway_task_id == TASK_ID
    assert TASK_ID in event.message
    assert "last status: RUNNING" in event.message
    assert "may still be running: an Airflow retry reconnects to it" in event.message
    assert event.message == (
        f"Runway task {TASK_ID} did not finish before its deadline (last status: RUNNING). {NO_CANCEL_NOTE}"
    )


def test_check_deadline_includes_last_poll_error():
    watch = make_watch(end_in=-1)
    watch.observe(feed("QUEUED", nested=None))
    watch.observe_error(transient())
    event = watch.check_deadline()
    assert event.status == EVENT_TIMEOUT
    assert "last status: PENDING" in event.message
    assert "service unavailable" in event.message


def test_check_deadline_without_any_task_says_never_seen():
    event = make_watch(end_in=-1).check_deadline()
    assert event.runway_task_id == TASK_ID
    assert event.task is None
    assert event.message == (
        f"Runway task {TASK_ID} did not finish before its deadline (last status: never seen). {NO_CANCEL_NOTE}"
    )


def test_a_failed_event_without_its_task_raises_the_failure_with_the_event_message():
    """An event from a trigger that failed before it saw the task still fails the Airflow task."""
    outcome = Outcome.from_event(
        {"status": "failed", "runway_task_id": TASK_ID, "task": None, "message": "lost on the way"}
    )
    with pytest.raises(RunwayTaskFailedError) as info:
        outcome.result()
    assert type(info.value) is RunwayTaskFailedError
    assert str(info.value) == "lost on the way"
    assert (info.value.runway_task_id, info.value.status, info.value.failure_code) == (TASK_ID, None, None)


# --- next_delay() ----------------------------------------------------------------------------------


def test_next_delay_is_interval_with_ten_percent_jitter():
    watch = make_watch(poll_interval=10)
    delays = [watch.next_delay() for _ in range(200)]
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 1  # jittered, not a constant


def test_next_delay_never_goes_past_deadline():
    watch = make_watch(end_in=2, poll_interval=30)
    assert 0 < watch.next_delay() <= 2
    assert make_watch(end_in=-5, poll_interval=30).next_delay() == 0.0


def test_next_delay_honours_retry_after():
    watch = make_watch(poll_interval=10)
    watch.observe_error(transient(retry_after=45))
    assert 45 <= watch.next_delay() <= 45.001
    watch_capped = make_watch(end_in=20, poll_interval=10)
    watch_capped.observe_error(transient(retry_after=45))
    assert watch_capped.next_delay() <= 20


# --- resolve_event() -------------------------------------------------------------------------------


def test_resolve_success_returns_the_task():
    task = succeeded()
    result = resolve_event(make_watch().observe(task).to_event())
    assert isinstance(result, RunwayTask)
    assert result == task
    assert result.video_url == RESULT_URL


def test_resolve_failed_raises_failed_error_with_details():
    event = make_watch().observe(failed())
    with pytest.raises(RunwayTaskFailedError) as info:
        resolve_event(event.to_event())
    err = info.value
    assert (err.runway_task_id, err.status, err.failure, err.failure_code) == (
        TASK_ID,
        "FAILED",
        "Prompt flagged by moderation",
        "SAFETY.INPUT.TEXT",
    )
    assert str(err) == event.message


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            failed,
            f"Runway task {TASK_ID} failed (status FAILURE): Prompt flagged by moderation [SAFETY.INPUT.TEXT]",
        ),
        (cancelled, f"Runway task {TASK_ID} was cancelled (status FAILURE): no reason given"),
    ],
)
def test_a_task_that_did_not_succeed_says_how_it_ended_why_and_its_code(task, expected):
    """The line a user reads in the failed task's log: failed or cancelled, the service's reason
    (or that it gave none), and the failure code only when there is one."""
    outcome = make_watch().observe(task())
    assert outcome is not None and outcome.status is OutcomeStatus.FAILED
    assert outcome.message == expected


def test_resolve_cancelled_raises_cancelled_error():
    with pytest.raises(RunwayTaskCancelledError) as info:
        resolve_event(make_watch().observe(cancelled()).to_event())
    assert (info.value.runway_task_id, info.value.status) == (TASK_ID, "CANCELLED")


def test_resolve_lost_raises_lost_error():
    with pytest.raises(RunwayTaskLostError) as info:
        resolve_event(make_watch(submitted_ago=3600, grace=120).observe(not_visible()).to_event())
    assert info.value.runway_task_id == TASK_ID
    assert "lost" in str(info.value)


def test_resolve_timeout_raises_timeout_error():
    watch = make_watch(end_in=-1)
    watch.observe(feed("IN_PROGRESS", nested={"id": TASK_ID, "status": "RUNNING"}))
    with pytest.raises(RunwayTaskTimeoutError) as info:
        resolve_event(watch.check_deadline().to_event())
    assert (info.value.runway_task_id, info.value.status) == (TASK_ID, "RUNNING")
    assert "may still be running: an Airflow retry reconnects to it" in str(info.value)


def test_resolve_timeout_without_task_raises_timeout_error():
    with pytest.raises(RunwayTaskTimeoutError) as info:
        resolve_event(make_watch(end_in=-1).check_deadline().to_event())
    assert (info.value.runway_task_id, info.value.status) == (TASK_ID, None)


def test_resolve_error_event_raises_runway_error():
    error = RunwayAuthenticationError("CometAPI refused the API key (HTTP 401)", http_status=401)
    event = make_watch().observe_error(error)
    with pytest.raises(RunwayError) as info:
        resolve_event(event.to_event())
    assert not isinstance(info.value, RunwayTaskError)
    assert info.value.runway_task_id == TASK_ID
    assert "refused the API key" in str(info.value)


def test_resolve_error_event_helper():
    with pytest.raises(RunwayError) as info:
        resolve_event(error_outcome(TASK_ID, "Connection runway_default has no API key").to_event())
    assert str(info.value) == "Connection runway_default has no API key"
    assert info.value.runway_task_id == TASK_ID


def test_resolve_success_event_without_video_url_is_failed():
    task = succeeded_without_url()
    event = {"status": EVENT_SUCCESS, "runway_task_id": TASK_ID, "task": task.to_dict(), "message": "ok"}
    with pytest.raises(RunwayTaskFailedError) as info:
        resolve_event(event)
    assert (info.value.runway_task_id, info.value.status) == (TASK_ID, "SUCCEEDED")
    assert "without a video URL" in str(info.value)


def test_resolve_success_event_without_task_is_failed():
    event = {"status": EVENT_SUCCESS, "runway_task_id": TASK_ID, "task": None, "message": "ok"}
    with pytest.raises(RunwayTaskFailedError) as info:
        resolve_event(event)
    assert info.value.runway_task_id == TASK_ID


def _success_event() -> dict[str, Any]:
    return make_watch().observe(succeeded()).to_event()


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(None, id="None"),
        pytest.param({}, id="empty-dict"),
        pytest.param("success", id="bare-string"),
        pytest.param({"status": "success", "task": succeeded().to_dict()}, id="missing-keys"),
        pytest.param({k: v for k, v in _success_event().items() if k != "message"}, id="missing-message"),
        pytest.param({**_success_event(), "status": "SUCCESS"}, id="status-SUCCESS"),
        pytest.param({**_success_event(), "status": "succeeded"}, id="status-succeeded"),
        pytest.param({**_success_event(), "status": "cancelled"}, id="status-cancelled"),
        pytest.param({**_success_event(), "status": None}, id="status-None"),
    ],
)
def test_resolve_anything_but_well_formed_success_raises(event):
    with pytest.raises(RunwayError) as info:
        resolve_event(event)
    assert not isinstance(info.value, RunwayTaskError)
    assert "malformed" in str(info.value) or "unexpected" in str(info.value)


@pytest.mark.parametrize(
    "task",
    [
        pytest.param({"status": "SUCCEEDED", "output_urls": [RESULT_URL]}, id="task-without-id"),
        pytest.param({**succeeded().to_dict(), "status": "DONE"}, id="task-with-bogus-status"),
        pytest.param("not-a-task", id="task-not-a-dict"),
    ],
)
def test_resolve_success_event_with_malformed_task_raises_runway_error(task):
    """A malformed task inside an otherwise well-formed event must still be a RunwayError."""
    event = {"status": EVENT_SUCCESS, "runway_task_id": TASK_ID, "task": task, "message": "ok"}
    with pytest.raises(RunwayError):
        resolve_event(event)


def test_an_outcome_in_process_keeps_the_typed_error_of_the_poll():
    """Only the trigger boundary flattens an error to a message: a blocking wait raises the poll's own error."""
    error = RunwayAuthenticationError("CometAPI refused the API key (HTTP 401)", http_status=401)
    outcome = make_watch().observe_error(error)
    with pytest.raises(RunwayAuthenticationError) as info:
        outcome.result()
    assert info.value is error
    with pytest.raises(RunwayError) as flattened:
        resolve_event(outcome.to_event())
    assert type(flattened.value) is RunwayError


def test_one_poll_step_reads_an_unforeseen_error_as_transient_and_the_deadline_decides():
    def broken() -> RunwayTask:
        raise KeyError("data")

    watch = make_watch()
    assert watch.step(broken) is None
    assert "unexpected KeyError while polling" in str(watch.last_error)
    expired = make_watch(end_in=-1)
    outcome = expired.step(broken)
    assert outcome is not None and outcome.status is OutcomeStatus.TIMEOUT
    assert "last poll error: unexpected KeyError" in outcome.message


@pytest.mark.asyncio
async def test_the_async_poll_step_decides_as_the_sync_one():
    async def fetch() -> RunwayTask:
        return failed()

    outcome = await make_watch().astep(fetch)
    assert outcome == make_watch().step(failed)


def test_a_malformed_trigger_event_fails_naming_the_task_and_what_is_wrong():
    """The error of a garbled event still names the generation it was about, as every task error does."""
    garbled_task = {**_success_event(), "task": "not-a-task"}
    with pytest.raises(RunwayError) as info:
        resolve_event(garbled_task)
    assert info.value.runway_task_id == TASK_ID
    # The interpreter words the TypeError (3.10 and 3.12 differ), so the expected text asks it.
    with pytest.raises(TypeError) as reading:
        RunwayTask.from_dict(garbled_task["task"])
    assert str(info.value) == (
        f"Received a Runway trigger event with a malformed task ({reading.value!r}): {garbled_task!r}"
    )
    with pytest.raises(RunwayError) as info:
        resolve_event({**_success_event(), "status": "SUCCESS", "message": "done"})
    assert info.value.runway_task_id == TASK_ID
    assert (
        str(info.value)
        == f"Received an unexpected Runway trigger event status 'SUCCESS' for task {TASK_ID}: done"
    )


def test_a_wait_that_times_out_on_odd_answers_quotes_the_last_one_shortened():
    odd = "unreadable answer: " + "x" * 300

    def broken() -> RunwayTask:
        raise ValueError(odd)

    outcome = make_watch(end_in=-1).step(broken)
    assert outcome is not None and outcome.status is OutcomeStatus.TIMEOUT
    assert outcome.message == (
        f"Runway task {TASK_ID} did not finish before its deadline (last status: never seen; last poll "
        f"error: unexpected ValueError while polling: {odd[:200]}). {NO_CANCEL_NOTE}"
    )
