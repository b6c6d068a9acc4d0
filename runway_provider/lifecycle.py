"""The wait half of submit-then-wait, shared by the generate operator and the sensor.

Check the task once; if it has ended, finish on the worker; otherwise defer to
:class:`~runway_provider.triggers.runway.RunwayTaskTrigger`, which frees the worker slot.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import Any

from runway_provider.exceptions import RunwayError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RunwayTask
from runway_provider.watch import TaskWatch, resolve_event

DEFAULT_POLL_INTERVAL = 10.0
DEFAULT_TIMEOUT = 3600.0
DEFAULT_NOT_FOUND_GRACE = 180.0
# The trigger enforces the deadline itself; Airflow's defer timeout is only the backstop for a
# triggerer that never comes back, so it fires a little after the trigger's own timeout event.
_DEFER_TIMEOUT_MARGIN = 120.0


class RunwayTaskWaiter:
    """Mixin for operators that wait on a Runway task (mixed in before ``BaseOperator``)."""

    runway_conn_id: str
    route_family: str
    poll_interval: float
    not_found_grace: float
    log: Any

    @cached_property
    def hook(self) -> RunwayHook:
        # Few retries inside one poll: the wait polls again anyway, at its own pace.
        return RunwayHook(self.runway_conn_id, poll_retries=2)

    def watch(self, *, runway_task_id: str, submitted_at: float, end_time: float) -> TaskWatch:
        return TaskWatch(
            runway_task_id=runway_task_id,
            end_time=end_time,
            poll_interval=self.poll_interval,
            not_found_grace=self.not_found_grace,
            submitted_at=submitted_at,
            log=self.log,
        )

    def defer_unless_finished(
        self, *, runway_task_id: str, submitted_at: float, end_time: float
    ) -> RunwayTask:
        """Return the succeeded task or raise its error if it has ended; otherwise defer.

        :param runway_task_id: The task to wait on.
        :param submitted_at: When it was submitted (or first watched), epoch seconds.
        :param end_time: The wall-clock deadline, epoch seconds.
        """
        watch = self.watch(runway_task_id=runway_task_id, submitted_at=submitted_at, end_time=end_time)
        try:
            event = watch.observe(self.hook.get_task(runway_task_id, self.route_family))
        except RunwayError as err:
            event = watch.observe_error(err)
        event = event or watch.check_deadline()
        if event:
            return resolve_event(event)

        from runway_provider.triggers.runway import RunwayTaskTrigger

        self.log.info("Runway task %s is not finished; deferring to the triggerer.", runway_task_id)
        self.defer(  # type: ignore[attr-defined]
            trigger=RunwayTaskTrigger(
                runway_task_id=runway_task_id,
                runway_conn_id=self.runway_conn_id,
                route_family=self.route_family,
                poll_interval=self.poll_interval,
                end_time=end_time,
                not_found_grace=self.not_found_grace,
                submitted_at=submitted_at,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(end_time - time.time(), 0.0) + _DEFER_TIMEOUT_MARGIN),
        )
        raise AssertionError("unreachable: defer() raises TaskDeferred")
