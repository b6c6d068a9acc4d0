"""Waiting on a Runway task, written once for the blocking wait, the sensor, the trigger and a resume.

A :class:`TaskWatch` is fed each poll's :class:`RunwayTask` (or the error the poll raised) and
answers with an :class:`Outcome` when the wait is over; :meth:`TaskWatch.step` and
:meth:`TaskWatch.astep` are the one poll step every wait takes, and :func:`wait` the blocking loop.
An outcome stays a typed value in-process (:meth:`Outcome.result` returns the finished task or
raises the typed error, the original one where a poll raised it); only at the trigger boundary does
it become an event dict, ``{"status": "success"|"failed"|"timeout"|"error", "runway_task_id",
"task", "message"}`` (:meth:`Outcome.to_event`), read back by :func:`resolve_event`.

The module does no I/O of its own: a wait hands it the function that fetches the task. So the hook
can offer ``wait_for_task`` without this module knowing the hook.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from runway_provider.exceptions import (
    RunwayBadOutputError,
    RunwayContentRejectedError,
    RunwayError,
    RunwayInputPreprocessingError,
    RunwayTaskCancelledError,
    RunwayTaskError,
    RunwayTaskFailedError,
    RunwayTaskLostError,
    RunwayTaskTimeoutError,
    RunwayTransientError,
)
from runway_provider.models import RunwayTask, RunwayTaskStatus
from runway_provider.pacing import PollPacer, PollSchedule


class OutcomeStatus(str, Enum):
    """How a wait ended; the ``status`` of its trigger event."""

    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    # The wait could not go on: a bad key, a missing connection, an answer no rule foresaw.
    ERROR = "error"


_EVENT_KEYS = frozenset({"status", "runway_task_id", "task", "message"})

NO_CANCEL_NOTE = (
    "It may still be running: an Airflow retry reconnects to it, and on the last try an "
    "official-format task is cancelled (cancel_on_timeout); see docs/reliability.md."
)


class TaskWatch:
    """The state of one wait: deadline, ``task_not_exist`` grace, last status and last error.

    :param runway_task_id: The task waited on.
    :param end_time: Wall-clock deadline, epoch seconds.
    :param poll_interval: Seconds between polls (±10%), unless ``pacer`` is given.
    :param not_found_grace: Seconds after ``submitted_at`` during which ``task_not_exist`` means
        "not visible yet"; after that the task is lost.
    :param submitted_at: When the task was submitted (or first watched), epoch seconds.
    :param log: Where to report unknown statuses and transient errors.
    :param pacer: Decides the delays between polls (:mod:`runway_provider.pacing`); by default
        ``poll_interval`` ±10%. A ``Retry-After`` and the deadline still apply on top of it.
    """

    def __init__(
        self,
        *,
        runway_task_id: str,
        end_time: float,
        poll_interval: float,
        not_found_grace: float,
        submitted_at: float,
        log: logging.Logger | Any,
        pacer: PollPacer | None = None,
    ) -> None:
        self.runway_task_id = runway_task_id
        self.end_time = end_time
        self.poll_interval = poll_interval
        self.not_found_grace = not_found_grace
        self.submitted_at = submitted_at
        self.log = log
        self.pacer = pacer or PollSchedule.fixed(poll_interval).pacer(submitted_at=submitted_at)
        self.last_task: RunwayTask | None = None
        self.last_error: RunwayError | None = None
        self._warned_statuses: set[str | None] | None = None

    @classmethod
    def of(
        cls,
        schedule: PollSchedule,
        *,
        runway_task_id: str,
        submitted_at: float,
        end_time: float,
        not_found_grace: float,
        log: logging.Logger | Any,
    ) -> TaskWatch:
        """The wait on one task paced by ``schedule``: how every wait (blocking, sensor, trigger) starts.

        :param schedule: The wait's polling schedule (:mod:`runway_provider.pacing`).
        :param runway_task_id: The task waited on.
        :param submitted_at: When it was submitted (or first watched), epoch seconds.
        :param end_time: Wall-clock deadline, epoch seconds.
        :param not_found_grace: Seconds after ``submitted_at`` during which ``task_not_exist`` is normal.
        :param log: Where to report unknown statuses and transient errors.
        """
        return cls(
            runway_task_id=runway_task_id,
            end_time=end_time,
            poll_interval=schedule.fixed_interval or schedule.fallback,
            not_found_grace=not_found_grace,
            submitted_at=submitted_at,
            log=log,
            pacer=schedule.pacer(submitted_at=submitted_at),
        )

    def observe(self, task: RunwayTask) -> Outcome | None:
        """Record a poll's answer; return the outcome if the wait is over."""
        # Thousands of waits may be in flight: keep the last answer without its raw body.
        self.last_task = dataclasses.replace(task, raw=None)
        self.last_error = None
        self.pacer.observe(self.last_task, time.time())
        outcome = outcome_of(task, submitted_at=self.submitted_at, not_found_grace=self.not_found_grace)
        if (
            outcome is None
            and task.status is RunwayTaskStatus.UNKNOWN
            and task.service_status not in (self._warned_statuses or ())
        ):
            self._warned_statuses = {*(self._warned_statuses or ()), task.service_status}
            self.log.warning(
                "Runway task %s has a status this provider does not know (%r); polling on until "
                "it becomes terminal or the deadline passes.",
                task.runway_task_id,
                task.service_status,
            )
        return outcome

    def observe_error(self, error: RunwayError) -> Outcome | None:
        """Record a failed poll: transient errors keep the wait going, others end it."""
        if isinstance(error, RunwayTransientError):
            self.last_error = error
            self.log.warning("Polling Runway task %s failed, will poll again: %s", self.runway_task_id, error)
            return None
        return Outcome(OutcomeStatus.ERROR, self.runway_task_id, self.last_task, str(error), error)

    def check_deadline(self) -> Outcome | None:
        """Return the timeout outcome once the deadline has passed."""
        if time.time() < self.end_time:
            return None
        status = self.last_task.status.value if self.last_task else "never seen"
        detail = f"; last poll error: {self.last_error}" if self.last_error else ""
        return _outcome(
            OutcomeStatus.TIMEOUT,
            self.last_task,
            f"Runway task {self.runway_task_id} did not finish before its deadline "
            f"(last status: {status}{detail}). {NO_CANCEL_NOTE}",
            runway_task_id=self.runway_task_id,
        )

    def first_delay(self) -> float:
        """Seconds to sleep before the first poll of a trigger, spread over one interval.

        The task was checked just before it deferred; spreading the first polls keeps thousands of
        tasks deferred at once from polling in lockstep.
        """
        now = time.time()
        return max(0.0, min(self.pacer.first_delay(now), self.end_time - now))

    def next_delay(self) -> float:
        """Seconds to sleep before the next poll: the pacer's, or longer if the service said
        ``Retry-After``; never past the deadline."""
        delay = self.pacer.next_delay(time.time())
        retry_after = getattr(self.last_error, "retry_after", None)
        if retry_after:
            delay = max(delay, float(retry_after))
        return max(0.0, min(delay, self.end_time - time.time()))

    def step(self, fetch: Callable[[], RunwayTask]) -> Outcome | None:
        """One poll: fetch the task, read the answer or the error, check the deadline.

        Any error of the poll is read here: a transient one (an unforeseen one counts as transient,
        so the deadline decides) keeps the wait going; any other ends it.
        """
        try:
            outcome = self.observe(fetch())
        except RunwayError as err:
            outcome = self.observe_error(err)
        except Exception as err:  # one odd answer must not end a wait that the deadline bounds
            outcome = self.observe_error(unexpected_poll_error(err))
        return outcome or self.check_deadline()

    async def astep(self, fetch: Callable[[], Awaitable[RunwayTask]]) -> Outcome | None:
        """:meth:`step` for the triggerer's event loop."""
        try:
            outcome = self.observe(await fetch())
        except RunwayError as err:
            outcome = self.observe_error(err)
        except Exception as err:  # one odd answer must not end a wait that the deadline bounds
            outcome = self.observe_error(unexpected_poll_error(err))
        return outcome or self.check_deadline()


