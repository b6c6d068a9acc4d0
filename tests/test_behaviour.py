"""Behaviours a user relies on, each written so that the bug it guards against makes it fail."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from runway_provider.exceptions import RunwayTaskLostError, RunwayTaskTimeoutError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily
from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.testing import Scenario
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import (
    FAST,
    MemoryTaskStateStore,
    RecordingTaskInstance,
    TaskDeferred,
    job_options,
    make_trigger,
)

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"
VIDEO = "https://example.com/source.mp4"


async def events_of(trigger: RunwayTaskTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_every_call_carries_the_version_header_and_the_key(hook, emulator):
    emulator.scenario = FAST
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    hook.get_task(runway_task_id, RouteFamily.REVERSE)
    asyncio.run(RunwayHook().aget_task(runway_task_id, RouteFamily.REVERSE))
    official_id = hook.submit_image_to_video(prompt_image=IMAGE)
    hook.get_task(official_id, RouteFamily.OFFICIAL)
    asyncio.run(RunwayHook().aget_task(official_id, RouteFamily.OFFICIAL))
    hook.cancel_task(official_id, RouteFamily.OFFICIAL)
    asyncio.run(RunwayHook().acancel_task(official_id, RouteFamily.OFFICIAL))
    calls = [(r["method"], r["path"].rsplit("/", 1)[0]) for r in emulator.requests]
    assert len(calls) == 8 and ("DELETE", "/runwayml/v1/tasks") in calls
    assert all(r["runway_version"] == "2024-11-06" and r["authorized"] for r in emulator.requests)


@pytest.mark.asyncio
async def test_a_trigger_whose_every_poll_fails_ends_at_its_deadline(hook, emulator):
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    emulator.jobs[runway_task_id].pending_faults = ["503"] * 10_000
    started = time.monotonic()
    [event] = await asyncio.wait_for(events_of(make_trigger(runway_task_id, end_time=time.time() + 1.5)), 30)
    assert event["status"] == "timeout" and "last poll error" in event["message"]
    assert time.monotonic() - started < 20  # the deadline ended it, not a hang


def test_a_blocking_wait_whose_every_poll_fails_ends_at_its_deadline(hook, emulator):
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    emulator.jobs[runway_task_id].pending_faults = ["reset"] * 10_000
    with pytest.raises(RunwayTaskTimeoutError, match="last poll error"):
        hook.wait_for_task(
            runway_task_id,
            route_family=RouteFamily.REVERSE,
            poll_interval=0.1,
            timeout=1.5,
            not_found_grace=60,
        )


@pytest.mark.asyncio
async def test_the_grace_counts_from_submission_across_a_triggerer_restart(hook, emulator):
    runway_task_id = hook.submit_generate(
        prompt="A paper boat", image=IMAGE, options=job_options(outcome="never_appears")
    )
    # A trigger started again 10 s after submission, with a 5 s grace: the task is lost at once.
    trigger = make_trigger(runway_task_id, submitted_at=time.time() - 10, end_time=time.time() + 60)
    started = time.monotonic()
    [event] = await asyncio.wait_for(events_of(trigger), 30)
    assert event["status"] == "failed" and "task_not_exist" in event["message"]
    assert time.monotonic() - started < 3  # not another 5 s of grace


@pytest.mark.usefixtures("quick_backoff")
def test_one_blip_before_deferring_defers_instead_of_failing(runway_conn, emulator):
    op = RunwayGenerateOperator(
        task_id="generate",
        prompt="A paper boat",
        image=IMAGE,
        options=job_options(running_seconds=30),
        wait_for_completion=True,
        deferrable=True,
    )
    context = {"ti": RecordingTaskInstance(), "task_state_store": MemoryTaskStateStore()}
    emulator.scenario = Scenario(feed_faults=["503"] * 5)  # the check before deferring fails
    with pytest.raises(TaskDeferred):
        op.execute(context)


def test_a_lost_task_is_lost_after_its_grace_not_before(hook, emulator):
    runway_task_id = hook.submit_generate(
        prompt="A paper boat", image=IMAGE, options=job_options(outcome="never_appears")
    )
    started = time.monotonic()
    with pytest.raises(RunwayTaskLostError):
        hook.wait_for_task(
            runway_task_id, route_family=RouteFamily.REVERSE, poll_interval=0.1, timeout=30, not_found_grace=1
        )
    assert 1 <= time.monotonic() - started < 20


# One case per route of runway_provider.routes (tests/test_routes.py checks that none is missing).
SUBMIT_CASES = [
    (
        "submit_generate",
        {"prompt": "a paper boat", "image": IMAGE, "style": "cinematic", "last_image": IMAGE},
        "/runway/pro/generate",
        {
            "prompt": "a paper boat",
            "image": IMAGE,
            "ratio": "1280:720",
            "model": "gen4",
            "style": "cinematic",
            "last_image": IMAGE,
        },
    ),
    (
        "submit_text_to_image",
        {"prompt_text": "@hero on a pier", "reference_images": [{"uri": IMAGE, "tag": "hero"}], "seed": 3},
        "/runwayml/v1/text_to_image",
        {
            "model": "gen4_image",
            "promptText": "@hero on a pier",
            "ratio": "1920:1080",
            "referenceImages": [{"uri": IMAGE, "tag": "hero"}],
            "seed": 3,
        },
    ),
    (
        "submit_image_to_video",
        {"prompt_image": IMAGE, "prompt_text": "waves", "duration": 5, "seed": 7},
        "/runwayml/v1/image_to_video",
        {
            "model": "gen4_turbo",
            "promptImage": IMAGE,
            "ratio": "1280:720",
            "promptText": "waves",
            "duration": 5,
            "seed": 7,
        },
    ),
    (
        "submit_video_to_video",
        {
            "video": VIDEO,
            "prompt_text": "make it snow",
            "references": [IMAGE],
            "content_moderation": {"publicFigureThreshold": "low"},
        },
        "/runwayml/v1/video_to_video",
        {
            "model": "gen4_aleph",
            "videoUri": VIDEO,
            "promptText": "make it snow",
            "ratio": "1280:720",
            "references": [{"type": "image", "uri": IMAGE}],
            "contentModeration": {"publicFigureThreshold": "low"},
        },
    ),
    (
        "submit_upscale_video",
        {"video": VIDEO},
        "/runwayml/v1/video_upscale",
        {"model": "upscale_v1", "videoUri": VIDEO},
    ),
    (
        "submit_character_performance",
        {"character": IMAGE, "reference_video": VIDEO, "body_control": True, "expression_intensity": 4},
        "/runwayml/v1/character_performance",
        {
            "model": "act_two",
            "character": {"type": "image", "uri": IMAGE},
            "reference": {"type": "video", "uri": VIDEO},
            "ratio": "1280:720",
            "bodyControl": True,
            "expressionIntensity": 4,
        },
    ),
    (
        "submit_reverse_video_to_video",
        {"video": VIDEO, "prompt": "a watercolour", "options": {"seconds": 5}},
        "/runway/pro/video2video",
        {"video": VIDEO, "prompt": "a watercolour", "model": "gen4", "options": {"seconds": 5}},
    ),
    (
        "submit_act_one",
        {"video": VIDEO, "image": IMAGE},
        "/runway/pro/act_one",
        {"video": VIDEO, "image": IMAGE},
    ),
]


@pytest.mark.parametrize(("method", "kwargs", "path", "body"), SUBMIT_CASES)
def test_every_submit_method_posts_its_route_and_body(hook, server, emulator, method, kwargs, path, body):
    runway_task_id = getattr(hook, method)(**kwargs)
    [request] = emulator.create_requests()
    assert request["path"] == path and request["runway_task_id"] == runway_task_id
    sent = dict(emulator.jobs[runway_task_id].body)
    sent.pop("callback_url", None)
    assert sent == body
    family = "official" if path.startswith("/runwayml/") else "reverse"
    assert hook.get_task(runway_task_id, RouteFamily(family)).runway_task_id == runway_task_id


def test_an_http_date_retry_after_is_honoured():
    from email.utils import formatdate

    from runway_provider.hooks._http import parse_retry_after

    assert 5 <= (parse_retry_after(formatdate(time.time() + 8, usegmt=True)) or 0) <= 8
    assert parse_retry_after("3") == 3.0 and parse_retry_after("soon") is None
