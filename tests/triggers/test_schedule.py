"""The trigger's polling schedule: carried in its kwargs, rebuilt alike by any triggerer."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from runway_provider.pacing import PollSchedule
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import job_options, make_trigger

pytestmark = pytest.mark.unit

CLASSPATH = "runway_provider.triggers.runway.RunwayTaskTrigger"
# What the version before pacing serialized: poll_interval only.
BEFORE_PACING = {
    "runway_task_id": "abc",
    "runway_conn_id": "runway_default",
    "poll_interval": 10.0,
    "end_time": 1_900_000_000.5,
    "not_found_grace": 120.0,
    "submitted_at": 1_899_999_000.0,
    "route_family": "reverse",
    "cancel_on_kill": False,
}


def test_a_trigger_serialized_before_pacing_polls_at_its_fixed_interval():
    trigger = RunwayTaskTrigger(**BEFORE_PACING)
    assert trigger.schedule == PollSchedule.fixed(10)
    assert trigger.serialize() == (CLASSPATH, BEFORE_PACING)


def test_adaptive_schedule_round_trips_as_json():
    schedule = PollSchedule(min_interval=2, max_interval=30)
    trigger = RunwayTaskTrigger(
        **{**BEFORE_PACING, "poll_interval": None, "poll_schedule": schedule.to_dict()}
    )
    classpath, kwargs = trigger.serialize()
    assert kwargs["poll_interval"] is None
    assert kwargs["poll_schedule"] == {"min_interval": 2.0, "max_interval": 30.0}
    rebuilt = RunwayTaskTrigger(**json.loads(json.dumps(kwargs)))
    assert rebuilt.schedule == schedule
    assert rebuilt.serialize() == (classpath, kwargs)


def test_without_interval_or_schedule_the_adaptive_defaults_apply():
    assert RunwayTaskTrigger(**{**BEFORE_PACING, "poll_interval": None}).schedule == PollSchedule()


def test_a_set_poll_interval_wins_over_the_schedule():
    trigger = RunwayTaskTrigger(**{**BEFORE_PACING, "poll_schedule": {"min_interval": 2}})
    assert trigger.schedule == PollSchedule.fixed(10)


def test_a_bad_schedule_is_refused_when_the_trigger_is_made():
    with pytest.raises(ValueError, match="min_interval"):
        RunwayTaskTrigger(**{**BEFORE_PACING, "poll_interval": None, "poll_schedule": {"min_interval": -1}})


@pytest.mark.asyncio
async def test_run_with_the_adaptive_schedule(hook, emulator):
    runway_task_id = hook.submit_generate(
        prompt="A paper boat", image="https://example.com/first.jpg", options=job_options(running_seconds=1.0)
    )
    # The defaults divided by 100, as the benchmark compresses them.
    schedule = {"min_interval": 0.04, "max_interval": 0.6, "fallback_interval": 0.1}
    trigger = make_trigger(
        runway_task_id, poll_interval=None, poll_schedule=schedule, submitted_at=time.time()
    )
    events: list[dict[str, Any]] = [event.payload async for event in trigger.run()]
    assert [event["status"] for event in events] == ["success"]
    polls = [r for r in emulator.requests if r["path"] == "/runway/feed"]
    assert 2 <= len(polls) <= 30


def test_without_poll_interval_a_trigger_is_adaptive():
    kwargs = {name: value for name, value in BEFORE_PACING.items() if name != "poll_interval"}
    trigger = RunwayTaskTrigger(**kwargs)
    assert trigger.schedule == PollSchedule()
    assert trigger.serialize()[1]["poll_interval"] is None
    assert RunwayTaskTrigger(**trigger.serialize()[1]).schedule == PollSchedule()


def test_an_image_schedule_travels_in_the_trigger_json():
    image = PollSchedule.from_options(output="image")
    trigger = RunwayTaskTrigger(**{**BEFORE_PACING, "poll_interval": None, "poll_schedule": image.to_dict()})
    rebuilt = RunwayTaskTrigger(**json.loads(json.dumps(trigger.serialize()[1])))
    assert rebuilt.schedule == image and rebuilt.schedule.queued_pace == 4
