"""Trigger that waits for a Runway task in the triggerer's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from runway_provider import compat, spend
from runway_provider.exceptions import RunwayError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily, RunwayTask
from runway_provider.pacing import PollSchedule
from runway_provider.refs import TaskRef
from runway_provider.wait_decision import TaskWatch, error_outcome

# on_kill's own bound (Airflow's [triggerer] on_kill_timeout is 30 s by default).
_ON_KILL_SECONDS = 25.0
# Cancels in flight, referenced so that the event loop does not drop them when on_kill returns.
_ON_KILL_TASKS: set[asyncio.Future[None]] = set()


class RunwayTaskTrigger(BaseTrigger):
    """Poll a Runway task until it ends or the deadline passes, then yield exactly one event.

    The event is ``{"status": "success"|"failed"|"timeout"|"error", "runway_task_id", "task",
    "message"}``. Transient failures (network, 429, 5xx) never end the wait: the trigger polls on
    until the deadline, which it enforces itself, so a triggerer restart keeps the same deadline.

    :param runway_task_id: The Runway task to wait on.
    :param runway_conn_id: The ``runway`` connection.
    :param poll_interval: Seconds between polls (±10%): a fixed schedule, as every trigger
        serialized before adaptive pacing has. None (the default) for the adaptive schedule
        (``poll_schedule``, or its defaults).
    :param poll_schedule: The adaptive schedule's parameters (:class:`PollSchedule` as JSON, e.g.
        ``{"min_interval": 4, "max_interval": 60}``; an image's task carries its faster paces,
        :data:`~runway_provider.pacing.IMAGE_PACES`); ignored when ``poll_interval`` is set.
    :param route_family: ``reverse`` (polled through the feed) or ``official`` (by id).
    :param end_time: Wall-clock deadline, epoch seconds.
    :param not_found_grace: Seconds after ``submitted_at`` during which ``task_not_exist`` is normal.
    :param submitted_at: When the task was submitted (or first watched), epoch seconds.
    :param cancel_on_kill: Cancel the generation when a user stops the deferred task (marks it
        failed or clears it); never on a triggerer restart or a move to another triggerer.
    """

    def __init__(
        self,
        *,
        runway_task_id: str,
        runway_conn_id: str,
        poll_interval: float | None = None,
        end_time: float,
        not_found_grace: float,
        submitted_at: float,
        route_family: str,
        cancel_on_kill: bool = False,
        poll_schedule: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped
        self.runway_task_id = runway_task_id
        self.runway_conn_id = runway_conn_id
        # Kwargs are JSON: the family travels as its name and is read once, here.
        self.route_family = RouteFamily(route_family)
        self.poll_interval = None if poll_interval is None else float(poll_interval)
        self.poll_schedule = None if poll_schedule is None else dict(poll_schedule)
        # Checked here, in the worker that defers, rather than first in the triggerer.
        self.schedule = _schedule(self.poll_interval, self.poll_schedule)
        self.end_time = float(end_time)
        self.not_found_grace = float(not_found_grace)
        self.submitted_at = float(submitted_at)
        self.cancel_on_kill = bool(cancel_on_kill)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "runway_task_id": self.runway_task_id,
                "runway_conn_id": self.runway_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "not_found_grace": self.not_found_grace,
                "submitted_at": self.submitted_at,
                "route_family": self.route_family.value,
                "cancel_on_kill": self.cancel_on_kill,
                # Only when set: a fixed-interval trigger serializes exactly as before pacing.
                **({"poll_schedule": self.poll_schedule} if self.poll_schedule is not None else {}),
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = TaskWatch.of(
            self.schedule,
            runway_task_id=self.runway_task_id,
            submitted_at=self.submitted_at,
            end_time=self.end_time,
            not_found_grace=self.not_found_grace,
            log=self.log,
        )
        if self.cancel_on_kill and not compat.triggerer_calls_on_kill():
            self.log.info(
                "This Airflow's triggerer never calls a trigger's on_kill (Airflow 3.3 does): stopping this "
                "deferred task will not cancel Runway task %s. Cancel it in your CometAPI dashboard, or let "
                "the task's timeout settle it (docs/reliability.md).",
                self.runway_task_id,
            )
        # Few retries inside one poll: the trigger polls again anyway, at its own pace.
        hook = RunwayHook(self.runway_conn_id, poll_retries=2)
        try:
            async with hook.async_client():
                await asyncio.sleep(watch.first_delay())

                def poll() -> Awaitable[RunwayTask]:
                    # One poll (with its own retries) never outlives the wait's deadline.
                    return hook.aget_task(self.runway_task_id, self.route_family, deadline=watch.end_time)

                while (outcome := await watch.astep(poll)) is None:
                    await asyncio.sleep(watch.next_delay())
        except RunwayError as err:
            # Raised outside a poll: the connection is missing or unusable.
            outcome = error_outcome(self.runway_task_id, str(err))
        except Exception as err:
            self.log.exception("Waiting on Runway task %s failed unexpectedly", self.runway_task_id)
            outcome = error_outcome(self.runway_task_id, f"{type(err).__name__}: {err}")
        self.log.info("Runway task %s: %s", self.runway_task_id, outcome.message)
        yield TriggerEvent(outcome.to_event())  # type: ignore[no-untyped-call]  # untyped in Airflow

    async def on_kill(self) -> None:
        """A user stopped the deferred task: cancel its generation, unless it was only moved."""
        if not self.cancel_on_kill:
            return
        # Airflow 3.3 may cancel on_kill() itself when it sends the trigger's cancel again, and the
        # state query can be slow on a busy triggerer: the decision and the DELETE go on in a task
        # of their own, bounded by their own timeout.
        work = asyncio.ensure_future(asyncio.wait_for(self._cancel_unless_moved(), _ON_KILL_SECONDS))
        _ON_KILL_TASKS.add(work)
        work.add_done_callback(_ON_KILL_TASKS.discard)
        await asyncio.shield(work)

    async def _cancel_unless_moved(self) -> None:
        known, state = await self._task_instance_state()
        if not spend.kill_cancels(known, state):
            self.log.info(
                "Not cancelling Runway task %s: its Airflow task is %s.",
                self.runway_task_id,
                state if known else "in an unknown state",
            )
            return
        await spend.acancel_if_unfinished(
            RunwayHook(self.runway_conn_id, poll_retries=1),
            TaskRef(self.runway_task_id, self.route_family),
            reason=f"a user stopped its deferred Airflow task (now {state or 'cleared'})",
            log=self.log,
        )

    async def _task_instance_state(self) -> tuple[bool, str | None]:
        """``(known, state)`` of this trigger's task instance, asked of the Execution API.

        A cleared task instance is known with state None.
        """
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return False, None
        from airflow.sdk.execution_time.comms import GetTaskStates
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        try:
            answer = await SUPERVISOR_COMMS.asend(
                GetTaskStates(
                    dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
                )
            )
            state = answer.task_states[ti.run_id][key]  # type: ignore[union-attr]
        except (AttributeError, KeyError, TypeError, RuntimeError, OSError) as err:
            # Not knowing, keep the generation: cancelling a moved task would make its retry pay again.
            self.log.warning("Could not read the state of task %s: %r", ti.task_id, err)
            return False, None
        return True, None if state is None else str(getattr(state, "value", state))


def _schedule(poll_interval: float | None, poll_schedule: dict[str, Any] | None) -> PollSchedule:
    """A set ``poll_interval`` is a fixed schedule (every trigger serialized before pacing has one)."""
    if poll_interval is not None:
        return PollSchedule.fixed(poll_interval)
    return PollSchedule.from_dict(poll_schedule or {})
