"""The hook's transport: requests (sync) and aiohttp (async), their retries (one rule for both),
the proxy of the environment (the same for both), the session pool and the shared connection
reads. Answers leave here as ``(HTTP status, decoded body)``; what they mean is read in
:mod:`runway_provider.protocol`.

requests, urllib3, aiohttp and tenacity are imported where they are used: DAG files import the
operator and sensor modules, which import the hook, and DAG parsing pays for every top-level import.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import random
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from runway_provider.exceptions import (
    RunwayConfigurationError,
    RunwaySubmissionUncertainError,
    RunwayTransientError,
)
from runway_provider.protocol import (
    CREATE_RESENDABLE_STATUSES,
    decode_body,
    is_retryable_answer,
    raise_for_error,
)
from runway_provider.routes import FEED_PATH, OFFICIAL_TASKS_PATH

if TYPE_CHECKING:
    import aiohttp
    import requests

CONNECT_TIMEOUT = 10.0
# A Retry-After longer than this is not honoured as given: the wait loop polls again later anyway.
MAX_RETRY_AFTER = 60.0
# A task answer is a few kilobytes: anything much larger is not read into memory.
MAX_ANSWER_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024
_MIN_REQUEST_SECONDS = 1.0
_BEARER = re.compile(r"Bearer\s+\S+", re.IGNORECASE)


class RunwayConnectionSettings(Protocol):
    """What the transport reads of a connection's settings (``hooks.runway.RunwayConnectionSettings``)."""

    @property
    def base_url(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def headers(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one request is retried.

    :param create_retries: Retries of a create that certainly was not processed.
    :param poll_retries: Retries of one status poll.
    :param backoff: First backoff in seconds; doubles on each retry, with jitter.
    :param backoff_max: Longest backoff in seconds.
    """

    create_retries: int
    poll_retries: int
    backoff: float
    backoff_max: float

    def create_retry(self) -> Any:
        """urllib3's ``Retry`` for creates, which only urllib3 can classify: it sees whether the
        request left. A create is retried only where it certainly was not processed: a failed
        connect, or a 429 (``read=0``: never once it may have arrived)."""
        retries = self.create_retries
        return _bounded_retry_class()(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            other=0,
            allowed_methods=frozenset({"POST"}),
            status_forcelist=CREATE_RESENDABLE_STATUSES,
            backoff_factor=self.backoff,
            backoff_max=self.backoff_max,
            backoff_jitter=self.backoff,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
            redirect=0,
        )

    def retrying(self, deadline: float | None) -> dict[str, Any]:
        """tenacity's arguments for a poll or a cancel, the same on the sync and the async half.

        Retried is what :func:`_raise_if_retryable` and the transport errors raise as
        :class:`RunwayTransientError`; ``poll_retries`` retries at most, each after :meth:`delay`
        (or a longer ``Retry-After``), and none whose wait would end at or past ``deadline``.

        :param deadline: Epoch seconds no retry may wait past (a wait's deadline), or None.
        """
        from tenacity import retry_if_exception_type, stop_after_attempt, stop_before_delay
        from tenacity.stop import stop_base

        def wait(state: Any) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.delay(state.attempt_number, getattr(error, "retry_after", None))

        stop: stop_base = stop_after_attempt(self.poll_retries + 1)
        if deadline is not None:
            # Counted from now, when tenacity starts: no retry whose wait would end past the deadline.
            stop |= stop_before_delay(deadline - time.time())
        return {
            "stop": stop,
            "wait": wait,
            "retry": retry_if_exception_type(RunwayTransientError),
            "reraise": True,
        }

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter, or a longer Retry-After (at most ``MAX_RETRY_AFTER``)."""
        backoff = float(min(self.backoff_max, self.backoff * 2 ** (retry_number - 1)))
        backoff += random.uniform(0, self.backoff)
        return max(backoff, retry_after) if retry_after else backoff


# -- sync ------------------------------------------------------------------------------------


def new_session(settings: RunwayConnectionSettings, policy: RetryPolicy) -> requests.Session:
    """A requests session for one connection: creates mounted with urllib3's retries, polls and
    cancels without (:func:`send` retries them by the rule the async half uses).

    requests reads ``HTTP(S)_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` for every request (its
    ``trust_env``, on by default); :func:`environment_proxy` makes the async half read the same.
    """
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.headers.update(settings.headers)
    base = settings.base_url
    # requests picks the longest matching prefix: task lookups poll, everything else creates.
    create = _create_adapter_class()(max_retries=policy.create_retry())
    poll = HTTPAdapter(max_retries=0)
    session.mount(base + "/runway/pro/", create)
    session.mount(base + "/runwayml/v1/", create)
    session.mount(base + FEED_PATH, poll)
    session.mount(base + OFFICIAL_TASKS_PATH + "/", poll)
    return session


def send_create(
    session: requests.Session, settings: RunwayConnectionSettings, path: str, payload: Mapping[str, Any]
) -> tuple[int, Any]:
    """POST one create, retried by urllib3 only where it certainly was not processed; a create that
    may have arrived is never sent again."""
    import requests

    url = settings.base_url + path
    _SENDS.sent = False
    try:
        status, answer, _ = _exchange(session, "POST", url, payload, _request_seconds(settings, None))
    except requests.exceptions.RequestException as err:
        described = describe(err, settings.api_key)
        if _SENDS.sent:
            raise RunwaySubmissionUncertainError(uncertain_message(url, described), route=path) from None
        raise RunwayTransientError(f"Did not send the request to CometAPI at {url}: {described}") from None
    except ValueError as err:
        # A header or URL that HTTP cannot carry (UnicodeEncodeError) fails while the request is
        # encoded, before a byte leaves: not sent, and no retry can fix it.
        if _SENDS.sent:
            raise RunwaySubmissionUncertainError(uncertain_message(url, err), route=path) from None
        raise RunwayConfigurationError(
            f"Did not send the request to CometAPI at {url}: {describe(err, settings.api_key)}"
        ) from None
    return status, decode_body(_answer_text(answer))


def send(
    session: requests.Session,
    settings: RunwayConnectionSettings,
    policy: RetryPolicy,
    method: str,
    path: str,
    payload: Mapping[str, Any] | None,
    *,
    runway_task_id: str | None = None,
    deadline: float | None = None,
) -> tuple[int, Any]:
    """One poll or cancel with its retries, none past ``deadline``: :func:`asend`, blocking."""

    def attempt() -> tuple[int, Any]:
        return _send_once(session, settings, method, path, payload, runway_task_id, deadline)

    # Most polls succeed at once: only a failed first attempt pays for tenacity's machinery.
    try:
        return attempt()
    except RunwayTransientError as error:
        first_error: RunwayTransientError | None = error
    from tenacity import Retrying

    for retry in Retrying(**policy.retrying(deadline)):
        with retry:
            # The first attempt's failure is replayed so that tenacity counts and waits for it.
            failure, first_error = first_error, None
            if failure is not None:
                raise failure
            return attempt()
    raise AssertionError("unreachable: tenacity either returns or re-raises")


def _send_once(
    session: requests.Session,
    settings: RunwayConnectionSettings,
    method: str,
    path: str,
    payload: Mapping[str, Any] | None,
    runway_task_id: str | None,
    deadline: float | None,
) -> tuple[int, Any]:
    import requests

    url = settings.base_url + path
    try:
        status, answer, retry_after = _exchange(
            session, method, url, payload, _request_seconds(settings, deadline)
        )
    except requests.exceptions.RequestException as err:
        raise RunwayTransientError(
            f"Could not reach CometAPI at {url}: {describe(err, settings.api_key)}",
            runway_task_id=runway_task_id,
        ) from None
    body = decode_body(_answer_text(answer))
    _raise_if_retryable(status, body, retry_after, runway_task_id)
    return status, body


def _exchange(
    session: requests.Session, method: str, url: str, payload: Mapping[str, Any] | None, seconds: float
) -> tuple[int, bytearray, float | None]:
    """Send one request; return its status, its answer (read up to a cap) and its Retry-After."""
    with session.request(
        method,
        url,
        json=payload,
        timeout=(min(CONNECT_TIMEOUT, seconds), seconds),
        allow_redirects=False,
        stream=True,
    ) as response:
        answer = bytearray()
        for chunk in response.iter_content(_READ_CHUNK):
            answer += chunk
            if len(answer) > MAX_ANSWER_BYTES:
                break
        return response.status_code, answer, parse_retry_after(response.headers.get("Retry-After"))


def _raise_if_retryable(
    status: int, body: Any, retry_after: float | None, runway_task_id: str | None
) -> None:
    """The one retry rule of both halves (:func:`protocol.is_retryable_answer`): a retryable answer
    raises its :class:`RunwayTransientError`, carrying the Retry-After it came with."""
    if is_retryable_answer(status, body):
        try:
            raise_for_error(body, status, runway_task_id=runway_task_id)
        except RunwayTransientError as err:
            err.retry_after = retry_after
            raise


def get_outside(url: str, params: Mapping[str, str], *, timeout: float, secret: str) -> tuple[int, Any]:
    """One GET to a URL off the connection's base (CometAPI's quota query), without retries.

    Sent without the connection's headers: the API key is not for this host, and ``secret`` (which
    travels in the query string) is scrubbed from any error; errors name the URL without its query.

    :param url: The URL, without a query.
    :param params: Its query.
    :param timeout: Seconds for the whole answer.
    :param secret: The value in ``params`` that must never be shown.
    """
    import requests

    try:
        response = requests.get(
            url,
            params=params,
            headers={"Accept": "application/json"},
            timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
            allow_redirects=False,
        )
    except requests.exceptions.RequestException as err:
        raise RunwayTransientError(f"Could not reach {url}: {describe(err, secret)}") from None
    return response.status_code, decode_body(_answer_text(response.content[: MAX_ANSWER_BYTES + 1]))


# -- async -----------------------------------------------------------------------------------


async def asend(
    session: aiohttp.ClientSession,
    settings: RunwayConnectionSettings,
    policy: RetryPolicy,
    method: str,
    path: str,
    payload: Mapping[str, Any] | None,
    deadline: float | None = None,
) -> tuple[int, Any]:
    """One async request (polls and cancels) with its retries, none past ``deadline``."""
    proxy = SESSION_POOL.proxy(settings.base_url)

    async def attempt() -> tuple[int, Any]:
        return await _asend_once(session, settings, proxy, method, path, payload, deadline)

    # Most polls succeed at once: only a failed first attempt pays for tenacity's machinery.
    try:
        return await attempt()
    except RunwayTransientError as error:
        first_error: RunwayTransientError | None = error
    from tenacity import AsyncRetrying

    async for retry in AsyncRetrying(**policy.retrying(deadline)):
        with retry:
            # The first attempt's failure is replayed so that tenacity counts and waits for it.
            failure, first_error = first_error, None
            if failure is not None:
                raise failure
            return await attempt()
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def _asend_once(
    session: aiohttp.ClientSession,
    settings: RunwayConnectionSettings,
    proxy: Proxy,
    method: str,
    path: str,
    payload: Mapping[str, Any] | None,
    deadline: float | None,
) -> tuple[int, Any]:
    import aiohttp

    url = settings.base_url + path
    try:
        async with session.request(
            method,
            url,
            json=payload,
            headers={**settings.headers, **proxy.request_headers}
            if proxy.request_headers
            else settings.headers,
            timeout=_timeout(settings, deadline),
            allow_redirects=False,
            proxy=proxy.url,
            proxy_headers=proxy.connect_headers,
        ) as response:
            answer = bytearray()
            while len(answer) <= MAX_ANSWER_BYTES and (chunk := await response.content.read(_READ_CHUNK)):
                answer += chunk
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
    except (aiohttp.ClientError, asyncio.TimeoutError) as err:
        raise RunwayTransientError(
            f"Could not reach CometAPI at {url}: {describe(err, settings.api_key)}"
        ) from None
    body = decode_body(_answer_text(answer))
    _raise_if_retryable(status, body, retry_after, None)
    return status, body


def _request_seconds(settings: RunwayConnectionSettings, deadline: float | None) -> float:
    """One request's time: the connection's, ending by ``deadline`` yet giving a late request a second."""
    if deadline is None:
        return settings.timeout
    return max(min(settings.timeout, deadline - time.time()), _MIN_REQUEST_SECONDS)


def _timeout(settings: RunwayConnectionSettings, deadline: float | None) -> aiohttp.ClientTimeout:
    import aiohttp

    total = _request_seconds(settings, deadline)
    return aiohttp.ClientTimeout(total=total, sock_connect=min(CONNECT_TIMEOUT, total))


@dataclass(frozen=True)
class Proxy:
    """The forward proxy of the async half's requests to one base URL, or none (``url`` None).

    aiohttp sends ``proxy_headers`` on a CONNECT only: the credentials the proxy URL carried go
    there for an https base URL (a tunnel), and on each request for an http one.

    :param url: The proxy's URL, without credentials (they would show in errors).
    :param connect_headers: ``Proxy-Authorization`` of a tunnel, or None.
    :param request_headers: ``Proxy-Authorization`` of a request sent to the proxy, or None.
    """

    url: str | None = None
    connect_headers: Mapping[str, str] | None = None
    request_headers: Mapping[str, str] | None = None


def environment_proxy(base_url: str) -> Proxy:
    """The proxy requests uses for ``base_url``: ``HTTPS_PROXY`` / ``HTTP_PROXY`` by scheme, else
    ``ALL_PROXY``, none where ``NO_PROXY`` covers the host.

    The sync half's own functions decide, so that both halves always agree (``NO_PROXY`` CIDR
    blocks included, which the standard library's ``proxy_bypass`` ignores). Not aiohttp's
    ``trust_env``: it would read the environment and ``~/.netrc`` in a thread on every request, and
    a ``.netrc`` entry for CometAPI's host would collide with the ``Authorization`` header. Called
    once per pooled session; it reads environment variables only (on Linux), no file or socket.
    """
    from requests.utils import get_auth_from_url, get_environ_proxies, select_proxy

    found = select_proxy(base_url, get_environ_proxies(base_url))
    if not found:
        return Proxy()
    if "://" not in found:
        found = f"http://{found}"  # as requests reads a proxy given without a scheme
    user, password = get_auth_from_url(found)
    parts = urlsplit(found)
    url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    if not user:
        return Proxy(url)
    # Latin-1, as requests encodes them; aiohttp's BasicAuth for proxies is deprecated.
    credentials = base64.b64encode(f"{user}:{password}".encode("latin-1")).decode("ascii")
    authorization = {"Proxy-Authorization": f"Basic {credentials}"}
    if base_url.startswith("https:"):
        return Proxy(url, connect_headers=authorization)
    return Proxy(url, request_headers=authorization)


class _SessionPool:
    """One aiohttp session per event loop and CometAPI host, shared by every trigger in the loop.

    A triggerer runs thousands of triggers in one loop: sharing the session shares the keep-alive
    sockets (and TLS handshakes) between them, at most ``limit_per_host`` of them. The session
    closes when its last user leaves.
    """

    def __init__(self, limit_per_host: int = 100) -> None:
        self.limit_per_host = limit_per_host
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Lease]] = (
            weakref.WeakKeyDictionary()
        )

    def acquire(self, base_url: str) -> aiohttp.ClientSession:
        import aiohttp

        leases = self._sessions.setdefault(asyncio.get_running_loop(), {})
        lease = leases.get(base_url)
        if lease is None or lease.session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.limit_per_host)
            # No cookie jar: one session serves every connection (and key) to this host.
            session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
            if hasattr(session, "_retry_connection"):
                # Recent aiohttp sends a GET or a DELETE again at once when its connection drops,
                # outside the budget and the backoff: RetryPolicy.retrying is the only retry rule.
                session._retry_connection = False
            # Resolved once per session: every request of the session goes to the same host.
            lease = leases[base_url] = _Lease(session, environment_proxy(base_url))
        lease.users += 1
        return lease.session

    def proxy(self, base_url: str) -> Proxy:
        """The proxy of this loop's session for ``base_url``, resolved when the session was made."""
        lease = self._sessions.get(asyncio.get_running_loop(), {}).get(base_url)
        return environment_proxy(base_url) if lease is None else lease.proxy

    async def release(self, base_url: str, session: aiohttp.ClientSession) -> None:
        leases = self._sessions.get(asyncio.get_running_loop(), {})
        lease = leases.get(base_url)
        if lease is None or lease.session is not session:
            await session.close()
            return
        lease.users -= 1
        if lease.users == 0:
            del leases[base_url]
            await session.close()


