from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from airflow.sdk import Connection

from runway_provider.compat import AirflowFailException
from runway_provider.defaults import DEFAULT_BASE_URL
from runway_provider.exceptions import (
    RunwayAuthenticationError,
    RunwayBalanceExhaustedError,
    RunwayBusinessError,
    RunwayConfigurationError,
    RunwayContentRejectedError,
    RunwayInputError,
    RunwayRateLimitError,
    RunwayRequestRefusedError,
    RunwaySubmissionUncertainError,
    RunwayTaskCancelledError,
    RunwayTaskFailedError,
    RunwayTaskLostError,
    RunwayTaskTimeoutError,
    RunwayTransientError,
)
from runway_provider.hooks import _http
from runway_provider.hooks.runway import RunwayConnectionSettings, RunwayHook
from runway_provider.models import RouteFamily, RunwayTaskStatus
from runway_provider.testing import Emulator, EmulatorServer
from tests.helpers import TEST_API_KEY, advance, job_options, set_connection

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"


def submit(hook: RunwayHook, **kwargs: Any) -> str:
    return hook.submit_generate(prompt=kwargs.pop("prompt", "A paper boat"), image=IMAGE, **kwargs)


# -- connection settings -------------------------------------------------------------------


def settings_of(**fields: Any) -> RunwayConnectionSettings:
    extra = fields.pop("extra", None)
    conn = Connection(conn_id="runway_default", conn_type="runway", password="k" * 12, extra=extra, **fields)
    return RunwayConnectionSettings.from_connection(conn)


def test_settings_defaults_to_cometapi():
    settings = settings_of()
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.runway_version == "2024-11-06"
    assert settings.callback_url is None
    assert settings.timeout == 60.0


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("api.cometapi.com", None, "https://api.cometapi.com"),
        ("http://127.0.0.1:8765/", None, "http://127.0.0.1:8765"),
        ("http://127.0.0.1", 9000, "http://127.0.0.1:9000"),
        ("https://proxy.internal/comet", None, "https://proxy.internal/comet"),
    ],
)
def test_settings_base_url(host, port, expected):
    assert settings_of(host=host, port=port).base_url == expected


def test_settings_reads_extras():
    settings = settings_of(
        extra=json.dumps(
            {"runway_version": "2025-01-01", "callback_url": "https://hooks.example/cb", "timeout": 5}
        )
    )
    assert (settings.runway_version, settings.callback_url, settings.timeout) == (
        "2025-01-01",
        "https://hooks.example/cb",
        5.0,
    )


def test_settings_never_shows_the_key():
    settings = settings_of()
    assert "k" * 12 not in repr(settings)
    assert settings.headers["Authorization"] == "Bearer " + "k" * 12


def test_settings_without_key_names_the_field():
    conn = Connection(conn_id="runway_default", conn_type="runway", host="http://x")
    with pytest.raises(RunwayConfigurationError, match="password"):
        RunwayConnectionSettings.from_connection(conn)


@pytest.mark.parametrize("timeout", ["soon", -1, 0])
def test_settings_rejects_bad_timeout(timeout):
    with pytest.raises(RunwayConfigurationError, match="timeout"):
        settings_of(extra=json.dumps({"timeout": timeout}))


def test_settings_rejects_non_http_host():
    with pytest.raises(RunwayConfigurationError, match="host"):
        settings_of(host="ftp://files.example")


# -- submit ----------------------------------------------------------------------------------


def test_submit_sends_documented_request(hook, server, emulator):
    runway_task_id = submit(hook, style="cinematic", options={"seconds": 5}, last_image=IMAGE)
    [job] = emulator.jobs.values()
    assert job.runway_task_id == runway_task_id
    assert job.body == {
        "prompt": "A paper boat",
        "image": IMAGE,
        "ratio": "1280:720",
        "model": "gen4",
        "callback_url": f"{server.base_url}/_emulator/callback",
        "style": "cinematic",
        "options": {"seconds": 5},
        "last_image": IMAGE,
    }