@dataclass(frozen=True)
class Outcome:
    """How a wait ended.

    :param status: Success, failed, timeout or error.
    :param runway_task_id: The task waited on.
    :param task: Its last known state (without the raw answer), if it was ever seen.
    :param message: What happened, for the log and the error.
    :param error: The poll's own error when one ended the wait (in-process only; not in the event).
    """

    status: OutcomeStatus
    runway_task_id: str
    task: RunwayTask | None
    message: str
    error: RunwayError | None = None

    def result(self) -> RunwayTask:
        """Return the finished task of a success; raise the typed error of any other end.

        Only an explicit success with an output URL counts as success (allow-list, as dbt and
        OpenAI learned).
        """
        if self.status is OutcomeStatus.SUCCESS and self.task is not None and self.task.video_url:
            return self.task
        if self.error is not None:
            raise self.error
        error_class: type[RunwayTaskError]
        message = self.message
        task = self.task
        if self.status is OutcomeStatus.TIMEOUT:
            error_class = RunwayTaskTimeoutError
        elif self.status is OutcomeStatus.FAILED and task is not None and not task.visible:
            error_class = RunwayTaskLostError
        elif (
            self.status is OutcomeStatus.FAILED
            and task is not None
            and task.status is RunwayTaskStatus.CANCELLED
        ):
            error_class = RunwayTaskCancelledError
        elif self.status is OutcomeStatus.FAILED:
            error_class = _failure_class(task.failure_code if task else None)
        elif self.status is OutcomeStatus.SUCCESS:
            error_class = RunwayTaskFailedError
            message = f"Runway task {self.runway_task_id} was reported successful without a video URL."
        else:
            raise RunwayError(message, runway_task_id=self.runway_task_id)
        raise error_class(
            message,
            runway_task_id=self.runway_task_id,
            status=task.status.value if task else None,
            failure=task.failure if task else None,
            failure_code=task.failure_code if task else None,
        )

    def to_event(self) -> dict[str, Any]:
        """The trigger event: plain JSON, what crosses from the triggerer to the worker."""
        return {
            "status": self.status.value,
            "runway_task_id": self.runway_task_id,
            "task": self.task.to_dict() if self.task else None,
            "message": self.message,
        }

    @classmethod
    def from_event(cls, event: Any) -> Outcome:
        """Read a trigger event back; a malformed one raises :class:`RunwayError`."""
        if not isinstance(event, Mapping) or not event.keys() >= _EVENT_KEYS:
            raise RunwayError(f"Received a malformed Runway trigger event: {event!r}")
        runway_task_id = str(event["runway_task_id"])
        try:
            task = RunwayTask.from_dict(event["task"]) if event["task"] else None
        except (KeyError, TypeError, ValueError) as err:
            raise RunwayError(
                f"Received a Runway trigger event with a malformed task ({err!r}): {event!r}",
                runway_task_id=runway_task_id,
            ) from None
        try:
            # Exact values only: "SUCCESS" or "succeeded" is not a success.
            status = OutcomeStatus(event["status"]) if isinstance(event["status"], str) else None
        except ValueError:
            status = None
        if status is None:
            raise RunwayError(
                f"Received an unexpected Runway trigger event status {event['status']!r} "
                f"for task {runway_task_id}: {event['message']}",
                runway_task_id=runway_task_id,
            )
        return cls(status, runway_task_id, task, str(event["message"]))


