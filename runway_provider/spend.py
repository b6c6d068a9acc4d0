"""Everything that can spend money is decided here: create, resume and cancel.

A Runway generation is billed when CometAPI processes its create request. CometAPI has no
idempotency key and no way to list tasks, so the provider keeps, per Airflow task instance (one per
map index), a record in ``task_state_store`` under :data:`STATE_KEY`: a *submitting* marker written
before the POST, replaced by the Runway task id right after the answer. Both carry the request's
fingerprint (sha256 of the route and the canonical body; never the key). A later try, or a clear,
reconnects only to a task made for the same fingerprint.

Every failure point of a create, what the provider does, and how many generations can be billed
for one intent (one task instance and one request fingerprint):

==========================================  ================================================  ======
failure point                               what the provider does                            billed
==========================================  ================================================  ======
before send: bad argument, no key, the      nothing is sent; ``RunwayInputError`` /           0
marker cannot be written                    ``RunwayConfigurationError`` fail at once; a
                                            store error is retried by Airflow
during send, before any byte left:          marker removed; retried inside the call, then     0
refused, DNS, connect timeout, TLS          ``RunwayTransientError`` (Airflow retries)
handshake, invalid header or URL
refused by the service: 3xx, 4xx but        marker removed; ``RunwayRequestRefusedError``     0
408/409/429, an error code in a 2xx body    fails without retry
a limit: 429, quota codes; 408, 409; a 503  marker removed; ``RunwayRateLimitError`` /        0
with CometAPI's own JSON error              ``RunwayTransientError``, retried
after send, answer lost: read timeout,      marker kept; ``RunwaySubmissionUncertainError``   ≤ 1
reset, TLS error while reading, 5xx from    (an ``AirflowFailException``): no retry, and a
a proxy (500/502/504, 503 without JSON)     later try or clear of the same request fails the
                                            same way instead of sending it again
answer garbled: 2xx not JSON, without a     as above                                          ≤ 1
task id, or reporting a server error
worker killed during the POST               marker kept: the next try fails as above          ≤ 1
id not saved: the store write fails after   ``RunwayStateNotSavedError`` naming the task id,  1
a successful create                         no retry (the id is also in XCom and the log)
a retry (worker killed, wait timed out,     reconnects to the saved task when the             1
triggerer lost) of the same request         fingerprint matches and the task is running or
                                            succeeded; a failed, cancelled or lost task is
                                            submitted anew (that one was billed by Runway's
                                            rules, the new one is a new intent)
a retry or clear with a different request   submits the new request; the earlier task is      1 + 1
(templated prompt changed, DAG edited)      cancelled first where its family allows, else
                                            logged as possibly still billing
a rerun with ``reuse_from``, the same       the stored result is reused: nothing is sent, the 0
request already stored intact               task id and record come from the stored record
``reuse_from``: record missing, unreadable, generated anew (as without ``reuse_from``)        1
for another request, object gone, or its
sha256 changed
==========================================  ================================================  ======

Cancelling (``DELETE /runwayml/v1/tasks/{id}``, official family only; reverse-format tasks
cannot be cancelled and say so) happens on a user's kill (``cancel_on_kill``; in the triggerer only
when :func:`kill_cancels` says the task instance was stopped, not moved) and on the last try's
timeout (:func:`on_wait_timeout`, ``cancel_on_timeout``). A try that Airflow will retry leaves its
task running, so the retry reconnects instead of paying again. :func:`cancel_abandoned` and its
async twin send it and say what happened; they never raise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runway_provider.exceptions import (
    RunwayConfigurationError,
    RunwayError,
    RunwayInputError,
    RunwayRequestRefusedError,
    RunwayStateNotSavedError,
    RunwaySubmissionUncertainError,
    RunwayTransientError,
)
from runway_provider.models import CancelOutcome, RunwayTaskStatus
from runway_provider.records import RequestRecord, StoredResult, find_reusable
from runway_provider.waiting import OutcomeStatus, TaskWatch

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from runway_provider.hooks.runway import RunwayHook
    from runway_provider.routes import Route

# task_state_store key of the record above, kept across the tries (and clears) of a task instance.
STATE_KEY = "runway_submission"
XCOM_RUNWAY_TASK_ID = "runway_task_id"
XCOM_SUBMITTED_AT = "runway_submitted_at"
# The request behind the task (records.RequestRecord): what the transfer writes in its record.
XCOM_RUNWAY_REQUEST = "runway_request"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
# The fingerprint's first characters, enough to tell requests apart in a log line.
_SHOWN_FINGERPRINT = 12
# Errors raised by a create that prove the service did not process it.
_NOT_PROCESSED = (RunwayTransientError, RunwayRequestRefusedError, RunwayConfigurationError, RunwayInputError)


@dataclass(frozen=True)
class Submission:
    """The Runway task a try works with.

    :param runway_task_id: The task.
    :param submitted_at: When it was submitted, epoch seconds (an earlier try's time on a resume).
    :param reused: The stored result reused instead of generating (``reuse_from``), if any.
    """

    runway_task_id: str
    submitted_at: float
    reused: StoredResult | None = None


def request_fingerprint(route: Route[...], payload: Mapping[str, Any]) -> str:
    """sha256 of the route's path and the canonical JSON body: equal for equal requests, whatever the key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{route.path}\n{canonical}".encode()).hexdigest()


def submit_or_resume(
    *,
    hook: RunwayHook,
    context: Mapping[str, Any],
    route: Route[...],
    payload: Mapping[str, Any],
    not_found_grace: float,
    log: Any,
    reuse_from: ObjectStoragePath | None = None,
) -> Submission:
    """Return the task this try works with: a stored result of the same request, the earlier try's
    task for it, or a new one.

    Pushes the task id (key ``runway_task_id``), its submission time and the request
    (``runway_request``) to XCom before returning.

    :param hook: The hook that sends the requests.
    :param context: The Airflow context (``ti``, and ``task_state_store`` on Airflow 3.3+).
    :param route: The create route (its path and family).
    :param payload: The checked request body.
    :param not_found_grace: Seconds after submission during which ``task_not_exist`` is normal.
    :param log: The operator's logger.
    :param reuse_from: A folder of earlier results (the transfer's destination): a stored result of
        this very request is reused and nothing is sent (:func:`runway_provider.records.find_reusable`).
    """
    fingerprint = request_fingerprint(route, payload)
    if reuse_from is not None and (reused := find_reusable(reuse_from, fingerprint, log)) is not None:
        log.info(
            "Reusing %s from Runway task %s: the same request (fingerprint %s) was generated and stored "
            "before; nothing is sent.",
            reused.uri,
            reused.runway_task_id,
            fingerprint[:_SHOWN_FINGERPRINT],
        )
        reuse = Submission(reused.runway_task_id, reused.submitted_at or reused.stored_at, reused)
        _push(context, reuse, route, payload, fingerprint, reused_conn_id=reuse_from.conn_id)
        return reuse
    store = context.get("task_state_store")
    if store is None:
        log.warning(
            "This Airflow gives the task no task_state_store (it needs Airflow 3.3+ and Airflow's task "
            "runner): if this try fails after submitting, a retry will submit, and pay for, a new "
            "generation instead of reconnecting to this one."
        )
    saved = store.get(STATE_KEY) if store is not None else None
    submission: Submission | None = None
    if isinstance(saved, Mapping):
        submission = _resume(hook, context, saved, route.path, fingerprint, not_found_grace, log)
    if submission is None:
        submission = _create(hook, context, store, route, payload, fingerprint, log)
    _push(context, submission, route, payload, fingerprint)
    return submission


def _push(
    context: Mapping[str, Any],
    submission: Submission,
    route: Route[...],
    payload: Mapping[str, Any],
    fingerprint: str,
    *,
    reused_conn_id: str | None = None,
) -> None:
    ti = context["ti"]
    ti.xcom_push(key=XCOM_RUNWAY_TASK_ID, value=submission.runway_task_id)
    ti.xcom_push(key=XCOM_SUBMITTED_AT, value=submission.submitted_at)
    request = RequestRecord.of(
        route=route.path,
        route_family=route.family.value,
        fingerprint=fingerprint,
        payload=payload,
        submitted_at=submission.submitted_at,
    )
    if submission.reused is not None:
        # Where it was found, with the connection to read it (a connection id, never a credential):
        # a transfer to another place copies it from there.
        request = dataclasses.replace(
            request, reused=submission.reused.to_dict(), reused_conn_id=reused_conn_id
        )
    ti.xcom_push(key=XCOM_RUNWAY_REQUEST, value=request.to_dict())


def forget(context: Mapping[str, Any]) -> None:
    """Once the task instance has succeeded, a later clear and rerun should generate anew."""
    store = context.get("task_state_store")
    if store is not None:
        store.delete(STATE_KEY)


def _create(
    hook: RunwayHook,
    context: Mapping[str, Any],
    store: Any,
    route: Route[...],
    payload: Mapping[str, Any],
    fingerprint: str,
    log: Any,
) -> Submission:
    started_at = time.time()
    record: dict[str, Any] = {
        "phase": SUBMITTING,
        "fingerprint": fingerprint,
        "route": route.path,
        "route_family": route.family.value,
        "started_at": started_at,
    }
    if store is not None:
        store.set(STATE_KEY, record)
    try:
        runway_task_id = hook.submit(route, payload)
    except _NOT_PROCESSED:
        if store is not None:
            store.delete(STATE_KEY)
        raise
    except RunwaySubmissionUncertainError as err:
        raise _uncertain_error(context, route.path, fingerprint, started_at, str(err)) from None
    submitted_at = time.time()
    log.info(
        "Submitted Runway task %s on %s (request fingerprint %s).",
        runway_task_id,
        route.path,
        fingerprint[:_SHOWN_FINGERPRINT],
    )
    record.update(phase=SUBMITTED, runway_task_id=runway_task_id, submitted_at=submitted_at)
    if store is not None:
        try:
            store.set(STATE_KEY, record)
        except Exception as err:  # any failure of the Execution API call: the id must not be lost
            context["ti"].xcom_push(key=XCOM_RUNWAY_TASK_ID, value=runway_task_id)
            raise RunwayStateNotSavedError(
                f"Runway task {runway_task_id} was created on {route.path} but saving its id for later tries "
                f"failed ({type(err).__name__}: {err}). Not retrying, since a retry would not know the id "
                f"and would pay for a new generation. Collect this one with "
                f"RunwayTaskSensor(runway_task_id={runway_task_id!r}, route_family={route.family.value!r}).",
                runway_task_id=runway_task_id,
            ) from err
    return Submission(runway_task_id, submitted_at)


def _resume(
    hook: RunwayHook,
    context: Mapping[str, Any],
    saved: Mapping[str, Any],
    route: str,
    fingerprint: str,
    not_found_grace: float,
    log: Any,
) -> Submission | None:
    """The earlier try's task, if it was made for this request and is worth waiting on or done."""
    if saved.get("fingerprint") != fingerprint:
        _leave_other_request(hook, saved, fingerprint, log)
        return None
    runway_task_id = saved.get("runway_task_id")
    if saved.get("phase") == SUBMITTING or not runway_task_id:
        raise _uncertain_error(
            context,
            route,
            fingerprint,
            float(saved.get("started_at") or 0.0),
            "an earlier try sent this request and never recorded an answer",
        )
    submission = Submission(str(runway_task_id), float(saved["submitted_at"]))
    family = str(saved.get("route_family") or "reverse")
    return submission if _worth_reconnecting(hook, submission, family, not_found_grace, log) else None


def _leave_other_request(hook: RunwayHook, saved: Mapping[str, Any], fingerprint: str, log: Any) -> None:
    """The earlier try sent another request (its template or DAG changed): cancel its task if it can."""
    runway_task_id = saved.get("runway_task_id")
    earlier = str(saved.get("fingerprint") or "none recorded")[:_SHOWN_FINGERPRINT]
    if not runway_task_id:
        log.warning(
            "An earlier try's create for a different request (fingerprint %s) got no usable answer and "
            "may have been billed; submitting this request (fingerprint %s).",
            earlier,
            fingerprint[:_SHOWN_FINGERPRINT],
        )
        return
    log.warning(
        "Runway task %s from an earlier try was made for a different request (fingerprint %s, "
        "this one %s): submitting this request anew, not reconnecting.",
        runway_task_id,
        earlier,
        fingerprint[:_SHOWN_FINGERPRINT],
    )
    family = str(saved.get("route_family") or "reverse")
    _cancel_if_unfinished(hook, str(runway_task_id), family, "its request changed before this try", log)


def _worth_reconnecting(
    hook: RunwayHook, submission: Submission, route_family: str, not_found_grace: float, log: Any
) -> bool:
    """Whether the earlier try's task still runs or succeeded (a failed, cancelled or lost one is not)."""
    runway_task_id = submission.runway_task_id
    try:
        task = hook.get_task(runway_task_id, route_family)
    except RunwayTransientError as err:
        log.warning(
            "Could not check Runway task %s from an earlier try (%s); reconnecting to it rather than "
            "paying for a new one.",
            runway_task_id,
            err,
        )
        return True
    watch = TaskWatch(
        runway_task_id=runway_task_id,
        end_time=time.time(),
        poll_interval=1.0,
        not_found_grace=not_found_grace,
        submitted_at=submission.submitted_at,
        log=log,
    )
    outcome = watch.observe(task)
    if outcome is None:
        log.info(
            "Reconnecting to Runway task %s submitted by an earlier try (status %s); not submitting again.",
            runway_task_id,
            task.status.value,
        )
        return True
    if outcome.status is OutcomeStatus.SUCCESS:
        log.info(
            "Runway task %s from an earlier try already succeeded; not submitting again.", runway_task_id
        )
        return True
    log.warning(
        "Runway task %s from an earlier try ended without a video (%s); submitting a new generation.",
        runway_task_id,
        outcome.message,
    )
    return False


def _cancel_if_unfinished(
    hook: RunwayHook, runway_task_id: str, route_family: str, reason: str, log: Any
) -> None:
    # Runway's DELETE also deletes a finished task: never send it for one that may hold a video.
    try:
        task = hook.get_task(runway_task_id, route_family)
    except RunwayError as err:
        log.warning("Could not check Runway task %s (%s); not cancelling it: %s", runway_task_id, reason, err)
        return
    if task.visible and not task.is_terminal:
        cancel_abandoned(hook, runway_task_id, route_family, reason=reason, log=log)


def _uncertain_error(
    context: Mapping[str, Any], route: str, fingerprint: str, started_at: float, detail: str
) -> RunwaySubmissionUncertainError:
    ti = context["ti"]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started_at)) if started_at else "unknown"
    marker_path = (
        f"/api/v2/dags/{getattr(ti, 'dag_id', '<dag_id>')}/dagRuns/{getattr(ti, 'run_id', '<run_id>')}"
        f"/taskInstances/{getattr(ti, 'task_id', '<task_id>')}/state-store/{STATE_KEY}"
        f"?map_index={getattr(ti, 'map_index', -1)}"
    )
    return RunwaySubmissionUncertainError(
        f"The Runway create on {route} (request fingerprint {fingerprint[:_SHOWN_FINGERPRINT]}, sent {when}) "
        f"may have been processed without its answer reaching Airflow: {detail.rstrip('.')}. A generation may exist "
        "and bill, so this request is not sent again, by this try, by Airflow's retries or by a clear. "
        "Look for it in your CometAPI dashboard: if it exists, collect it with RunwayTaskSensor. To pay "
        f"for a new generation deliberately, delete the marker (DELETE {marker_path} on Airflow's REST "
        "API) and clear the task, or change the request.",
        route=route,
        fingerprint=fingerprint,
    )


