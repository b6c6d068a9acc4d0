"""Everything that can spend money is decided here: create, resume and cancel.

A Runway generation is billed when CometAPI processes its create request. CometAPI has no
idempotency key and no way to list tasks, so the provider keeps, per Airflow task instance (one per
map index), a record in its state store under :data:`STATE_KEY` (Airflow 3.3's ``task_state_store``;
an Airflow Variable of its own before 3.3, :func:`runway_provider.compat.state_store`): a *submitting* marker written
before the POST (after everything that can fail without sending: the connection read, the key
checked, the session built), replaced by the Runway task id right after the answer, and marked
*done* once the generation succeeded; the provider never removes it. All carry the request's
fingerprint (sha256 of the route and the canonical body; never the key). A later try, or a clear,
reconnects only to a task made for the same fingerprint.

Every failure point of a create, what the provider does, and how many generations can be billed
for one intent (one task instance and one request fingerprint):

==========================================  ================================================  ======
failure point                               what the provider does                            billed
==========================================  ================================================  ======
before send: bad argument, no key, a key   nothing is sent, no marker is left;               0
HTTP headers cannot carry, the connection   ``RunwayInputError`` / ``RunwayConfigurationError``
unreadable, the marker cannot be written    fail at once; a missing connection or a store
                                            error is retried by Airflow
during send, before any byte left:          marker removed; retried inside the call, then     0
refused, DNS, connect timeout, TLS          ``RunwayTransientError`` (Airflow retries)
handshake, invalid header or URL
refused by the service: 3xx, 4xx but        marker removed; ``RunwayRequestRefusedError``     0
408/409/429, an error code in a 2xx body    fails without retry
below the balance floor: extra              nothing is sent, no marker is left;               0
``min_remaining_quota`` set, the quota      ``RunwayBalanceFloorError`` fails at once,
read before a create is lower (never read   naming floor and balance; a balance that
on a reconnect or a reuse)                  cannot be read lets the create go, warned
a spent balance: CometAPI's 403             marker removed; ``RunwayBalanceExhaustedError``   0
``insufficient_user_quota``, Runway's       (a refusal) fails at once without retry,
"not enough credits", whatever the status   saying where to top up
a limit: 429 (rate, daily generation        marker removed; ``RunwayRateLimitError`` /        0
limit); 408, 409; a 503 with CometAPI's     ``RunwayTransientError``, retried
own JSON error
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
a try that fails after its generation       the record, kept and marked done, makes the next  1
succeeded (XCom push, worker death), then   try reconnect to the succeeded task
a retry or clear of the same request
a request marked done whose task the        ``RunwayAlreadyGeneratedError``: not sent again;  1
service no longer gives                     a new take changes the request or deletes the
                                            record
a retry or clear with a different request   submits the new request; the earlier task is      1 + 1
(templated prompt changed, DAG edited)      cancelled first if a read shows it unfinished,
                                            else logged as possibly still billing
a rerun with ``reuse_from``, the same       the stored result is reused: nothing is sent; the 0
request already stored intact (sha256 and   task id comes from the record, the location from
size as recorded)                           the folder and the recorded name
``reuse_from``: record missing, unreadable, generated anew (as without ``reuse_from``), with  1
malformed, for another request, index and   one warning; never a crash
beside records disagree, object gone, or
its sha256 or size changed
==========================================  ================================================  ======

Cancelling (``DELETE /runwayml/v1/tasks/{id}``, official family only; reverse-format tasks
cannot be cancelled and say so) happens on a user's kill (``cancel_on_kill``; in the triggerer only
when :func:`kill_cancels` says the task instance was stopped, not moved), on the last try's timeout
(:func:`on_wait_timeout`, ``cancel_on_timeout``; Airflow's ``execution_timeout`` included) and when a
changed request replaces an earlier task. A try that Airflow will retry leaves its task running, so
the retry reconnects instead of paying again. Runway's DELETE also deletes a *finished* task with
its output, so every DELETE goes through one rule, :func:`cancel_if_unfinished` (and its async
twin): sent only when a read in the same moment shows the task PENDING, THROTTLED or RUNNING. They
never raise and always say what happened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runway_provider import compat, routes
from runway_provider.exceptions import (
    RunwayAlreadyGeneratedError,
    RunwayBalanceFloorError,
    RunwayConfigurationError,
    RunwayError,
    RunwayInputError,
    RunwayRequestRefusedError,
    RunwayStateNotSavedError,
    RunwaySubmissionUncertainError,
    RunwayTransientError,
)
from runway_provider.models import CancelOutcome, RouteFamily, RunwayTask, RunwayTaskStatus
from runway_provider.protocol import TOP_UP_PAGE
from runway_provider.records import RequestRecord, StoredResult, find_reusable
from runway_provider.refs import (
    XCOM_RUNWAY_REQUEST,
    XCOM_RUNWAY_TASK_ID,
    XCOM_SUBMITTED_AT,
    TaskRef,
    recorded_family,
)
from runway_provider.wait_decision import OutcomeStatus, outcome_of

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from runway_provider.hooks.runway import RunwayHook
    from runway_provider.routes import Route

# task_state_store key of the record above, kept across the tries (and clears) of a task instance.
STATE_KEY = "runway_submission"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
# The generation succeeded: every later try or clear of the same request reconnects to it.
DONE = "done"
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
    :param context: The Airflow context (``ti``, and ``task_state_store`` on Airflow 3.3).
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
        _push(context, reuse, route, payload, fingerprint, reused_conn_id=compat.path_conn_id(reuse_from))
        return reuse
    store = compat.state_store(context)
    saved = store.get(STATE_KEY)
    submission: Submission | None = None
    if isinstance(saved, Mapping):
        submission = _resume(hook, context, saved, route, fingerprint, not_found_grace, log)
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


def mark_done(context: Mapping[str, Any], runway_task_id: str) -> None:
    """Keep the record of a generation that succeeded, marked done, for every later try and clear.

    Removing it would let a try that runs again (the return value's XCom push failed, the worker died
    after ``execute`` returned, a user cleared the task) submit the same request again and pay twice;
    kept, such a try reconnects to this generation. A deliberate new take changes the request (a new
    seed) or deletes the record (``docs/reliability.md``).

    :param context: The Airflow context of the try.
    :param runway_task_id: The task that succeeded; the record is left alone if it names another.
    """
    store = compat.state_store(context)
    saved = store.get(STATE_KEY)
    if not isinstance(saved, Mapping) or saved.get("runway_task_id") != runway_task_id:
        return
    store.set(STATE_KEY, {**saved, "phase": DONE, "succeeded_at": time.time()})


def _create(
    hook: RunwayHook,
    context: Mapping[str, Any],
    store: compat.StateStore,
    route: Route[...],
    payload: Mapping[str, Any],
    fingerprint: str,
    log: Any,
) -> Submission:
    # Everything that can fail without sending happens before the marker: the connection is read, the
    # key checked and the session built. A marker written before a failure that sent nothing would
    # block every later try as an "uncertain create".
    hook.get_conn()
    _check_balance(hook, route, log)
    started_at = time.time()
    record: dict[str, Any] = {
        "phase": SUBMITTING,
        "fingerprint": fingerprint,
        "route": route.path,
        "route_family": route.family.value,
        "started_at": started_at,
    }
    store.set(STATE_KEY, record)
    try:
        runway_task_id = hook.submit(route, payload)
    except _NOT_PROCESSED:
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


def _check_balance(hook: RunwayHook, route: Route[...], log: Any) -> None:
    """The balance floor (extra ``min_remaining_quota``): refuse a create below it, before any marker.

    A balance that cannot be read lets the create go, with a warning: the floor is a guard, and an
    outage of the quota service must not stop production (the service still refuses a spent
    balance itself, :class:`~runway_provider.exceptions.RunwayBalanceExhaustedError`).
    """
    floor = hook.settings.min_remaining_quota
    if floor is None:
        return
    try:
        remaining = hook.get_remaining_quota()
    except RunwayError as err:
        log.warning(
            "Could not read the remaining quota before the create on %s (%s); sending it anyway: the "
            "balance floor is a guard, and an outage of the quota service must not stop production.",
            route.path,
            err,
        )
        return
    if remaining < floor:
        raise RunwayBalanceFloorError(
            f"Not sending the create on {route.path}: the remaining quota, {remaining:g}, is below the "
            f"floor of {floor:g} set by extra `min_remaining_quota` of connection {hook.runway_conn_id!r}. "
            f"Nothing was sent or billed. Top up the balance on {TOP_UP_PAGE} (or lower the floor), "
            "then clear the task.",
            floor=floor,
            remaining=remaining,
        )
    log.info("Remaining quota %g is above the floor of %g; sending the create.", remaining, floor)


def _resume(
    hook: RunwayHook,
    context: Mapping[str, Any],
    saved: Mapping[str, Any],
    route: Route[...],
    fingerprint: str,
    not_found_grace: float,
    log: Any,
) -> Submission | None:
    """The earlier try's task, if it was made for this request and is worth waiting on or done.

    The same fingerprint is the same route: the task is looked up on this route's family.
    """
    if saved.get("fingerprint") != fingerprint:
        _leave_other_request(hook, saved, fingerprint, log)
        return None
    runway_task_id = saved.get("runway_task_id")
    if saved.get("phase") == SUBMITTING or not runway_task_id:
        raise _uncertain_error(
            context,
            route.path,
            fingerprint,
            float(saved.get("started_at") or 0.0),
            "an earlier try sent this request and never recorded an answer",
        )
    submission = Submission(str(runway_task_id), float(saved["submitted_at"]))
    # A task seen succeeded that the service no longer knows is gone, not "not visible yet".
    grace = 0.0 if saved.get("phase") == DONE else not_found_grace
    if _worth_reconnecting(hook, TaskRef(submission.runway_task_id, route.family), submission, grace, log):
        return submission
    if saved.get("phase") == DONE:
        raise RunwayAlreadyGeneratedError(
            f"Runway task {runway_task_id} was generated for this very request (fingerprint "
            f"{fingerprint[:_SHOWN_FINGERPRINT]}) and succeeded on "
            f"{_utc(float(saved.get('succeeded_at') or 0.0))}, but the service no longer gives it. Not "
            "paying for the same request again. For a new take, change the request (a new seed) or "
            f"delete this task's record ({compat.forget_command(context, STATE_KEY)}) and clear the task.",
            runway_task_id=str(runway_task_id),
        )
    return None


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
    # A marker of an earlier provider recorded no family; its route path says it.
    family = recorded_family(saved) or routes.family_of_path(str(saved.get("route") or ""))
    if family is None:
        log.warning("Runway task %s: its record says no route, so it is left as it is.", runway_task_id)
        return
    cancel_if_unfinished(
        hook, TaskRef(str(runway_task_id), family), reason="its request changed before this try", log=log
    )


def _worth_reconnecting(
    hook: RunwayHook, ref: TaskRef, submission: Submission, not_found_grace: float, log: Any
) -> bool:
    """Whether the earlier try's task still runs or succeeded (a failed, cancelled or lost one is not)."""
    runway_task_id = ref.runway_task_id
    try:
        task = hook.get_task(runway_task_id, ref.family)
    except RunwayTransientError as err:
        log.warning(
            "Could not check Runway task %s from an earlier try (%s); reconnecting to it rather than "
            "paying for a new one.",
            runway_task_id,
            err,
        )
        return True
    outcome = outcome_of(task, submitted_at=submission.submitted_at, not_found_grace=not_found_grace)
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


