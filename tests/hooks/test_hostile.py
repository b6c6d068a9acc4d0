"""Hostile or broken input never hangs a wait, leaks the key, or makes the two wait paths disagree."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from airflow.sdk import Connection

from runway_provider import compat
from runway_provider.compat import BaseHook
from runway_provider.exceptions import (
    RunwayConfigurationError,
    RunwayInputError,
    RunwayRequestRefusedError,
    RunwayTransientError,
)
from runway_provider.hooks import _http
from runway_provider.hooks.runway import RunwayConnectionSettings, RunwayHook
from runway_provider.models import MAX_RAW_CHARS, RouteFamily, RunwayTask, RunwayTaskStatus
from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.sensors.runway import RunwayTaskSensor
from runway_provider.testing import Scenario
from tests.helpers import TEST_API_KEY, AirflowNotFoundException, job_options, set_connection

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"


# -- the key -----------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["\n", "\r\n", " \t"])
def test_a_key_read_from_a_file_works_sync_and_async(monkeypatch, server, emulator, padding):
    set_connection(monkeypatch, server, password=f"{TEST_API_KEY}{padding}")
    hook = RunwayHook(retry_backoff=0.01)
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    assert (
        hook.get_task(runway_task_id, RouteFamily.REVERSE).visible is False
        or hook.get_task(runway_task_id, RouteFamily.REVERSE).runway_task_id
    )
    assert (
        asyncio.run(RunwayHook().aget_task(runway_task_id, RouteFamily.REVERSE)).runway_task_id
        == runway_task_id
    )
    assert len(emulator.jobs) == 1  # the emulator accepts only the exact key


def test_a_key_with_control_characters_inside_is_refused_without_echoing_it():
    key = "sk-abc\x00def-secret"
    conn = Connection(conn_id="runway_default", conn_type="runway", password=key, host="http://x")
    with pytest.raises(RunwayConfigurationError, match="password field") as caught:
        RunwayConnectionSettings.from_connection(conn)
    assert "secret" not in str(caught.value) and key not in str(caught.value)


def test_no_error_text_carries_the_key(monkeypatch, server, closed_port, caplog):
    set_connection(monkeypatch, server, password=f"{TEST_API_KEY}\n", host=f"http://127.0.0.1:{closed_port}")
    hook = RunwayHook(retry_backoff=0.01, poll_retries=0, create_retries=0)
    caught: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        for call in (
            lambda: hook.submit_generate(prompt="A paper boat", image=IMAGE),
            lambda: hook.get_task("abc", RouteFamily.REVERSE),
            lambda: asyncio.run(RunwayHook(poll_retries=0).aget_task("abc", RouteFamily.REVERSE)),
        ):
            with pytest.raises(RunwayTransientError) as error:
                call()
            caught.append(error.value)
        ok, message = hook.test_connection()
    assert not ok
    for text in [*(str(err) for err in caught), message, caplog.text]:
        assert TEST_API_KEY not in text


def test_describe_scrubs_headers_and_the_key():
    err = ValueError(f"Invalid header value b'Bearer {TEST_API_KEY}\\n'")
    text = _http.describe(err, TEST_API_KEY)
    assert TEST_API_KEY not in text and "Bearer ***" in text


# -- the settings cache ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_cancelled_settings_reader_never_blocks_the_next_one(runway_conn, monkeypatch):
    reads = 0

    async def slow_read(conn_id: str) -> Any:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.2)
        return await compat.aget_connection(BaseHook, conn_id)

    # Airflow 3.0-3.2 have no aget_connection: compat.aget_connection takes the hook's when it has one.
    monkeypatch.setattr(RunwayHook, "aget_connection", staticmethod(slow_read), raising=False)
    first = asyncio.ensure_future(RunwayHook("runway_default")._aget_settings())
    await asyncio.sleep(0.05)  # the first reader is inside the connection read
    first.cancel()
    second = await asyncio.wait_for(RunwayHook("runway_default")._aget_settings(), 5)
    assert second.api_key == TEST_API_KEY
    assert first.cancelled() and reads == 1  # the read went on for the second reader


@pytest.mark.asyncio
async def test_a_failed_settings_read_is_not_cached(monkeypatch, server):
    monkeypatch.delenv("AIRFLOW_CONN_RUNWAY_DEFAULT", raising=False)
    with pytest.raises(AirflowNotFoundException, match="runway_default"):
        await RunwayHook("runway_default")._aget_settings()
    set_connection(monkeypatch, server, password=TEST_API_KEY)
    settings = await asyncio.wait_for(RunwayHook("runway_default")._aget_settings(), 5)
    assert settings.api_key == TEST_API_KEY


# -- odd answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["binary", "huge", "garbage", "html"])
def test_one_odd_poll_answer_never_ends_a_wait(hook, emulator, fault):
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE, options=job_options())
    emulator.jobs[runway_task_id].pending_faults = [fault]
    with pytest.raises(RunwayTransientError):
        RunwayHook(poll_retries=0).get_task(runway_task_id, RouteFamily.REVERSE)
    with pytest.raises(RunwayTransientError):
        emulator.jobs[runway_task_id].pending_faults = [fault]
        asyncio.run(RunwayHook(poll_retries=0).aget_task(runway_task_id, RouteFamily.REVERSE))
    task = hook.wait_for_task(
        runway_task_id, route_family=RouteFamily.REVERSE, poll_interval=0.1, timeout=30, not_found_grace=30
    )
    assert task.status is RunwayTaskStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("invalid500", RunwayRequestRefusedError),
        ("500", RunwayTransientError),
        ("429", RunwayTransientError),
        ("refused", RunwayRequestRefusedError),
        ("binary", RunwayTransientError),
    ],
)
def test_blocking_and_deferred_polls_classify_alike(hook, emulator, fault, error):
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    outcomes = []
    for poll in (
        lambda: RunwayHook(poll_retries=0).get_task(runway_task_id, RouteFamily.REVERSE),
        lambda: asyncio.run(RunwayHook(poll_retries=0).aget_task(runway_task_id, RouteFamily.REVERSE)),
    ):
        emulator.jobs[runway_task_id].pending_faults = [fault]
        with pytest.raises(RunwayTransientError if error is RunwayTransientError else error) as caught:
            poll()
        outcomes.append(type(caught.value))
    assert outcomes[0] == outcomes[1]
    assert issubclass(outcomes[0], error)


def test_raw_is_bounded_in_xcom():
    task = RunwayTask(
        runway_task_id="t",
        status=RunwayTaskStatus.RUNNING,
        raw={"filler": "x" * 100_000},
        route_family=RouteFamily.REVERSE,
    )
    raw = task.to_dict()["raw"]
    assert raw["truncated"] is True and len(json.dumps(raw)) < MAX_RAW_CHARS + 100


@pytest.mark.parametrize("interval", [0, -1, "10"])
def test_a_poll_interval_must_be_positive(interval):
    with pytest.raises(RunwayInputError, match="poll_interval"):
        RunwayGenerateOperator(task_id="g", prompt="p", image=IMAGE, poll_interval=interval)
    with pytest.raises(RunwayInputError, match="poll_interval"):
        RunwayTaskSensor(task_id="s", runway_task_id="t", poll_interval=interval)


def test_a_data_uri_has_a_size_cap_named_in_the_error(runway_conn, emulator):
    huge = "data:image/png;base64," + "A" * (17 * 1024 * 1024)
    with pytest.raises(RunwayInputError, match="the limit is") as caught:
        RunwayHook().submit_generate(prompt="A paper boat", image=huge)
    assert caught.value.field == "image" and len(str(caught.value)) < 300
    assert emulator.requests == []


@pytest.mark.parametrize("code", ["", "invalid_request", "task_not_exist", "insufficient_user_quota"])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504])
@pytest.mark.parametrize("family", ["reverse", "official"])
def test_every_status_and_code_means_the_same_on_both_paths(hook, emulator, status, code, family):
    """The one retry rule: a blocking and a deferred poll end (or go on) alike for every answer.

    The task is visible from its first second and runs for minutes: a 401 or 403 makes either path
    read the key once more and poll again, and that poll's answer must not depend on how long the
    first one took (on a loaded machine the two paths' second polls fell on either side of a short
    task's not-yet-visible window).
    """
    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=60, running_seconds=60)
    if family == "official":
        runway_task_id = hook.submit_image_to_video(prompt_image=IMAGE)
    else:
        runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    fault = f"http{status}:{code}" if code else f"http{status}"

    def outcome(poll: Any) -> str:
        emulator.jobs[runway_task_id].pending_faults = [fault]
        try:
            task = poll()
        except Exception as err:  # the outcome's class is what is compared
            return type(err).__name__
        return "not visible" if not task.visible else "visible"

    sync = outcome(lambda: RunwayHook(poll_retries=0).get_task(runway_task_id, RouteFamily(family)))
    deferred = outcome(
        lambda: asyncio.run(RunwayHook(poll_retries=0).aget_task(runway_task_id, RouteFamily(family)))
    )
    assert sync == deferred, (status, code)
