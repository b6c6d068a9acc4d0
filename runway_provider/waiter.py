"""The worker's side of a wait, mixed into the submit operators and the sensor.

Check the task once; if it has ended, finish on the worker; otherwise defer to
:class:`~runway_provider.triggers.runway.RunwayTaskTrigger`, which frees the worker slot. Also the
worker's ``on_kill`` and what a timed-out wait does with its generation (decided in
:mod:`runway_provider.spend`), and the defaults every wait shares.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowTaskTimeout, TaskDeferralTimeout

from runway_provider import spend
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily, RunwayTask, RunwayTaskStatus
from runway_provider.pacing import PollSchedule
from runway_provider.routes import ROUTES, OutputKind
from runway_provider.waiting import TaskWatch

# XCom key of the latest known state of the task waited on, then of the finished task.
XCOM_RUNWAY_TASK = "runway_task"
DEFAULT_TIMEOUT = 3600.0
DEFAULT_NOT_FOUND_GRACE = 180.0
# The trigger enforces the deadline itself; Airflow's defer timeout is only the backstop for a
# triggerer that never comes back, so it fires a little after the trigger's own timeout event.
_DEFER_TIMEOUT_MARGIN = 120.0


def upstream_route_family(value: Any) -> RouteFamily | None:
    """The route family of the Runway operator whose output ``value`` is, read when the DAG is parsed.

    ``RunwayTaskSensor(runway_task_id=animate.output)`` then needs no ``route_family``: the
    XComArg knows its operator, and the operator class knows its route (mapped ones too).
    """
    family = getattr(_upstream_route(value), "family", None)
    return family if isinstance(family, RouteFamily) else None


def upstream_route_output(value: Any) -> OutputKind | None:
    """Whether the Runway operator whose output ``value`` is makes an image or a video, read at
    parse as :func:`upstream_route_family` is: the wait's schedule is paced for it."""
    output = getattr(_upstream_route(value), "output", None)
    return output if isinstance(output, OutputKind) else None


def _upstream_route(value: Any) -> Any:
    operator = getattr(value, "operator", None)
    return getattr(operator, "route", None) or getattr(
        getattr(operator, "operator_class", None), "route", None
    )


def upstream_source(value: Any) -> tuple[str, bool] | None:
    """``(task_id, is_mapped)`` of the operator whose output ``value`` is (an XComArg), read at parse.

    The transfer and the sensor read the request behind a task (XCom ``runway_request``) from it.
    """
    operator = getattr(value, "operator", None)
    task_id = getattr(operator, "task_id", None)
    if not isinstance(task_id, str):
        return None
    return task_id, hasattr(operator, "operator_class")


def runway_upstream(task: Any) -> tuple[str, bool] | None:
    """``(task_id, is_mapped)`` of the one Runway operator or sensor upstream of ``task``.

    A mapped task is built with its arguments already resolved, so the XComArg is gone by then;
    its upstream tasks still say where its Runway task came from.
    """
    if not task.has_dag():
        return None  # an operator run on its own has no upstream
    found = []
    for upstream in task.upstream_list:
        operator_class = getattr(upstream, "operator_class", None)
        cls = operator_class if isinstance(operator_class, type) else type(upstream)
        if issubclass(cls, RunwayTaskWaiter):
            found.append((upstream.task_id, operator_class is not None))
    return found[0] if len(found) == 1 else None


def request_route_family(request: Any) -> RouteFamily | None:
    """The route family recorded in a ``runway_request`` XCom; None when absent or not a family.

    What tells a sensor or a transfer given a templated id (``"{{ ti.xcom_pull('animate') }}"``)
    where the task lives: such a string names no operator when the DAG is parsed.
    """
    family = request.get("route_family") if isinstance(request, Mapping) else None
    try:
        return RouteFamily(family) if isinstance(family, str) else None
    except ValueError:
        return None


def request_route_output(request: Any) -> OutputKind | None:
    """Whether the route recorded in a ``runway_request`` XCom (its path) makes an image or a
    video; None when absent or not a known route."""
    path = request.get("route") if isinstance(request, Mapping) else None
    return next((route.output for route in ROUTES if route.path == path), None)


def pull_request(context: Any, source: tuple[str, bool] | None) -> Any:
    """The ``runway_request`` XCom of ``source`` for this map index, or None without a known source."""
    if source is None:
        return None
    task_id, is_mapped = source
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return ti.xcom_pull(
        task_ids=task_id,
        key=spend.XCOM_RUNWAY_REQUEST,
        map_indexes=map_index if is_mapped and map_index is not None and map_index >= 0 else None,
    )