def _uncertain_error(
    context: Mapping[str, Any], route: str, fingerprint: str, started_at: float, detail: str
) -> RunwaySubmissionUncertainError:
    return RunwaySubmissionUncertainError(
        f"The Runway create on {route} (request fingerprint {fingerprint[:_SHOWN_FINGERPRINT]}, sent {_utc(started_at)}) "
        f"may have been processed without its answer reaching Airflow: {detail.rstrip('.')}. A generation may exist "
        "and bill, so this request is not sent again, by this try, by Airflow's retries or by a clear. "
        "Look for it in your CometAPI dashboard: if it exists, collect it with RunwayTaskSensor. To pay "
        f"for a new generation deliberately, delete the marker ({compat.forget_command(context, STATE_KEY)}) and clear the task, or change the request.",
        route=route,
        fingerprint=fingerprint,
    )


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "unknown"


def retry_follows(ti: Any) -> bool:
    """Whether Airflow will run this task instance again if the current try fails."""
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    return isinstance(try_number, int) and isinstance(max_tries, int) and try_number <= max_tries


def on_wait_timeout(
    hook: RunwayHook,
    ref: TaskRef,
    *,
    last_status: str | None,
    cancel_on_timeout: bool,
    will_retry: bool,
    log: Any,
) -> None:
    """Decide what happens to a task whose wait timed out: keep it for the retry, or cancel it.

    :param hook: The hook that sends the cancel.
    :param ref: The task waited on.
    :param last_status: Its last normalized status, None if never seen.
    :param cancel_on_timeout: The operator's or sensor's setting.
    :param will_retry: Whether Airflow will run the task instance again (see :func:`retry_follows`).
    :param log: The operator's logger.
    """
    if last_status is not None and RunwayTaskStatus(last_status).is_terminal:
        return
    runway_task_id = ref.runway_task_id
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
        cancel_if_unfinished(hook, ref, reason="the last try's wait timed out", log=log)


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