def test_submit_sends_headers(hook, emulator, server):
    seen: dict[str, str] = {}
    original = emulator._authorized

    def spy(request):
        seen.update(request.headers)
        return original(request)

    emulator._authorized = spy
    submit(hook)
    assert seen["Authorization"] == f"Bearer {TEST_API_KEY}"
    assert seen["X-Runway-Version"] == "2024-11-06"
    assert seen["User-Agent"].startswith("airflow-provider-runway/")


def test_submit_prefers_argument_callback(hook, emulator):
    submit(hook, callback_url="https://hooks.example/runway")
    [job] = emulator.jobs.values()
    assert job.body["callback_url"] == "https://hooks.example/runway"


def test_submit_without_any_callback_is_refused_before_sending(monkeypatch, server, emulator):
    set_connection(monkeypatch, server, password=TEST_API_KEY, extra={"callback_url": None})
    with pytest.raises(RunwayInputError, match="callback_url"):
        submit(RunwayHook())
    assert emulator.requests == []


def test_submit_with_wrong_key(monkeypatch, server, emulator):
    set_connection(monkeypatch, server, password="sk-wrong-key-000000")
    with pytest.raises(RunwayAuthenticationError, match="401") as caught:
        submit(RunwayHook())
    assert "sk-wrong-key" not in str(caught.value)
    assert len(emulator.requests) == 1


def test_submit_retries_refusals_before_processing(hook, emulator):
    runway_task_id = submit(hook, options=job_options(create_faults=["429", "429"]))
    creates = [r for r in emulator.requests if r["path"] == "/runway/pro/generate"]
    assert [r["http_status"] for r in creates] == [429, 429, 200]
    assert list(emulator.jobs) == [runway_task_id]


def test_submit_503_from_cometapi_itself_is_not_processed_and_retryable(hook, emulator):
    # CometAPI's own JSON error: the gateway refused before forwarding (docs/reliability.md).
    with pytest.raises(RunwayTransientError, match="HTTP 503") as caught:
        submit(hook, options=job_options(create_faults=["503"]))
    assert not isinstance(caught.value, RunwaySubmissionUncertainError)
    assert len(emulator.create_requests()) == 1 and emulator.jobs == {}


@pytest.mark.parametrize("fault", ["500", "502", "504", "proxy503", "reset", "html", "garbage"])
def test_submit_never_resends_after_the_request_may_have_arrived(hook, emulator, fault):
    with pytest.raises(RunwaySubmissionUncertainError, match="may have created") as caught:
        submit(hook, options=job_options(create_faults=[fault]))
    assert "not sent again" in str(caught.value)
    assert caught.value.route == "/runway/pro/generate"
    assert len(emulator.create_requests()) == 1


@pytest.mark.parametrize(
    "fault", ["502_after_create", "proxy503_after_create", "reset_after_create", "garbage_after_create"]
)
def test_submit_processed_then_answer_lost_is_uncertain(hook, emulator, fault):
    with pytest.raises(RunwaySubmissionUncertainError):
        submit(hook, options=job_options(create_faults=[fault]))
    assert len(emulator.create_requests()) == 1
    assert len(emulator.jobs) == 1  # the generation exists and bills: exactly one


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"code": 200, "msg": "success", "data": {}}, "without a task id"),
        ({"code": 500, "msg": "upstream error"}, "server error"),
        ("<html>ok</html>", "garbled"),
    ],
)
def test_submit_garbled_success_is_uncertain(answer, expected):
    from runway_provider.protocol import parse_submission

    with pytest.raises(RunwaySubmissionUncertainError, match=expected):
        parse_submission(answer, 200)


