"""Both transports honour HTTP(S)_PROXY and NO_PROXY: submit, poll and cancel, blocking and deferred.

The emulator sits behind a real forward proxy (``tests/proxy.py``) under a made-up name that only
the proxy resolves, so a request that skips the proxy cannot reach it. Counts come from the
proxy's and the emulator's own records.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from runway_provider.exceptions import RunwaySubmissionUncertainError, RunwayTransientError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import CancelOutcome, RouteFamily, RunwayTaskStatus
from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import TEST_API_KEY, job_options, make_trigger, set_connection
from tests.proxy import ForwardProxy

IMAGE = "https://example.com/first.jpg"
# Reserved for testing (RFC 2606): no resolver knows it; the proxy maps it to the emulator.
PROXY_ONLY_HOST = "runway-emulator.proxy-only.test"
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def use_proxy(monkeypatch: pytest.MonkeyPatch, proxy_url: str, no_proxy: str | None = None) -> None:
    """The environment a worker or a triggerer would have: the proxy for both schemes."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("HTTPS_PROXY", proxy_url)
    if no_proxy is not None:
        monkeypatch.setenv("NO_PROXY", no_proxy)


@pytest.fixture
def proxy(server: EmulatorServer) -> Iterator[ForwardProxy]:
    with ForwardProxy({PROXY_ONLY_HOST: ("127.0.0.1", server.port)}) as running:
        yield running


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer, proxy: ForwardProxy) -> ForwardProxy:
    """``runway_default`` names the emulator by a name only the proxy resolves; the proxy is set."""
    set_connection(
        monkeypatch,
        server,
        password=TEST_API_KEY,
        host=f"http://{PROXY_ONLY_HOST}:{server.port}",
        extra={"timeout": 5},
    )
    use_proxy(monkeypatch, proxy.url)
    return proxy


def assert_every_request_went_through(proxy: ForwardProxy, emulator: Emulator) -> None:
    passed = [(r["method"], urlsplit(r["target"]).path) for r in proxy.requests]
    arrived = [(r["method"], r["path"]) for r in emulator.requests]
    assert passed and passed == arrived
    assert {r["host"] for r in proxy.requests} == {PROXY_ONLY_HOST}


