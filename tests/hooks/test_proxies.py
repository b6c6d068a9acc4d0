"""Both transports honour HTTP(S)_PROXY and NO_PROXY: submit, poll and cancel, blocking and deferred.

The emulator sits behind a real forward proxy (``tests/proxy.py``) under a made-up name that only
the proxy resolves, so a request that skips the proxy cannot reach it. Counts come from the
proxy's and the emulator's own records.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from runway_provider.exceptions import RunwaySubmissionUncertainError, RunwayTransientError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import CancelOutcome, RouteFamily, RunwayTaskStatus
from runway_provider.operators.runway import XCOM_RUNWAY_TASK, RunwayGenerateOperator
from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import (
    TEST_API_KEY,
    MemoryTaskStateStore,
    RecordingTaskInstance,
    TaskDeferred,
    job_options,
    make_trigger,
    set_connection,
)
from tests.proxy import ForwardProxy, self_signed_certificate

pytestmark = pytest.mark.unit

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


def only_through(
    monkeypatch: pytest.MonkeyPatch, server: EmulatorServer, proxy: ForwardProxy, base_url: str
) -> ForwardProxy:
    """``runway_default`` at ``base_url``, whose name only the proxy resolves; the proxy is set."""
    set_connection(monkeypatch, server, password=TEST_API_KEY, host=base_url, extra={"timeout": 5})
    use_proxy(monkeypatch, proxy.url)
    return proxy


@pytest.fixture
def proxy(server: EmulatorServer) -> Iterator[ForwardProxy]:
    with ForwardProxy({PROXY_ONLY_HOST: ("127.0.0.1", server.port)}) as running:
        yield running


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer, proxy: ForwardProxy) -> ForwardProxy:
    """The emulator over http, as a gateway inside a network would be: absolute-URI requests."""
    return only_through(monkeypatch, server, proxy, f"http://{PROXY_ONLY_HOST}:{server.port}")


@pytest.fixture
def tunnelled(
    monkeypatch: pytest.MonkeyPatch, server: EmulatorServer, proxy: ForwardProxy, tmp_path: Any
) -> ForwardProxy:
    """The emulator over https, as CometAPI is: both clients reach it through a CONNECT tunnel."""
    import aiohttp.connector

    certificate, key = self_signed_certificate(tmp_path, PROXY_ONLY_HOST)
    tls_port = proxy.serve_tls(("127.0.0.1", server.port), certificate, key)
    proxy.hosts[PROXY_ONLY_HOST] = ("127.0.0.1", tls_port)
    # Both clients trust the test certificate: requests reads REQUESTS_CA_BUNDLE on each request,
    # aiohttp builds its verifying context once, at import (from SSL_CERT_FILE).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))
    trusting = ssl.create_default_context(cafile=str(certificate))
    monkeypatch.setattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", trusting)
    return only_through(monkeypatch, server, proxy, f"https://{PROXY_ONLY_HOST}:{tls_port}")


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
    task = hook.wait_for_task(
        runway_task_id, route_family=RouteFamily.REVERSE, poll_interval=0.1, timeout=30, not_found_grace=10
    )
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


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_a_generate_operator_waits_through_the_proxy(proxied, emulator, deferrable):
    """The operator's whole path: its submission marker, the create, the wait (or the deferral,
    the trigger in an event loop and execute_complete)."""
    op = RunwayGenerateOperator(
        task_id="generate",
        prompt="A paper boat",
        image=IMAGE,
        poll_interval=0.1,
        wait_for_completion=True,
        deferrable=deferrable,
    )
    context: dict[str, Any] = {"ti": RecordingTaskInstance(), "task_state_store": MemoryTaskStateStore()}
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)
        [event] = asyncio.run(all_events(deferred.value.trigger))
        runway_task_id = op.execute_complete(context, event)
    else:
        runway_task_id = op.execute(context)
    assert context["ti"].xcom[XCOM_RUNWAY_TASK]["status"] == "SUCCEEDED"
    assert list(emulator.jobs) == [runway_task_id]
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
        lambda: hook.get_task("abc", RouteFamily.REVERSE),
        lambda: asyncio.run(RunwayHook(poll_retries=0).aget_task("abc", RouteFamily.REVERSE)),
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
    hook.get_task(runway_task_id, RouteFamily.REVERSE)
    asyncio.run(RunwayHook().aget_task(runway_task_id, RouteFamily.REVERSE))
    assert proxy.requests == [] and len(emulator.requests) == 3


def with_credentials(proxy: ForwardProxy) -> str:
    return proxy.url.replace("http://", "http://robot:p%40ss@")


EXPECTED_PROXY_AUTHORIZATION = "Basic " + base64.b64encode(b"robot:p@ss").decode()


def test_the_proxy_credentials_reach_the_proxy_from_both_halves(monkeypatch, server, proxied, emulator):
    use_proxy(monkeypatch, with_credentials(proxied))
    runway_task_id = RunwayHook().submit_generate(prompt="A paper boat", image=IMAGE)
    RunwayHook().get_task(runway_task_id, RouteFamily.REVERSE)
    asyncio.run(RunwayHook().aget_task(runway_task_id, RouteFamily.REVERSE))
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
    blocking = connects_of(lambda: poller.get_task("abc", RouteFamily.REVERSE))
    deferred = connects_of(lambda: asyncio.run(poller.aget_task("abc", RouteFamily.REVERSE)))
    assert blocking == deferred == 3
    assert {r["target"] for r in proxy.requests} == {"unknown.proxy-only.test:443"}
    assert {r["proxy_authorization"] for r in proxy.requests} == {EXPECTED_PROXY_AUTHORIZATION}
    assert emulator.requests == []


def test_an_https_service_behind_the_proxy_is_reached_through_tunnels_on_both_halves(tunnelled, emulator):
    emulator.scenario = Scenario(running_seconds=60)
    hook = RunwayHook(retry_backoff=0.01)
    runway_task_id = hook.submit_image_to_video(prompt_image=IMAGE)
    blocking = hook.get_task(runway_task_id, RouteFamily.OFFICIAL)
    deferred = asyncio.run(RunwayHook().aget_task(runway_task_id, RouteFamily.OFFICIAL))
    cancelled = asyncio.run(RunwayHook().acancel_task(runway_task_id, RouteFamily.OFFICIAL))
    assert blocking.runway_task_id == deferred.runway_task_id == runway_task_id
    assert cancelled is CancelOutcome.CANCELLED and emulator.jobs[runway_task_id].cancelled_at is not None
    assert [r["method"] for r in emulator.requests] == ["POST", "GET", "GET", "DELETE"]
    # Only the proxy resolves the name, and all it was asked for were tunnels to it (sockets are
    # kept alive in them, so there are fewer tunnels than requests).
    tunnel = f"{PROXY_ONLY_HOST}:{tunnelled.hosts[PROXY_ONLY_HOST][1]}"
    assert {(r["method"], r["target"]) for r in tunnelled.requests} == {("CONNECT", tunnel)}


def test_a_create_whose_answer_is_lost_inside_the_tunnel_is_uncertain_not_resent(tunnelled, emulator):
    hook = RunwayHook(create_retries=3, retry_backoff=0.01)
    with pytest.raises(RunwaySubmissionUncertainError, match="not sent again"):
        hook.submit_generate(
            prompt="A paper boat", image=IMAGE, options=job_options(create_faults=["reset_after_create"])
        )
    assert len(emulator.create_requests()) == 1 and len(emulator.jobs) == 1
    assert [r["method"] for r in tunnelled.requests] == ["CONNECT"]