@pytest.mark.parametrize(
    ("answer", "status", "error", "limit"),
    [
        ({"error": {"message": "Too many requests", "code": ""}}, 429, RunwayRateLimitError, "rate limit"),
        (
            {"error": {"message": "You have exceeded your daily generation limit", "code": ""}},
            429,
            RunwayRateLimitError,
            "daily generation limit",
        ),
        (
            {"error": {"message": "quota exhausted", "code": "insufficient_user_quota"}},
            403,
            RunwayBalanceExhaustedError,
            None,
        ),
        ({"code": "callback_url_empty", "msg": "callback_url_empty"}, 200, RunwayBusinessError, None),
        ({"code": 400, "msg": "prompt rejected by content policy"}, 200, RunwayBusinessError, None),
        (
            {"error": {"message": "bad model", "code": "invalid_request"}},
            400,
            RunwayRequestRefusedError,
            None,
        ),
        ({"error": {"message": "bad", "code": "invalid_request"}}, 500, RunwayRequestRefusedError, None),
    ],
)
def test_create_refusals_and_limits_are_typed(answer, status, error, limit):
    from runway_provider.protocol import parse_submission

    with pytest.raises(error) as caught:
        parse_submission(answer, status)
    if limit is None:
        assert isinstance(caught.value, AirflowFailException)  # a refusal is not retried by Airflow
    else:
        assert caught.value.limit == limit and limit in str(caught.value)
        assert not isinstance(caught.value, AirflowFailException)


def test_submit_read_timeout_is_uncertain_and_not_resent(monkeypatch, server, emulator):
    set_connection(monkeypatch, server, password=TEST_API_KEY, extra={"timeout": 0.3})
    with pytest.raises(RunwaySubmissionUncertainError):
        submit(RunwayHook(retry_backoff=0.01), options=job_options(delay_seconds=2))
    assert len([r for r in emulator.requests if r["path"] == "/runway/pro/generate"]) == 1


def test_submit_to_closed_port_is_retried_then_transient(monkeypatch, closed_port):
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNWAY_DEFAULT",
        json.dumps(
            {
                "conn_type": "runway",
                "host": f"http://127.0.0.1:{closed_port}",
                "password": TEST_API_KEY,
                "extra": {"callback_url": "https://hooks.example/cb"},
            }
        ),
    )
    with pytest.raises(RunwayTransientError, match="Did not send the request") as caught:
        submit(RunwayHook(create_retries=2, retry_backoff=0.01))
    assert not isinstance(caught.value, RunwaySubmissionUncertainError)


def test_submit_business_error_in_2xx(hook, emulator, monkeypatch):
    # The emulator answers callback_url_empty like CometAPI when the body has no callback_url.
    monkeypatch.setattr(RunwayHook, "payload", lambda self, route, **kw: {"prompt": "p", "image": IMAGE})
    with pytest.raises(RunwayBusinessError) as caught:
        submit(hook)
    assert caught.value.code == "callback_url_empty"
    assert emulator.jobs == {}


# -- get_task and wait_for_task ------------------------------------------------------------


@pytest.mark.parametrize("shape", ["wrapped", "legacy", "official"])
def test_get_task_follows_the_timeline_in_every_shape(hook, emulator, shape):
    # Long enough that the first poll comes before the task appears, even on a loaded machine ...
    runway_task_id = submit(hook, options=job_options(shape=shape, not_found_seconds=2))
    first = hook.get_task(runway_task_id, RouteFamily.REVERSE)
    assert (first.visible, first.status) == (False, RunwayTaskStatus.PENDING)
    # ... and not waited out once seen: the wait then follows the queued and running phases.
    advance(emulator, runway_task_id, 2)
    task = hook.wait_for_task(
        runway_task_id, route_family=RouteFamily.REVERSE, poll_interval=0.1, timeout=30, not_found_grace=10
    )
    assert task.status is RunwayTaskStatus.SUCCEEDED
    assert task.video_url.endswith(f"/_emulator/media/{runway_task_id}.mp4")