def outcome_of(task: RunwayTask, *, submitted_at: float, not_found_grace: float) -> Outcome | None:
    """What one answer about a task means for a wait on it: its outcome, or None while it goes on.

    :param task: The task as a poll just saw it.
    :param submitted_at: When it was submitted (or first watched), epoch seconds.
    :param not_found_grace: Seconds after ``submitted_at`` during which ``task_not_exist`` is normal.
    """
    if not task.visible:
        waited = time.time() - submitted_at
        if waited <= not_found_grace:
            return None
        return _outcome(
            OutcomeStatus.FAILED,
            task,
            f"Runway task {task.runway_task_id} was still unknown to CometAPI (task_not_exist) "
            f"{waited:.0f}s after submission, beyond the not_found_grace of "
            f"{not_found_grace:.0f}s; it is treated as lost.",
        )
    if task.status is RunwayTaskStatus.SUCCEEDED:
        if task.video_url:
            return _outcome(OutcomeStatus.SUCCESS, task, f"Runway task {task.runway_task_id} succeeded.")
        return _outcome(
            OutcomeStatus.FAILED,
            task,
            f"Runway task {task.runway_task_id} reported success without any output URL.",
        )
    if task.status in (RunwayTaskStatus.FAILED, RunwayTaskStatus.CANCELLED):
        return _outcome(OutcomeStatus.FAILED, task, _failure_message(task))
    return None


def resolve_event(event: Any) -> RunwayTask:
    """Return the finished task of a trigger's success event; raise the typed error of any other."""
    return Outcome.from_event(event).result()


def wait(watch: TaskWatch, fetch: Callable[[], RunwayTask]) -> RunwayTask:
    """The blocking wait: poll until the wait is over, holding the caller; return the finished task."""
    while (outcome := watch.step(fetch)) is None:
        time.sleep(watch.next_delay())
    return outcome.result()


def unexpected_poll_error(err: Exception) -> RunwayTransientError:
    """An error no rule foresaw, raised by one poll: treated as transient, so the deadline decides."""
    return RunwayTransientError(f"unexpected {type(err).__name__} while polling: {str(err)[:200]}")


def error_outcome(runway_task_id: str, message: str) -> Outcome:
    """The outcome of a wait that could not start (missing connection, unexpected failure)."""
    return Outcome(OutcomeStatus.ERROR, runway_task_id, None, message)


def _outcome(
    status: OutcomeStatus, task: RunwayTask | None, message: str, *, runway_task_id: str | None = None
) -> Outcome:
    return Outcome(status, runway_task_id or (task.runway_task_id if task else ""), task, message)


def _failure_class(failure_code: str | None) -> type[RunwayTaskError]:
    """The typed error of a Runway ``failureCode`` family."""
    code = (failure_code or "").upper()
    if code.startswith(("SAFETY.", "INPUT_PREPROCESSING.SAFETY")):
        return RunwayContentRejectedError
    if code.startswith("INTERNAL.BAD_OUTPUT"):
        return RunwayBadOutputError
    if code.startswith("INPUT_PREPROCESSING."):
        return RunwayInputPreprocessingError
    return RunwayTaskFailedError


def _failure_message(task: RunwayTask) -> str:
    verb = "was cancelled" if task.status is RunwayTaskStatus.CANCELLED else "failed"
    reason = task.failure or "no reason given"
    code = f" [{task.failure_code}]" if task.failure_code else ""
    return f"Runway task {task.runway_task_id} {verb} (status {task.service_status}): {reason}{code}"
