"""The hook's transport: requests (sync) and aiohttp (async), their retries, the session pool and
the shared connection reads. Answers leave here as ``(HTTP status, decoded body)``; what they mean
is read in :mod:`runway_provider.protocol`.

requests, urllib3, aiohttp and tenacity are imported where they are used: DAG files import the
operator and sensor modules, which import the hook, and DAG parsing pays for every top-level import.
"""

from __future__ import annotations

import asyncio
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

from runway_provider.exceptions import (
    RunwayConfigurationError,
    RunwaySubmissionUncertainError,
    RunwayTransientError,
)
from runway_provider.protocol import (
    CREATE_RESENDABLE_STATUSES,
    RETRYABLE_HTTP_STATUSES,
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

    def urllib3_retry(self, *, create: bool) -> Any:
        """urllib3's ``Retry`` for the sync half: polls retry the retryable statuses and read errors;
        creates only what certainly was not processed (``read=0``: never once it may have arrived)."""
        retries = self.create_retries if create else self.poll_retries
        return _bounded_retry_class()(
            total=retries,
            connect=retries,
            read=0 if create else retries,
            status=retries,
            other=0,
            allowed_methods=frozenset({"GET", "POST", "DELETE"}),
            status_forcelist=CREATE_RESENDABLE_STATUSES if create else RETRYABLE_HTTP_STATUSES,
            backoff_factor=self.backoff,
            backoff_max=self.backoff_max,
            backoff_jitter=self.backoff,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
            redirect=0,
        )

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter (as urllib3 does for the sync half), or Retry-After."""
        backoff = float(min(self.backoff_max, self.backoff * 2 ** (retry_number - 1)))
        backoff += random.uniform(0, self.backoff)
        return max(backoff, retry_after) if retry_after else backoff


# -- sync ------------------------------------------------------------------------------------


def new_session(settings: RunwayConnectionSettings, policy: RetryPolicy) -> requests.Session:
    """A requests session for one connection: creates and polls mounted with their own retries."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.headers.update(settings.headers)
    base = settings.base_url
    # requests picks the longest matching prefix: task lookups poll, everything else creates.
    create = _create_adapter_class()(max_retries=policy.urllib3_retry(create=True))
    poll = HTTPAdapter(max_retries=policy.urllib3_retry(create=False))
    session.mount(base + "/runway/pro/", create)
    session.mount(base + "/runwayml/v1/", create)
    session.mount(base + FEED_PATH, poll)
    session.mount(base + OFFICIAL_TASKS_PATH + "/", poll)
    return session


def send(
    session: requests.Session,
    settings: RunwayConnectionSettings,
    method: str,
    path: str,
    payload: Mapping[str, Any] | None,
    *,
    create: bool = False,
    runway_task_id: str | None = None,
) -> tuple[int, Any]:
    """One request with its retries; a create that may have arrived is never sent again."""
    import requests

    url = settings.base_url + path
    _SENDS.sent = False
    try:
        with session.request(
            method,
            url,
            json=payload,
            timeout=(min(CONNECT_TIMEOUT, settings.timeout), settings.timeout),
            allow_redirects=False,
            stream=True,
        ) as response:
            answer = bytearray()
            for chunk in response.iter_content(_READ_CHUNK):
                answer += chunk
                if len(answer) > MAX_ANSWER_BYTES:
                    break
    except requests.exceptions.RequestException as err:
        described = describe(err, settings.api_key)
        if create and _SENDS.sent:
            raise RunwaySubmissionUncertainError(uncertain_message(url, described), route=path) from None
        what = "Did not send the request to" if create else "Could not reach"
        raise RunwayTransientError(
            f"{what} CometAPI at {url}: {described}", runway_task_id=runway_task_id
        ) from None
    except ValueError as err:
        # A header or URL that HTTP cannot carry (UnicodeEncodeError) fails while the request is
        # encoded, before a byte leaves: not sent, and no retry can fix it.
        if create and _SENDS.sent:
            raise RunwaySubmissionUncertainError(uncertain_message(url, err), route=path) from None
        raise RunwayConfigurationError(
            f"Did not send the request to CometAPI at {url}: {describe(err, settings.api_key)}"
        ) from None
    return response.status_code, decode_body(_answer_text(answer))


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
    # Most polls succeed at once: only a failed first attempt pays for tenacity's machinery.
    try:
        return await _asend_once(session, settings, method, path, payload, deadline)
    except RunwayTransientError as first_error:
        first_wait = policy.delay(1, first_error.retry_after)
        if policy.poll_retries < 1 or (deadline is not None and time.time() + first_wait >= deadline):
            raise
    from tenacity import AsyncRetrying, retry_if_exception_type

    def wait(state: Any) -> float:
        error = state.outcome.exception() if state.outcome else None
        return policy.delay(state.attempt_number + 1, getattr(error, "retry_after", None))

    await asyncio.sleep(first_wait)
    async for attempt in AsyncRetrying(
        # No retry past the wait's deadline: the wait decides what happens then.
        stop=lambda state: (
            state.attempt_number >= policy.poll_retries or (deadline is not None and time.time() >= deadline)
        ),
        wait=wait,
        retry=retry_if_exception_type(RunwayTransientError),
        reraise=True,
    ):
        with attempt:
            return await _asend_once(session, settings, method, path, payload, deadline)
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def _asend_once(
    session: aiohttp.ClientSession,
    settings: RunwayConnectionSettings,
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
            headers=settings.headers,
            timeout=_timeout(settings, deadline),
            allow_redirects=False,
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
    # The one retry rule (protocol.is_retryable_answer), as urllib3 applies it on the sync side.
    if is_retryable_answer(status, body):
        try:
            raise_for_error(body, status)
        except RunwayTransientError as err:
            err.retry_after = retry_after
            raise
    return status, body


def _timeout(settings: RunwayConnectionSettings, deadline: float | None) -> aiohttp.ClientTimeout:
    """The request's timeout: the connection's, ending by ``deadline`` yet giving a late request a second."""
    import aiohttp

    total = settings.timeout
    if deadline is not None:
        total = max(min(total, deadline - time.time()), _MIN_REQUEST_SECONDS)
    return aiohttp.ClientTimeout(total=total, sock_connect=min(CONNECT_TIMEOUT, total))


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
            lease = leases[base_url] = _Lease(session)
        lease.users += 1
        return lease.session

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
            super().connect()  # type: ignore[misc]

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