def test_get_task_retries_transient_answers(hook, emulator):
    runway_task_id = submit(
        hook, options=job_options(not_found_seconds=0, feed_faults=["429", "500", "reset", "html"])
    )
    task = hook.get_task(runway_task_id, RouteFamily.REVERSE)
    assert task.visible
    feeds = [r for r in emulator.requests if r["path"] == "/runway/feed"]
    assert [r.get("fault") for r in feeds] == ["429", "500", "reset", "html", None]


def test_get_task_gives_up_after_poll_retries(hook, emulator):
    runway_task_id = submit(hook, options=job_options(feed_faults=["503"] * 10))
    with pytest.raises(RunwayTransientError, match="503"):
        hook.get_task(runway_task_id, RouteFamily.REVERSE)
    assert (
        len([r for r in emulator.requests if r["path"] == "/runway/feed"])
        == hook.retry_policy.poll_retries + 1
    )


@pytest.mark.parametrize(
    ("scenario", "error", "text"),
    [
        (
            {"outcome": "failed", "failure_code": "SAFETY.INPUT.IMAGE"},
            RunwayContentRejectedError,
            "SAFETY.INPUT.IMAGE",
        ),
        ({"outcome": "cancelled", "shape": "official"}, RunwayTaskCancelledError, "cancelled"),
        ({"outcome": "no_output"}, RunwayTaskFailedError, "without any output URL"),
        ({"outcome": "never_appears"}, RunwayTaskLostError, "lost"),
    ],
)
def test_wait_for_task_raises_typed_errors(hook, scenario, error, text):
    runway_task_id = submit(hook, options=job_options(**scenario))
    with pytest.raises(error, match=text) as caught:
        hook.wait_for_task(
            runway_task_id,
            route_family=RouteFamily.REVERSE,
            poll_interval=0.1,
            timeout=10,
            not_found_grace=0.5,
        )
    assert type(caught.value) is error  # not merely a base class of it
    assert caught.value.runway_task_id == runway_task_id
    assert runway_task_id in str(caught.value)


def test_wait_for_task_times_out_with_last_status(hook):
    runway_task_id = submit(hook, options=job_options(running_seconds=30))
    with pytest.raises(RunwayTaskTimeoutError, match="RUNNING") as caught:
        hook.wait_for_task(
            runway_task_id,
            route_family=RouteFamily.REVERSE,
            poll_interval=0.1,
            timeout=1.0,
            not_found_grace=5,
        )
    assert "may still be running" in str(caught.value)
    assert caught.value.status == "RUNNING"


def test_wait_for_task_rides_out_failing_polls(hook, emulator):
    runway_task_id = submit(hook, options=job_options(feed_faults=["503"] * 6))
    task = hook.wait_for_task(
        runway_task_id, route_family=RouteFamily.REVERSE, poll_interval=0.1, timeout=10, not_found_grace=5
    )
    assert task.status is RunwayTaskStatus.SUCCEEDED


def test_unknown_task_id_is_lost_after_grace(hook):
    with pytest.raises(RunwayTaskLostError, match="no-such-task"):
        hook.wait_for_task(
            "no-such-task",
            route_family=RouteFamily.REVERSE,
            poll_interval=0.1,
            timeout=5,
            not_found_grace=0.3,
        )


# -- test_connection -------------------------------------------------------------------------


def test_test_connection_accepts_the_key(hook, server):
    ok, message = hook.test_connection()
    assert ok, message
    assert server.base_url in message


def test_test_connection_says_the_key_was_refused(monkeypatch, server):
    set_connection(monkeypatch, server, password="sk-wrong-key-000000")
    ok, message = RunwayHook().test_connection()
    assert not ok
    assert message == (
        f"CometAPI at {server.base_url} refused the API key (HTTP 401). "
        "Enter a valid CometAPI key in the API key field."
    )


