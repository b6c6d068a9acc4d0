from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from runway_provider.hooks import _http
from runway_provider.hooks.runway import RunwayHook
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import job_options, make_trigger, set_connection

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"


async def all_events(trigger: RunwayTaskTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def submit(hook: RunwayHook, **scenario: Any) -> str:
    return hook.submit_generate(prompt="A paper boat", image=IMAGE, options=job_options(**scenario))


def test_serialize_round_trips():
    trigger = make_trigger("abc", end_time=1_900_000_000.5, submitted_at=1_899_999_000.0)
    classpath, kwargs = trigger.serialize()
    assert classpath == "runway_provider.triggers.runway.RunwayTaskTrigger"
    assert kwargs == {
        "runway_task_id": "abc",
        "runway_conn_id": "runway_default",
        "poll_interval": 0.1,
        "end_time": 1_900_000_000.5,
        "not_found_grace": 5.0,
        "submitted_at": 1_899_999_000.0,
        "route_family": "reverse",
        "cancel_on_kill": False,
    }
    assert RunwayTaskTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert all(isinstance(value, (str, float, bool)) for value in kwargs.values())


@pytest.mark.asyncio
async def test_run_yields_one_success_event(hook):
    runway_task_id = submit(hook)
    [event] = await all_events(make_trigger(runway_task_id))
    assert event["status"] == "success"
    assert event["runway_task_id"] == runway_task_id
    assert event["task"]["video_url"].endswith(f"{runway_task_id}.mp4")
    assert set(event) == {"status", "runway_task_id", "task", "message"}


@pytest.mark.usefixtures("quick_backoff")
@pytest.mark.asyncio
async def test_run_survives_every_kind_of_transient_error(hook, emulator):
    faults = ["429", "500", "502", "503", "504", "reset", "html", "garbage"]
    runway_task_id = submit(hook, feed_faults=faults)
    [event] = await all_events(make_trigger(runway_task_id, end_time=time.time() + 60))
    assert event["status"] == "success", event["message"]
    feeds = [r for r in emulator.requests if r["path"] == "/runway/feed"]
    assert [r.get("fault") for r in feeds][: len(faults)] == faults


@pytest.mark.asyncio
async def test_run_waits_through_task_not_exist_within_grace(hook, emulator):
    runway_task_id = submit(hook, not_found_seconds=1.0)
    [event] = await all_events(make_trigger(runway_task_id, not_found_grace=3))
    assert event["status"] == "success"
    statuses = [r["http_status"] for r in emulator.requests if r["path"] == "/runway/feed"]
    assert statuses[0] == 400 and statuses[-1] == 200


@pytest.mark.asyncio
async def test_run_task_not_exist_with_http_200(hook):
    runway_task_id = submit(hook, not_found_seconds=0.5, task_not_exist_http_status=200)
    [event] = await all_events(make_trigger(runway_task_id))
    assert event["status"] == "success"


@pytest.mark.asyncio
async def test_run_fails_a_task_that_never_appears(hook):
    runway_task_id = submit(hook, outcome="never_appears")
    [event] = await all_events(make_trigger(runway_task_id, not_found_grace=0.5))
    assert event["status"] == "failed"
    assert runway_task_id in event["message"] and "lost" in event["message"]
    assert event["task"]["visible"] is False


@pytest.mark.asyncio
async def test_run_reports_failed_generation(hook):
    runway_task_id = submit(
        hook, outcome="failed", failure_code="SAFETY.INPUT.TEXT", failure="Prompt refused"
    )
    [event] = await all_events(make_trigger(runway_task_id))
    assert event["status"] == "failed"
    assert "Prompt refused" in event["message"] and "SAFETY.INPUT.TEXT" in event["message"]
    assert event["task"]["failure_code"] == "SAFETY.INPUT.TEXT"


@pytest.mark.asyncio
async def test_run_enforces_its_own_deadline(hook):
    runway_task_id = submit(hook, running_seconds=60)
    started = time.time()
    [event] = await all_events(make_trigger(runway_task_id, end_time=started + 1.0))
    assert event["status"] == "timeout"
    assert time.time() - started < 10  # far below the 60 s generation: the deadline, not the job, ended it
    assert event["task"]["status"] == "RUNNING"
    assert "may still be running" in event["message"]


@pytest.mark.asyncio
async def test_run_deadline_already_passed(hook):
    runway_task_id = submit(hook, running_seconds=60)
    [event] = await all_events(make_trigger(runway_task_id, end_time=time.time() - 1))
    assert event["status"] == "timeout"


@pytest.mark.asyncio
async def test_run_refused_key_is_an_error_event(hook, monkeypatch, server):
    runway_task_id = submit(hook)
    set_connection(monkeypatch, server, password="sk-wrong-key-000000")
    [event] = await all_events(make_trigger(runway_task_id))
    assert event["status"] == "error"
    assert "401" in event["message"] and "sk-wrong-key" not in event["message"]


@pytest.mark.asyncio
async def test_run_missing_connection_is_an_error_event(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_RUNWAY_DEFAULT", raising=False)
    [event] = await all_events(make_trigger("abc", runway_conn_id="runway_missing"))
    assert event["status"] == "error"
    assert "runway_missing" in event["message"]


@pytest.mark.asyncio
async def test_run_closes_the_pooled_session_on_every_path(hook):
    loop = asyncio.get_running_loop()
    runway_task_id = submit(hook, running_seconds=60)
    await all_events(make_trigger(runway_task_id, end_time=time.time() + 0.3))
    assert _http.SESSION_POOL._sessions.get(loop, {}) == {}

    pending = asyncio.ensure_future(make_trigger(runway_task_id).run().__anext__())
    await asyncio.sleep(0.3)
    assert not pending.done()  # still waiting on a running task
    [lease] = _http.SESSION_POOL._sessions[loop].values()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert lease.session.closed
    assert _http.SESSION_POOL._sessions.get(loop, {}) == {}


@pytest.mark.asyncio
async def test_many_triggers_share_one_session(hook, emulator, monkeypatch):
    sessions: list[int] = []
    acquire = _http.SESSION_POOL.acquire

    def recording_acquire(base_url: str) -> Any:
        session = acquire(base_url)
        sessions.append(id(session))
        return session

    monkeypatch.setattr(_http.SESSION_POOL, "acquire", recording_acquire)
    ids = [submit(hook) for _ in range(5)]
    events = await asyncio.gather(*(all_events(make_trigger(i)) for i in ids))
    assert [e["status"] for [e] in events] == ["success"] * 5
    assert sorted(e["runway_task_id"] for [e] in events) == sorted(ids)
    assert len(sessions) == 5 and len(set(sessions)) == 1  # five waits, one pooled session