@dataclass
class _Lease:
    session: aiohttp.ClientSession
    proxy: Proxy
    users: int = 0


class _SettingsReads:
    """Connection reads shared by the hooks of one event loop for a few seconds.

    10,000 tasks deferred together would otherwise read the same connection 10,000 times at once
    (each read goes through a thread); one read serves them all. A 401 forgets it.
    """

    ttl = 30.0

    def __init__(self) -> None:
        self._reads: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[Any]]]
        ] = weakref.WeakKeyDictionary()

    async def read(self, runway_conn_id: str, read: Callable[[], Awaitable[RunwayConnectionSettings]]) -> Any:
        loop = asyncio.get_running_loop()
        reads = self._reads.setdefault(loop, {})
        cached = reads.get(runway_conn_id)
        if cached is None or cached[0] < time.monotonic():
            # The read runs in its own task: a caller cancelled while waiting (its trigger killed)
            # stops waiting, the read goes on for the others; a read that fails leaves the cache.
            future = asyncio.ensure_future(read())
            cached = reads[runway_conn_id] = (time.monotonic() + self.ttl, future)
            future.add_done_callback(lambda done: self._evict_failed(reads, runway_conn_id, done))
        return await asyncio.shield(cached[1])

    @staticmethod
    def _evict_failed(
        reads: dict[str, tuple[float, asyncio.Future[Any]]], runway_conn_id: str, read: asyncio.Future[Any]
    ) -> None:
        failed = read.cancelled() or read.exception() is not None
        if failed and reads.get(runway_conn_id, (0.0, None))[1] is read:
            del reads[runway_conn_id]

    def forget(self, runway_conn_id: str) -> None:
        self._reads.get(asyncio.get_running_loop(), {}).pop(runway_conn_id, None)