def retry_follows(ti: Any) -> bool:
    """Whether Airflow will run this task instance again if the current try fails."""
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    return isinstance(try_number, int) and isinstance(max_tries, int) and try_number <= max_tries


def on_wait_timeout(
    hook: RunwayHook,
    *,
    runway_task_id: str,
    last_status: str | None,
    route_family: str,
    cancel_on_timeout: bool,
    will_retry: bool,
    log: Any,
) -> None:
    """Decide what happens to a task whose wait timed out: keep it for the retry, or cancel it.

    :param hook: The hook that sends the cancel.
    :param runway_task_id: The task waited on.
    :param last_status: Its last normalized status, None if never seen.
    :param route_family: ``reverse`` or ``official``.
    :param cancel_on_timeout: The operator's or sensor's setting.
    :param will_retry: Whether Airflow will run the task instance again (see :func:`retry_follows`).
    :param log: The operator's logger.
    """
    if last_status is not None and RunwayTaskStatus(last_status).is_terminal:
        return
    if will_retry:
        log.info(
            "Leaving Runway task %s running: Airflow will retry this task, and the retry reconnects to it "
            "instead of paying for a new generation.",
            runway_task_id,
        )
    elif not cancel_on_timeout:
        log.warning(
            "Runway task %s is still %s after the last try's timeout; cancel_on_timeout is off, so it may "
            "still finish and bill.",
            runway_task_id,
            last_status or "unseen",
        )
    else:
        cancel_abandoned(hook, runway_task_id, route_family, reason="the last try's wait timed out", log=log)