async def all_events(trigger: RunwayTaskTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_a_blocking_wait_goes_through_the_proxy(proxied, emulator):
    hook = RunwayHook(retry_backoff=0.01)
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    task = hook.wait_for_task(runway_task_id, poll_interval=0.1, timeout=30, not_found_grace=10)
    assert task.status is RunwayTaskStatus.SUCCEEDED
    assert len(emulator.create_requests()) == 1
    assert_every_request_went_through(proxied, emulator)


def test_a_deferred_wait_goes_through_the_proxy(proxied, emulator):
    runway_task_id = RunwayHook().submit_generate(prompt="A paper boat", image=IMAGE)
    [event] = asyncio.run(all_events(make_trigger(runway_task_id)))
    assert event["status"] == "success", event["message"]
    polls = [r for r in proxied.requests if r["target"].endswith("/runway/feed")]
    assert len(polls) >= 1 and len(polls) == len(
        [r for r in emulator.requests if r["path"] == "/runway/feed"]
    )
    assert_every_request_went_through(proxied, emulator)


def test_a_cancel_goes_through_the_proxy_blocking_and_async(proxied, emulator):
    emulator.scenario = Scenario(running_seconds=60)
    hook = RunwayHook()
    blocking, deferred = (hook.submit_image_to_video(prompt_image=IMAGE) for _ in range(2))
    assert hook.cancel_task(blocking, RouteFamily.OFFICIAL) is CancelOutcome.CANCELLED
    assert asyncio.run(RunwayHook().acancel_task(deferred, RouteFamily.OFFICIAL)) is CancelOutcome.CANCELLED
    deletes = [r["target"].rsplit("/", 1)[1] for r in proxied.requests if r["method"] == "DELETE"]
    assert deletes == [blocking, deferred]
    assert all(emulator.jobs[i].cancelled_at is not None for i in deletes)
    assert_every_request_went_through(proxied, emulator)


@pytest.mark.parametrize("fault", ["reset_after_create", "502_after_create"])
def test_a_create_whose_answer_is_lost_behind_the_proxy_is_uncertain_not_resent(proxied, emulator, fault):
    hook = RunwayHook(create_retries=3, retry_backoff=0.01)
    with pytest.raises(RunwaySubmissionUncertainError, match="not sent again"):
        hook.submit_generate(prompt="A paper boat", image=IMAGE, options=job_options(create_faults=[fault]))
    assert len(emulator.create_requests()) == 1 and len(emulator.jobs) == 1
    assert [r["method"] for r in proxied.requests] == ["POST"]


def test_no_proxy_covering_the_host_skips_the_proxy_and_fails_at_once(proxied, emulator, monkeypatch):
    """Without the proxy the made-up name does not resolve: each call ends on its first error."""
    use_proxy(monkeypatch, proxied.url, no_proxy="localhost,.proxy-only.test")
    hook = RunwayHook(create_retries=0, poll_retries=0)
    with pytest.raises(RunwayTransientError, match="Did not send") as create:
        hook.submit_generate(prompt="A paper boat", image=IMAGE)
    assert not isinstance(create.value, RunwaySubmissionUncertainError)  # a failed lookup sends nothing
    failures = []
    for call in (
        lambda: hook.get_task("abc"),
        lambda: asyncio.run(RunwayHook(poll_retries=0).aget_task("abc")),
        lambda: hook.cancel_task("abc", RouteFamily.OFFICIAL),
        lambda: asyncio.run(RunwayHook(poll_retries=0).acancel_task("abc", RouteFamily.OFFICIAL)),
    ):
        with pytest.raises(RunwayTransientError, match="Could not reach") as caught:
            call()
        failures.append(str(caught.value))
    assert all(PROXY_ONLY_HOST in text for text in failures)
    assert proxied.requests == [] and emulator.requests == []


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8"])
def test_no_proxy_sends_both_halves_straight_to_the_host(monkeypatch, server, emulator, proxy, no_proxy):
    """A CIDR block too: the async half asks requests' own functions, so both halves agree."""
    set_connection(monkeypatch, server, password=TEST_API_KEY)
    use_proxy(monkeypatch, proxy.url, no_proxy=no_proxy)
    hook = RunwayHook()
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    hook.get_task(runway_task_id)
    asyncio.run(RunwayHook().aget_task(runway_task_id))
    assert proxy.requests == [] and len(emulator.requests) == 3


def with_credentials(proxy: ForwardProxy) -> str:
    return proxy.url.replace("http://", "http://robot:p%40ss@")


EXPECTED_PROXY_AUTHORIZATION = "Basic " + base64.b64encode(b"robot:p@ss").decode()


def test_the_proxy_credentials_reach_the_proxy_from_both_halves(monkeypatch, server, proxied, emulator):
    use_proxy(monkeypatch, with_credentials(proxied))
    runway_task_id = RunwayHook().submit_generate(prompt="A paper boat", image=IMAGE)
    RunwayHook().get_task(runway_task_id)
    asyncio.run(RunwayHook().aget_task(runway_task_id))
    assert [r["proxy_authorization"] for r in proxied.requests] == [EXPECTED_PROXY_AUTHORIZATION] * 3


def test_a_tunnel_the_proxy_refuses_sends_no_create_and_retries_polls_alike(
    monkeypatch, server, proxy, emulator
):
    """An https base URL goes through a CONNECT tunnel; the proxy refuses one to a name it does not know.

    The CONNECT is written by the create's own connection, before the request: the create was not
    sent, and is not reported as maybe created. Polls retry it by the one rule, on both halves.
    """
    set_connection(monkeypatch, server, password=TEST_API_KEY, host="https://unknown.proxy-only.test")
    use_proxy(monkeypatch, with_credentials(proxy))
    with pytest.raises(RunwayTransientError, match="Did not send") as create:
        RunwayHook(retry_backoff=0.01).submit_generate(prompt="A paper boat", image=IMAGE)
    assert not isinstance(create.value, RunwaySubmissionUncertainError)
    assert [r["method"] for r in proxy.requests] == ["CONNECT"]

    def connects_of(poll: Any) -> int:
        before = len(proxy.requests)
        with pytest.raises(RunwayTransientError, match="Could not reach"):
            poll()
        return len(proxy.requests) - before

    poller = RunwayHook(poll_retries=2, retry_backoff=0.01)
    blocking = connects_of(lambda: poller.get_task("abc"))
    deferred = connects_of(lambda: asyncio.run(poller.aget_task("abc")))
    assert blocking == deferred == 3
    assert {r["target"] for r in proxy.requests} == {"unknown.proxy-only.test:443"}
    assert {r["proxy_authorization"] for r in proxy.requests} == {EXPECTED_PROXY_AUTHORIZATION}
    assert emulator.requests == []