class RunwayTaskWaiter:
    """Mixin for operators that wait on a Runway task (mixed in before ``BaseOperator``)."""

    runway_conn_id: str
    route_family: RouteFamily
    poll_schedule: PollSchedule
    not_found_grace: float
    cancel_on_kill: bool
    cancel_on_timeout: bool
    log: Any
    # The task a blocking wait on the worker is polling: on_kill needs it.
    _waiting_on: str | None = None

    @cached_property
    def hook(self) -> RunwayHook:
        # Few retries inside one poll: the wait polls again anyway, at its own pace.
        return RunwayHook(self.runway_conn_id, poll_retries=2)

    def watch(self, *, runway_task_id: str, submitted_at: float, end_time: float) -> TaskWatch:
        schedule = self.poll_schedule
        return TaskWatch(
            runway_task_id=runway_task_id,
            end_time=end_time,
            poll_interval=schedule.fixed_interval or schedule.fallback,
            not_found_grace=self.not_found_grace,
            submitted_at=submitted_at,
            log=self.log,
            pacer=schedule.pacer(submitted_at=submitted_at),
        )

    def defer_unless_finished(
        self, context: Any, *, runway_task_id: str, submitted_at: float, end_time: float
    ) -> RunwayTask:
        """Return the succeeded task or raise its error if it has ended; otherwise defer.

        :param context: The Airflow context (the task's state so far is pushed to XCom before deferring).
        :param runway_task_id: The task to wait on.
        :param submitted_at: When it was submitted (or first watched), epoch seconds.
        :param end_time: The wall-clock deadline, epoch seconds.
        """
        watch = self.watch(runway_task_id=runway_task_id, submitted_at=submitted_at, end_time=end_time)
        outcome = watch.step(lambda: self.hook.get_task(runway_task_id, self.route_family))
        if outcome:
            return outcome.result()

        from runway_provider.triggers.runway import RunwayTaskTrigger

        # Airflow resolves the "Runway video" link when the task defers, too: give it the state so far.
        self.push_state(
            context,
            watch.last_task
            or RunwayTask(runway_task_id, RunwayTaskStatus.UNKNOWN, route_family=self.route_family),
        )
        self.log.info("Runway task %s is not finished; deferring to the triggerer.", runway_task_id)
        self.defer(  # type: ignore[attr-defined]
            trigger=RunwayTaskTrigger(
                runway_task_id=runway_task_id,
                runway_conn_id=self.runway_conn_id,
                route_family=self.route_family.value,
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
    def blocking_wait(self, context: Any, runway_task_id: str) -> Iterator[None]:
        """Around a wait that holds the worker: on_kill knows the task, and ``execution_timeout`` settles it.

        Airflow raises ``AirflowTaskTimeout`` inside the wait and calls ``on_kill`` only once this
        frame has left, so the timeout is settled here, as every timed-out wait is: cancelled on
        the last try (if still unfinished), left running for a retry to reconnect to.
        """
        self._waiting_on = runway_task_id
        try:
            yield
        except AirflowTaskTimeout:
            self.settle_timeout(
                runway_task_id, last_status=None, will_retry=spend.retry_follows(context["ti"])
            )
            raise
        finally:
            self._waiting_on = None

    def settle_timeout(self, runway_task_id: str, *, last_status: str | None, will_retry: bool) -> None:
        """Keep a timed-out task for the retry, or cancel it (see :func:`runway_provider.spend.on_wait_timeout`).

        :param runway_task_id: The task waited on.
        :param last_status: Its last known normalized status, None if never seen.
        :param will_retry: Whether Airflow will run this task instance again.
        """
        spend.on_wait_timeout(
            self.hook,
            runway_task_id=runway_task_id,
            last_status=last_status,
            route_family=self.route_family,
            cancel_on_timeout=self.cancel_on_timeout,
            will_retry=will_retry,
            log=self.log,
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """Resume after a deferral; settle the generation when Airflow's own trigger timeout fired.

        That backstop (the triggerer never answered by the deferral's timeout) fails the task without
        ``execute_complete``: the generation last seen (XCom ``runway_task``) is settled as any
        timed-out wait's.
        """
        try:
            return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]
        except TaskDeferralTimeout:
            ti = context["ti"]
            last = ti.xcom_pull(task_ids=ti.task_id, key=XCOM_RUNWAY_TASK)
            if isinstance(last, Mapping) and last.get("runway_task_id"):
                self.settle_timeout(
                    str(last["runway_task_id"]),
                    last_status=last.get("status") if last.get("status") != "UNKNOWN" else None,
                    will_retry=spend.retry_follows(ti),
                )
            raise

    def on_kill(self) -> None:
        """A user stopped this try while its blocking wait polled (marked it failed or cleared it):
        cancel the generation if asked to, by the one rule (:func:`runway_provider.spend.cancel_if_unfinished`).

        A deferred wait's kill is the trigger's (``RunwayTaskTrigger.on_kill``); a timeout is settled
        by the wait itself (:meth:`blocking_wait`).
        """
        runway_task_id = self._waiting_on
        if runway_task_id is None or not self.cancel_on_kill:
            return
        spend.cancel_if_unfinished(
            self.hook,
            runway_task_id,
            self.route_family,
            reason="Airflow stopped the task while it waited",
            log=self.log,
        )
