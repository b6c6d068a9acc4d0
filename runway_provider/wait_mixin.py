"""The Airflow-facing side of a wait, mixed into the submit operators and the sensor.

Check the task once; if it has ended, finish on the worker; otherwise defer to
:class:`~runway_provider.triggers.runway.RunwayTaskTrigger`, which frees the worker slot. Also the
worker's ``on_kill`` and what a timed-out wait does with its generation (decided in
:mod:`runway_provider.spend`). When a wait is over is decided, without I/O, in
:mod:`runway_provider.wait_decision`.

DAG files import this module (it is a base of the operators and the sensor): what only execution
needs is imported where it is used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from runway_provider.refs import XCOM_DEFERRED_TRY, XCOM_RUNWAY_TASK, TaskRef

if TYPE_CHECKING:
    from runway_provider.hooks.runway import RunwayHook
    from runway_provider.models import RunwayTask
    from runway_provider.pacing import PollSchedule
    from runway_provider.wait_decision import TaskWatch

# The trigger enforces the deadline itself; Airflow's defer timeout is only the backstop for a
# triggerer that never comes back, so it fires a little after the trigger's own timeout event.
_DEFER_TIMEOUT_MARGIN = 120.0


class RunwayWaitMixin:
    """Mixin for operators that wait on a Runway task (mixed in before ``BaseOperator``).

    ``pushes_runway_request`` declares that the operator pushes XCom ``runway_request`` (the
    request behind its task): how a sensor or a transfer downstream knows it
    (:meth:`runway_provider.refs.Upstream.above`).
    """

    pushes_runway_request = True
    runway_conn_id: str
    poll_schedule: PollSchedule
    not_found_grace: float
    cancel_on_kill: bool
    cancel_on_timeout: bool
    log: Any
    # The task a blocking wait on the worker is polling: on_kill needs it.
    _waiting_on: TaskRef | None = None

    @cached_property
    def hook(self) -> RunwayHook:
        from runway_provider.hooks.runway import RunwayHook

        # Few retries inside one poll: the wait polls again anyway, at its own pace.
        return RunwayHook(self.runway_conn_id, poll_retries=2)

    def watch(self, ref: TaskRef, *, submitted_at: float, end_time: float) -> TaskWatch:
        """The wait on ``ref``, paced by this operator's schedule."""
        from runway_provider.wait_decision import TaskWatch

        return TaskWatch.of(
            self.poll_schedule,
            runway_task_id=ref.runway_task_id,
            submitted_at=submitted_at,
            end_time=end_time,
            not_found_grace=self.not_found_grace,
            log=self.log,
        )

    def wait_on_worker(
        self, context: Any, ref: TaskRef, *, submitted_at: float, end_time: float
    ) -> RunwayTask:
        """Poll until the task succeeds, holding the worker; raise the typed error of any other end."""
        from runway_provider.wait_decision import wait

        with self.blocking_wait(context, ref):
            return wait(
                self.watch(ref, submitted_at=submitted_at, end_time=end_time),
                lambda: self.hook.get_task(ref.runway_task_id, ref.family, deadline=end_time),
            )

    def defer_unless_finished(
        self, context: Any, ref: TaskRef, *, submitted_at: float, end_time: float
    ) -> RunwayTask:
        """Return the succeeded task or raise its error if it has ended; otherwise defer.

        :param context: The Airflow context (the task's state so far is pushed to XCom before deferring).
        :param ref: The task to wait on.
        :param submitted_at: When it was submitted (or first watched), epoch seconds.
        :param end_time: The wall-clock deadline, epoch seconds.
        """
        from runway_provider.models import RunwayTask, RunwayTaskStatus
        from runway_provider.triggers.runway import RunwayTaskTrigger

        watch = self.watch(ref, submitted_at=submitted_at, end_time=end_time)
        outcome = watch.step(lambda: self.hook.get_task(ref.runway_task_id, ref.family, deadline=end_time))
        if outcome:
            return outcome.result()
        # Airflow resolves the "Runway video" link when the task defers, too: give it the state so far.
        self.push_state(
            context,
            watch.last_task
            or RunwayTask(ref.runway_task_id, RunwayTaskStatus.UNKNOWN, route_family=ref.family),
        )
        ti = context["ti"]
        ti.xcom_push(key=XCOM_DEFERRED_TRY, value=ti.try_number)
        self.log.info("Runway task %s is not finished; deferring to the triggerer.", ref.runway_task_id)
        self.defer(  # type: ignore[attr-defined]
            trigger=RunwayTaskTrigger(
                runway_task_id=ref.runway_task_id,
                runway_conn_id=self.runway_conn_id,
                route_family=ref.family.value,
                # The schedule travels as JSON: a fixed interval, or the adaptive schedule's parameters.
                poll_interval=self.poll_schedule.fixed_interval,
                poll_schedule=None if self.poll_schedule.fixed_interval else self.poll_schedule.to_dict(),
                end_time=end_time,
                not_found_grace=self.not_found_grace,
                submitted_at=submitted_at,
                cancel_on_kill=self.cancel_on_kill,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(end_time - time.time(), 0.0) + _DEFER_TIMEOUT_MARGIN),
        )
        raise AssertionError("unreachable: defer() raises TaskDeferred")

    @staticmethod
    def push_state(context: Any, task: RunwayTask) -> None:
        """Push the task's latest known state (the finished task at the end) to XCom ``runway_task``."""
        context["ti"].xcom_push(key=XCOM_RUNWAY_TASK, value=task.to_dict())

    def deferred_end_time(self, end_time: float, *, execute_started: float) -> float:
        """The deadline of a deferred wait: the wait's own, and no later than ``execution_timeout``.

        Airflow 3 does not apply ``execution_timeout`` to a deferral, and its trigger timeout fails the
        task without calling ``execute_complete``: carried in the trigger's own deadline, the timeout
        comes back as an event, so the last try cancels its generation like any timed-out wait.

        :param end_time: The wait's own deadline, epoch seconds.
        :param execute_started: When this try's ``execute`` began, epoch seconds.
        """
        limit = getattr(self, "execution_timeout", None)
        return end_time if limit is None else min(end_time, execute_started + limit.total_seconds())

    @contextmanager
    def blocking_wait(self, context: Any, ref: TaskRef) -> Iterator[None]:
        """Around a wait that holds the worker: on_kill knows the task, and ``execution_timeout`` settles it.

        Airflow raises ``AirflowTaskTimeout`` inside the wait and calls ``on_kill`` only once this
        frame has left, so the timeout is settled here, as every timed-out wait is: cancelled on
        the last try (if still unfinished), left running for a retry to reconnect to.
        """
        from runway_provider import spend
        from runway_provider.compat import AirflowTaskTimeout

        self._waiting_on = ref
        try:
            yield
        except AirflowTaskTimeout:
            self.settle_timeout(ref, last_status=None, will_retry=spend.retry_follows(context["ti"]))
            raise
        finally:
            self._waiting_on = None

    def settle_timeout(self, ref: TaskRef, *, last_status: str | None, will_retry: bool) -> None:
        """Keep a timed-out task for the retry, or cancel it (see :func:`runway_provider.spend.on_wait_timeout`).

        :param ref: The task waited on.
        :param last_status: Its last known normalized status, None if never seen.
        :param will_retry: Whether Airflow will run this task instance again.
        """
        from runway_provider import spend

        spend.on_wait_timeout(
            self.hook,
            ref,
            last_status=last_status,
            cancel_on_timeout=self.cancel_on_timeout,
            will_retry=will_retry,
            log=self.log,
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """Resume after a deferral; settle the generation when Airflow's own trigger timeout fired.

        That backstop (the triggerer never answered by the deferral's timeout) fails the task without
        ``execute_complete``: the generation last seen (XCom ``runway_task``) is settled as any
        timed-out wait's.

        A resume that an earlier try's deferral left behind starts this try afresh with ``execute``
        (:meth:`_resumed_for_an_earlier_try`).
        """
        from runway_provider.compat import TaskDeferralTimeout

        if self._resumed_for_an_earlier_try(context):
            return self.execute(context)  # type: ignore[attr-defined]
        try:
            return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]
        except TaskDeferralTimeout:
            from runway_provider import spend
            from runway_provider.models import RunwayTask

            ti = context["ti"]
            try:
                last = RunwayTask.from_dict(ti.xcom_pull(task_ids=ti.task_id, key=XCOM_RUNWAY_TASK))
            except (KeyError, TypeError, ValueError):
                self.log.warning("The Runway task of this deferral is unknown: nothing to settle.")
                raise
            self.settle_timeout(
                TaskRef(last.runway_task_id, last.route_family),
                last_status=None if last.status.value == "UNKNOWN" else last.status.value,
                will_retry=spend.retry_follows(ti),
            )
            raise

    def _resumed_for_an_earlier_try(self, context: Any) -> bool:
        """Whether Airflow resumes this try with the deferral, and the event, of an earlier try.

        Airflow 3.0 keeps a task instance's ``next_method`` and ``next_kwargs`` when a resumed try
        fails (its Execution API sets the state alone; 3.1 clears both, apache/airflow#56731), so
        the retry skips ``execute`` and gets the earlier try's event again: a timeout it never waited
        for. The try that deferred is in XCom (kept too: Airflow clears a try's XCom only when it
        does not resume); a resume for another try is not this try's.
        """
        ti = context["ti"]
        deferred_try = ti.xcom_pull(task_ids=ti.task_id, key=XCOM_DEFERRED_TRY, map_indexes=ti.map_index)
        if not isinstance(deferred_try, int) or deferred_try == ti.try_number:
            return False
        self.log.info(
            "Try %s was handed the resume of try %s's deferral (Airflow 3.0 keeps it across retries): "
            "starting this try afresh instead.",
            ti.try_number,
            deferred_try,
        )
        return True

    def on_kill(self) -> None:
        """A user stopped this try while its blocking wait polled (marked it failed or cleared it):
        cancel the generation if asked to, by the one rule (:func:`runway_provider.spend.cancel_if_unfinished`).

        A deferred wait's kill is the trigger's (``RunwayTaskTrigger.on_kill``); a timeout is settled
        by the wait itself (:meth:`blocking_wait`).
        """
        ref = self._waiting_on
        if ref is None or not self.cancel_on_kill:
            return
        from runway_provider import spend

        spend.cancel_if_unfinished(
            self.hook, ref, reason="Airflow stopped the task while it waited", log=self.log
        )