SETTINGS_READS = _SettingsReads()
SESSION_POOL = _SessionPool()


@cache
def _bounded_retry_class() -> type:
    from urllib3.util.retry import Retry

    class BoundedRetry(Retry):
        def get_retry_after(self, response: Any) -> float | None:
            retry_after = super().get_retry_after(response)
            return None if retry_after is None else min(retry_after, MAX_RETRY_AFTER)

    return BoundedRetry


class _SendTracker(threading.local):
    """Whether the current request attempt of this thread has started sending bytes.

    urllib3 raises the same exception types (``SSLError``, ``ProtocolError``) before and after a
    request leaves, so the create adapter's connections mark the moment instead: everything up to
    and including the TCP connect and the TLS handshake happens with ``sent`` False.
    """

    sent = False


_SENDS = _SendTracker()


@cache
def _create_adapter_class() -> type:
    """A requests adapter whose connections record in ``_SENDS`` when they start sending."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Marking:
        sock: Any

        def connect(self) -> None:
            # A new connection is a new attempt: an earlier attempt on another socket was answered.
            _SENDS.sent = False
            try:
                super().connect()  # type: ignore[misc]
            finally:
                # Through an HTTPS proxy, connecting sends the proxy's CONNECT with send(): the
                # tunnel, refused or not, is not the request, which has not left yet.
                _SENDS.sent = False

        def send(self, data: Any) -> None:
            if self.sock is None:
                self.connect()
            _SENDS.sent = True
            super().send(data)  # type: ignore[misc]

    class MarkingHTTPConnection(Marking, HTTPConnection):
        pass

    class MarkingHTTPSConnection(Marking, HTTPSConnection):
        pass

    class MarkingHTTPPool(HTTPConnectionPool):
        ConnectionCls = MarkingHTTPConnection

    class MarkingHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = MarkingHTTPSConnection

    pools = {"http": MarkingHTTPPool, "https": MarkingHTTPSPool}

    class CreateAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(*args, **kwargs)
            manager.pool_classes_by_scheme = pools
            return manager

    return CreateAdapter


def uncertain_message(url: str, err: object) -> str:
    """What a create whose answer was lost means, for the error a user reads."""
    return (
        f"The create request to {url} may have reached CometAPI but no usable answer came back "
        f"({describe(err)}). CometAPI may have created, and will bill, the generation. It was not "
        "sent again because CometAPI has no idempotency key."
    )


def describe(err: object, secret: str | None = None) -> str:
    """One line about a transport error, without the key: some errors quote request headers."""
    text = (
        f"{type(err).__name__}: {str(err) or type(err).__name__}"
        if isinstance(err, BaseException)
        else str(err)
    )
    text = _BEARER.sub("Bearer ***", text)
    if secret:
        for shown in (secret, repr(secret)[1:-1]):
            text = text.replace(shown, "***")
    return text[:300]


def _answer_text(answer: bytes | bytearray) -> str:
    """An answer's text: JSON is UTF-8; a stray byte must not end a wait, so it is replaced."""
    if len(answer) > MAX_ANSWER_BYTES:
        return f"<an answer larger than {MAX_ANSWER_BYTES:,} bytes, not read>"
    return answer.decode("utf-8", errors="replace")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), at most a minute."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
