"""Sensor that waits for a Runway task: in the triggerer when deferrable, else poke or reschedule.

DAG files import this module when they are parsed: the hook, spend and the wait decision are
imported where the sensor runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from runway_provider import compat, refs
from runway_provider.compat import conf
from runway_provider.defaults import (
    DEFAULT_CONN_ID,
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_WAIT_TIMEOUT,
)
from runway_provider.links.runway import RunwayVideoLink
from runway_provider.models import OutputKind
from runway_provider.pacing import PollSchedule
from runway_provider.refs import XCOM_RUNWAY_REQUEST, XCOM_RUNWAY_TASK, TaskRef, Upstream
from runway_provider.wait_mixin import RunwayWaitMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from runway_provider.models import RouteFamily
    from runway_provider.wait_decision import TaskWatch


class RunwayTaskSensor(RunwayWaitMixin, BaseSensorOperator):
    """Wait until a Runway task has a video; return the normalized task dict (with ``video_url``).

    FAILED, CANCELLED, a lost task (``task_not_exist`` past ``not_found_grace``) and the timeout
    raise with the task id, its status and the failure text; with ``soft_fail`` they skip instead.

    :param runway_task_id: The Runway task to wait on, e.g. ``generate.output``. Templated.
    :param runway_conn_id: The ``runway`` connection. Default ``runway_default``.
    :param route_family: ``reverse`` (tasks created on ``/runway/pro/*``, polled through the feed)
        or ``official`` (tasks created on ``/runwayml/v1/*``). Default: the family of the Runway
        operator whose output ``runway_task_id`` is (``animate.output``), else the family that the
        one Runway operator upstream recorded with its request (a templated id), else ``reverse``.
    :param poll_interval: Seconds between polls (±10%), a fixed schedule. Default None: the
        adaptive schedule (see the operators), in every mode: deferred, poke and reschedule.
        ``poll_interval=10`` is the fixed schedule that was the default before.
    :param output_kind: ``video`` or ``image``: what the task makes, which paces the adaptive
        schedule (an image is polled every few seconds from the start). Default: the output of the
        Runway operator whose output ``runway_task_id`` is, else of the route that the one Runway
        operator upstream recorded with its request, else ``video``.
    :param min_poll_interval: Adaptive schedule: the shortest delay between polls. Default 4.
    :param max_poll_interval: Adaptive schedule: the longest delay between polls. Default 60.
    :param timeout: Seconds to wait at most from the first check. Default 3600.
    :param not_found_grace: Seconds from the first check during which ``task_not_exist`` is normal.
    :param deferrable: Wait in the triggerer, freeing the worker slot. Default
        ``[operators] default_deferrable``.
    :param cancel_on_kill: Cancel the generation when a user stops the sensor while it waits
        (marks it failed or clears it), on the worker or in the triggerer. Default True.
    :param cancel_on_timeout: Cancel the generation when the sensor times out (a sensor timeout is
        never retried). Default True. Only official-format tasks can be cancelled.
    """

    template_fields: Sequence[str] = ("runway_task_id",)
    # The latest known state of the task, for the "Runway video" link (the finished one is also the return value).
    runway_task_xcom_keys = (XCOM_RUNWAY_TASK,)
    operator_extra_links = (RunwayVideoLink(),)
    ui_color = "#e8e1fb"

    def __init__(
        self,
        *,
        runway_task_id: str,
        runway_conn_id: str = DEFAULT_CONN_ID,
        route_family: RouteFamily | str | None = None,
        poll_interval: float | None = None,
        min_poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        output_kind: OutputKind | str | None = None,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        **kwargs: Any,
    ) -> None:
        self._poll_options = {
            "poll_interval": poll_interval,
            "min_poll_interval": min_poll_interval,
            "max_poll_interval": max_poll_interval,
        }
        # The Runway operator whose output the id is, known now (``animate.output``).
        self._upstream = Upstream.of(runway_task_id)
        # Given, or read now from that operator; else read when the sensor runs, from the request
        # an operator upstream recorded.
        # (A value that is no output kind is refused by the schedule, naming ``output_kind``.)
        self._known_output = (
            output_kind
            if output_kind is not None
            else (self._upstream.output if self._upstream is not None else None)
        )
        schedule = PollSchedule.from_options(
            **self._poll_options, output=self._known_output or OutputKind.VIDEO
        )
        kwargs.setdefault("poke_interval", schedule.fixed_interval or schedule.fallback)
        super().__init__(timeout=timeout, **kwargs)
        self.runway_task_id = runway_task_id
        self.runway_conn_id = runway_conn_id
        # The argument as given (checked now); where the task lives is resolved when the sensor runs.
        self.route_family = refs.checked_family(route_family) if route_family is not None else None
        self.poll_schedule = schedule
        self.poll_interval = schedule.fixed_interval
        self.not_found_grace = not_found_grace
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self._watch: TaskWatch | None = None
        self._ref: TaskRef | None = None

    def execute(self, context: Context) -> Any:
        from runway_provider.compat import AirflowSensorTimeout, AirflowSkipException
        from runway_provider.exceptions import RunwayTaskError, RunwayTaskTimeoutError

        execute_started = time.time()
        if self.reschedule and not self.deferrable:
            context = compat.with_first_reschedule_date(context)  # type: ignore[assignment]
        ref, request = self._resolve(context)
        if request is not None:
            # The request behind the task travels on to the transfer, which records it beside the file.
            context["ti"].xcom_push(key=XCOM_RUNWAY_REQUEST, value=request)
        started_at = self._first_check_time(context)
        if self.deferrable:
            try:
                task = self.defer_unless_finished(
                    context,
                    ref,
                    submitted_at=started_at,
                    end_time=self.deferred_end_time(
                        started_at + self.timeout, execute_started=execute_started
                    ),
                )
            except RunwayTaskTimeoutError as err:
                self.settle_timeout(ref, last_status=err.status, will_retry=False)
                raise AirflowSensorTimeout(str(err)) from err
            self.push_state(context, task)
            return task.to_dict()
        self._ref = ref
        self._watch = self.watch(ref, submitted_at=started_at, end_time=started_at + self.timeout)
        try:
            with self.blocking_wait(context, ref):
                return super().execute(context)
        except AirflowSensorTimeout as err:
            last = self._watch.last_task
            status = last.status.value if last else None
            # Airflow never retries a sensor timeout: this was the last try.
            self.settle_timeout(ref, last_status=status, will_retry=False)
            raise AirflowSensorTimeout(
                f"{err} Runway task {ref.runway_task_id}, last status: {status or 'never seen'}."
            ) from err
        except RunwayTaskError as err:
            if self.soft_fail:
                raise AirflowSkipException(f"Skipping because soft_fail is set: {err}") from err
            raise

    def _resolve(self, context: Context) -> tuple[TaskRef, Any]:
        """Where the task lives (:func:`runway_provider.refs.resolve`), and the request behind it
        (XCom ``runway_request`` of the Runway operator upstream; None without one)."""
        upstream = self._upstream or Upstream.above(self)
        request = upstream.pull_request(context) if upstream is not None else None
        ref = refs.resolve(
            str(self.runway_task_id), explicit=self.route_family, upstream=upstream, request=request
        )
        route = request.get("route") if isinstance(request, Mapping) else None
        if self._known_output is None and isinstance(route, str):
            # Paced for what the task makes: an image is polled every few seconds from the start.
            from runway_provider.routes import output_of

            self.poll_schedule = PollSchedule.from_options(**self._poll_options, output=output_of(route))
        return ref, request

    def poke(self, context: Context) -> bool | PokeReturnValue:
        from runway_provider.wait_decision import OutcomeStatus

        watch, ref = self._watch, self._ref
        if watch is None or ref is None:
            raise RuntimeError("RunwayTaskSensor.poke runs only from execute()")
        outcome = watch.step(
            lambda: self.hook.get_task(ref.runway_task_id, ref.family, deadline=watch.end_time)
        )
        # Past the deadline the sensor's own timeout applies (with soft_fail): Airflow raises it.
        if outcome is None or outcome.status is OutcomeStatus.TIMEOUT:
            # A reschedule ends this try, and Airflow resolves the link then.
            if watch.last_task is not None:
                self.push_state(context, watch.last_task)
            return False
        task = outcome.result()
        self.push_state(context, task)
        return PokeReturnValue(is_done=True, xcom_value=task.to_dict())

    def _get_next_poke_interval(self, started_at: Any, run_duration: Any, poke_count: int) -> float:
        # Poke and reschedule modes take the wait's own schedule, as the blocking wait and the
        # trigger do (BaseSensorOperator asks this between pokes); exponential_backoff keeps Airflow's.
        if self._watch is None or self.exponential_backoff:
            return float(super()._get_next_poke_interval(started_at, run_duration, poke_count))
        return self._watch.next_delay()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: return the task dict on an explicit success event only."""
        from runway_provider.compat import AirflowSensorTimeout
        from runway_provider.exceptions import RunwayTaskTimeoutError
        from runway_provider.wait_decision import resolve_event

        try:
            task = resolve_event(event)
        except RunwayTaskTimeoutError as err:
            # A resumed sensor is a new instance: where the task lives is resolved again.
            ref, _ = self._resolve(context)
            # Raised as a sensor timeout, which Airflow never retries: this was the last try.
            self.settle_timeout(ref, last_status=err.status, will_retry=False)
            raise AirflowSensorTimeout(str(err)) from err
        self.push_state(context, task)
        return task.to_dict()

    def _first_check_time(self, context: Context) -> float:
        if self.reschedule and not self.deferrable:
            first = context["ti"].get_first_reschedule_date(context)
            if first is not None:
                return first.timestamp()
        return time.time()