def test_test_connection_says_the_host_is_unreachable(monkeypatch, closed_port):
    monkeypatch.setenv(
        "AIRFLOW_CONN_RUNWAY_DEFAULT",
        json.dumps(
            {"conn_type": "runway", "host": f"http://127.0.0.1:{closed_port}", "password": TEST_API_KEY}
        ),
    )
    ok, message = RunwayHook().test_connection()
    assert not ok
    assert "Could not reach" in message and str(closed_port) in message


# -- async half ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_aget_task_follows_the_timeline(hook):
    runway_task_id = submit(hook, options=job_options(not_found_seconds=0))
    async_hook = RunwayHook(retry_backoff=0.01)
    async with async_hook.async_client():
        task = await async_hook.aget_task(runway_task_id, RouteFamily.REVERSE)
        assert task.visible and task.status in (RunwayTaskStatus.PENDING, RunwayTaskStatus.RUNNING)
        await asyncio.sleep(0.6)
        task = await async_hook.aget_task(runway_task_id, RouteFamily.REVERSE)
    assert task.status is RunwayTaskStatus.SUCCEEDED


@pytest.mark.asyncio
async def test_aget_task_retries_transient_answers(hook, emulator):
    runway_task_id = submit(hook, options=job_options(feed_faults=["429", "503", "reset", "html"]))
    task = await RunwayHook(retry_backoff=0.01).aget_task(runway_task_id, RouteFamily.REVERSE)
    assert task.runway_task_id == runway_task_id
    feeds = [r for r in emulator.requests if r["path"] == "/runway/feed"]
    assert [r.get("fault") for r in feeds] == ["429", "503", "reset", "html", None]


@pytest.mark.asyncio
async def test_aget_task_does_not_retry_a_429_that_says_the_balance_is_spent(hook, emulator):
    # A 429 is retried unless its words say the account cannot pay: no retry tops it up.
    runway_task_id = submit(hook, options=job_options(feed_faults=["http429:insufficient_quota"]))
    with pytest.raises(RunwayBalanceExhaustedError):
        await RunwayHook(retry_backoff=0.01).aget_task(runway_task_id, RouteFamily.REVERSE)
    feeds = [r for r in emulator.requests if r["path"] == "/runway/feed"]
    assert [(r["http_status"], r.get("fault")) for r in feeds] == [(429, "http429:insufficient_quota")]


def test_a_create_refused_for_a_spent_balance_is_sent_once(hook, emulator):
    emulator.balance_spent = True
    with pytest.raises(RunwayBalanceExhaustedError) as caught:
        submit(hook)
    assert [(r["http_status"], r["fault"]) for r in emulator.create_requests()] == [(403, "spent_balance")]
    assert caught.value.runway_task_id is None and emulator.jobs == {}


@pytest.mark.asyncio
async def test_aget_task_garbled_answer_is_transient(hook):
    # A garbled 200 is not retried inside the hook; the wait loop polls again (see the trigger tests).
    runway_task_id = submit(hook, options=job_options(feed_faults=["garbage"]))
    with pytest.raises(RunwayTransientError, match="non-JSON"):
        await RunwayHook().aget_task(runway_task_id, RouteFamily.REVERSE)


@pytest.mark.asyncio
async def test_async_hooks_share_one_session_per_loop_and_close_it(hook):
    first, second = RunwayHook(), RunwayHook()
    async with first.async_client(), second.async_client():
        assert first._async_session is second._async_session
        session = first._async_session
        assert not session.closed
    assert session.closed
    assert _http.SESSION_POOL._sessions.get(asyncio.get_running_loop(), {}) == {}