# Runway's DELETE cancels a task in one of these states, and deletes a finished one with its output.
CANCELLABLE_STATUSES = frozenset(
    {RunwayTaskStatus.PENDING, RunwayTaskStatus.THROTTLED, RunwayTaskStatus.RUNNING}
)


def cancel_if_unfinished(hook: RunwayHook, ref: TaskRef, *, reason: str, log: Any) -> None:
    """The one rule for every DELETE: send it only when a read of the task in the same moment shows
    it PENDING, THROTTLED or RUNNING. Never raises; always says what happened.

    Runway's ``DELETE /v1/tasks/{id}`` cancels an unfinished task but *deletes a finished one with
    its output*: a task never seen, whose read fails, that is not visible yet, that has ended or
    whose status is unknown is left alone, and the log says what was left, why, and how to cancel
    it by hand. What a DELETE sent here can still destroy: a task that finishes between the read and
    the DELETE (one round trip); what a task left alone can still cost: the rest of its generation.

    :param hook: The hook that reads and cancels.
    :param ref: The task; a reverse-format one is never cancellable, and no request is sent.
    :param reason: Why it is being cancelled, for the log.
    :param log: Where to say what happened.
    """
    runway_task_id, family = ref.runway_task_id, ref.family
    if family is not RouteFamily.OFFICIAL:
        _log_cancel(CancelOutcome.NOT_CANCELLABLE, runway_task_id, reason, log)
        return
    try:
        task: RunwayTask | Exception = hook.get_task(runway_task_id, family)
    except Exception as err:  # a best-effort cancel must not fail the kill or the timeout it serves
        task = err
    if not _may_delete(task, runway_task_id, reason, _cancel_by_hand(hook, runway_task_id), log):
        return
    try:
        outcome: CancelOutcome | Exception = hook.cancel_task(runway_task_id, family)
    except Exception as err:
        outcome = err
    _log_cancel(outcome, runway_task_id, reason, log)