# Airflow 3.3's triggerer runs a trigger's on_kill() for every trigger it stops on a "user action",
# including triggers merely reassigned to another triggerer: a task still deferred was moved, not
# killed. A task a user marked successful keeps its generation too.
_STATES_THAT_KEEP_THE_GENERATION = frozenset({"deferred", "success"})


def kill_cancels(state_known: bool, state: str | None) -> bool:
    """Whether a deferred wait that Airflow stopped should cancel its task.

    :param state_known: Whether the task instance's state could be read; not knowing, the task is
        kept (cancelling a moved task would make its retry pay again).
    :param state: The task instance's state now; None after a clear.
    """
    return state_known and state not in _STATES_THAT_KEEP_THE_GENERATION


def cancel_abandoned(
    hook: RunwayHook, runway_task_id: str, route_family: str, *, reason: str, log: Any
) -> None:
    """Cancel a task nobody will collect, best effort: never raises, always says what happened."""
    try:
        outcome: CancelOutcome | RunwayError = hook.cancel_task(runway_task_id, route_family)
    except RunwayError as err:
        outcome = err
    _log_cancel(outcome, runway_task_id, reason, log)


async def acancel_abandoned(
    hook: RunwayHook, runway_task_id: str, route_family: str, *, reason: str, log: Any
) -> None:
    """Async :func:`cancel_abandoned`, for a trigger's ``on_kill``."""
    try:
        outcome: CancelOutcome | RunwayError = await hook.acancel_task(runway_task_id, route_family)
    except RunwayError as err:
        outcome = err
    _log_cancel(outcome, runway_task_id, reason, log)


def _log_cancel(outcome: CancelOutcome | RunwayError, runway_task_id: str, reason: str, log: Any) -> None:
    if isinstance(outcome, RunwayError):
        log.warning(
            "Could not cancel Runway task %s (%s): %s. It may still finish and bill.",
            runway_task_id,
            reason,
            outcome,
        )
    elif outcome is CancelOutcome.CANCELLED:
        log.info("Cancelled Runway task %s: %s.", runway_task_id, reason)
    elif outcome is CancelOutcome.UNSUPPORTED:
        log.warning(
            "Runway task %s was not cancelled (%s): cancelling is not supported by this endpoint. It may still "
            "finish and bill.",
            runway_task_id,
            reason,
        )
    else:
        log.warning(
            "Runway task %s cannot be cancelled (%s): reverse-format tasks have no cancel route. It may still "
            "finish and bill.",
            runway_task_id,
            reason,
        )