@pytest.mark.asyncio
async def test_aget_task_rereads_a_rotated_key(monkeypatch, server, emulator, hook):
    runway_task_id = submit(hook)
    async_hook = RunwayHook()
    async with async_hook.async_client():
        await async_hook.aget_task(runway_task_id, RouteFamily.REVERSE)
        emulator.api_key = "sk-rotated-key-1234"
        set_connection(monkeypatch, server, password="sk-rotated-key-1234")
        task = await async_hook.aget_task(runway_task_id, RouteFamily.REVERSE)
    assert task.runway_task_id == runway_task_id
    statuses = [r["http_status"] for r in emulator.requests if r["path"] == "/runway/feed"]
    assert statuses[-2] == 401 and statuses[-1] in (200, 400)  # 400: task_not_exist, still new


@pytest.mark.asyncio
async def test_aget_task_with_wrong_key_raises(monkeypatch, server):
    set_connection(monkeypatch, server, password="sk-wrong-key-000000")
    with pytest.raises(RunwayAuthenticationError):
        await RunwayHook().aget_task("any", RouteFamily.REVERSE)


WRONG_KEY_CONNECTION = "(connection 'runway_team_b': check the CometAPI key in its password field)"


def wrong_key_hook(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer) -> RunwayHook:
    """A hook on a connection other than the default, whose key the emulator refuses."""
    conn = set_connection(monkeypatch, server, password="sk-wrong-key-000000")
    monkeypatch.setenv("AIRFLOW_CONN_RUNWAY_TEAM_B", json.dumps(conn))
    return RunwayHook("runway_team_b")


@pytest.mark.parametrize(
    "call",
    [
        lambda hook: submit(hook),
        lambda hook: hook.get_task("any", RouteFamily.REVERSE),
        lambda hook: hook.get_task("any", RouteFamily.OFFICIAL),
        lambda hook: hook.cancel_task("any", RouteFamily.OFFICIAL),
    ],
    ids=["submit", "get_task", "get_task_official", "cancel_task"],
)
def test_a_refused_key_names_its_connection(monkeypatch, server, call):
    with pytest.raises(RunwayAuthenticationError) as caught:
        call(wrong_key_hook(monkeypatch, server))
    assert str(caught.value).endswith(WRONG_KEY_CONNECTION)
    assert str(caught.value).count("runway_team_b") == 1 and "sk-wrong-key" not in str(caught.value)
    assert caught.value.http_status == 401


@pytest.mark.asyncio
@pytest.mark.parametrize("cancel", [False, True], ids=["aget_task", "acancel_task"])
async def test_a_refused_key_names_its_connection_on_the_async_path(monkeypatch, server, cancel):
    hook = wrong_key_hook(monkeypatch, server)
    with pytest.raises(RunwayAuthenticationError) as caught:
        await (
            hook.acancel_task("any", RouteFamily.OFFICIAL)
            if cancel
            else hook.aget_task("any", RouteFamily.REVERSE)
        )
    assert str(caught.value).endswith(WRONG_KEY_CONNECTION)
    assert str(caught.value).count("runway_team_b") == 1 and caught.value.http_status == 401


def test_emulator_server_fixture_is_isolated(emulator: Emulator, server: EmulatorServer):
    assert server.emulator is emulator and emulator.requests == []


def test_get_task_retries_an_answer_slower_than_the_timeout(monkeypatch, server, emulator):
    set_connection(monkeypatch, server, password=TEST_API_KEY, extra={"timeout": 0.5})
    emulator.slow_seconds = 2
    runway_task_id = submit(RunwayHook(), options=job_options(not_found_seconds=0, feed_faults=["slow"]))
    task = RunwayHook(retry_backoff=0.01).get_task(runway_task_id, RouteFamily.REVERSE)
    assert task.visible
    assert next(r.get("fault") for r in emulator.requests if r["path"] == "/runway/feed") == "slow"


def test_quick_backoff_shortens_only_the_defaults(quick_backoff):
    """The fixture the slow-retry tests use: hooks built with the defaults back off 10 ms to 50 ms."""
    assert RunwayHook().retry_policy.backoff == 0.01 and RunwayHook().retry_policy.backoff_max == 0.05
    assert RunwayHook(retry_backoff=2.0).retry_policy.backoff == 2.0