async def acancel_if_unfinished(hook: RunwayHook, ref: TaskRef, *, reason: str, log: Any) -> None:
    """Async :func:`cancel_if_unfinished`, for a trigger's ``on_kill``: the same rule, on the event loop."""
    runway_task_id, family = ref.runway_task_id, ref.family
    if family is not RouteFamily.OFFICIAL:
        _log_cancel(CancelOutcome.NOT_CANCELLABLE, runway_task_id, reason, log)
        return
    try:
        task: RunwayTask | Exception = await hook.aget_task(runway_task_id, family)
    except Exception as err:
        task = err
    if not _may_delete(task, runway_task_id, reason, _cancel_by_hand(hook, runway_task_id), log):
        return
    try:
        outcome: CancelOutcome | Exception = await hook.acancel_task(runway_task_id, family)
    except Exception as err:
        outcome = err
    _log_cancel(outcome, runway_task_id, reason, log)


def _may_delete(
    task: RunwayTask | Exception, runway_task_id: str, reason: str, by_hand: str, log: Any
) -> bool:
    """Whether the read just made lets a DELETE go; says why not when it does not."""
    if isinstance(task, Exception):
        log.warning(
            "Not cancelling Runway task %s (%s): its state could not be read (%s), and a DELETE would "
            "delete it if it has finished. It may still be running and billing. %s",
            runway_task_id,
            reason,
            task,
            by_hand,
        )
        return False
    if task.visible and task.status in CANCELLABLE_STATUSES:
        return True
    if task.visible and task.status is RunwayTaskStatus.SUCCEEDED:
        log.info(
            "Not cancelling Runway task %s (%s): it has already succeeded, and a DELETE would delete "
            "its output.",
            runway_task_id,
            reason,
        )
    elif task.visible and task.is_terminal:
        log.info(
            "Not cancelling Runway task %s (%s): it has already ended (%s).",
            runway_task_id,
            reason,
            task.status.value,
        )
    else:
        shown = (
            "not visible yet (task_not_exist)"
            if not task.visible
            else f"in a status this provider does not know ({task.service_status!r})"
        )
        log.warning(
            "Not cancelling Runway task %s (%s): it is %s, so it may have finished, and a DELETE would "
            "delete its output. It may still be running and billing. %s",
            runway_task_id,
            reason,
            shown,
            by_hand,
        )
    return False


def _cancel_by_hand(hook: RunwayHook, runway_task_id: str) -> str:
    """How a user cancels a task the provider left alone (the key is theirs to add)."""
    try:
        base_url = hook.settings.base_url
    except Exception:
        base_url = "<CometAPI base URL>"
    return (
        "To cancel it by hand, check in your CometAPI dashboard that it is still running, then send "
        f"DELETE {base_url}{routes.task_path(runway_task_id)} with your CometAPI key."
    )


def _log_cancel(outcome: CancelOutcome | Exception, runway_task_id: str, reason: str, log: Any) -> None:
    if isinstance(outcome, Exception):
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
