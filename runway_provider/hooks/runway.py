"""Hook for CometAPI's Runway routes: the connection's settings and the provider's API to the service.

Sync calls go through requests, async ones (triggers) through aiohttp; both live in
:mod:`runway_provider.hooks._http`. The transport, the reading of answers
(:mod:`runway_provider.protocol`) and the wait (:mod:`runway_provider.wait_decision`) are imported
where a call uses them: importing this module costs the settings and the route table only, since
DAG parsing pays for every top-level import.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

from runway_provider import __version__, compat, routes
from runway_provider.compat import BaseHook
from runway_provider.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_CONN_ID,
    DEFAULT_QUOTA_URL,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RUNWAY_VERSION,
)
from runway_provider.exceptions import (
    RunwayAuthenticationError,
    RunwayConfigurationError,
    RunwayError,
    RunwayInputError,
    RunwaySubmissionUncertainError,
    RunwayTransientError,
)
from runway_provider.models import CancelOutcome, OutputKind, RouteFamily, RunwayTask
from runway_provider.routes import Route

if TYPE_CHECKING:
    import aiohttp
    import requests
    from airflow.sdk import Connection


P = ParamSpec("P")

USER_AGENT = f"airflow-provider-runway/{__version__}"
_CONNECTION_TEST_TASK_ID = "airflow-connection-test"


@dataclass(frozen=True)
class RunwayConnectionSettings:
    """What the hook needs from a ``runway`` connection, read once and checked.

    :param base_url: CometAPI's base URL, without a trailing slash.
    :param api_key: The CometAPI key (never shown in ``repr``).
    :param runway_version: Sent as ``X-Runway-Version``.
    :param callback_url: Default webhook for the connection's tasks, if set.
    :param timeout: Seconds to wait for an answer to one request.
    :param allowed_media_hosts: Host names, IPs or CIDRs of loopback or private media hosts the
        transfer may download from (extra ``allowed_media_hosts``; public hosts need no entry).
    :param quota_url: CometAPI's balance query (extra ``quota_url``).
    :param quota_key: The key the balance query is sent with (extra ``quota_key``; never shown).
    :param min_remaining_quota: The balance floor (extra ``min_remaining_quota``): below it no create
        is sent. None: no balance is read.
    """

    base_url: str
    api_key: str = field(repr=False)
    runway_version: str
    callback_url: str | None
    timeout: float
    allowed_media_hosts: tuple[str, ...] = ()
    quota_url: str = DEFAULT_QUOTA_URL
    quota_key: str | None = field(default=None, repr=False)
    min_remaining_quota: float | None = None

    @classmethod
    def from_connection(cls, conn: Connection) -> RunwayConnectionSettings:
        # A key read from a secret file often ends in a newline: surrounding whitespace is not the key.
        api_key = (conn.password or "").strip()
        if not api_key:
            raise RunwayConfigurationError(
                f"Connection {conn.conn_id!r} has no API key: put the CometAPI key in its password field."
            )
        if any(character.isspace() or not character.isprintable() for character in api_key):
            raise RunwayConfigurationError(
                f"Connection {conn.conn_id!r}: the API key in the password field has whitespace or control "
                f"characters inside it ({len(api_key)} characters long); paste the key again."
            )
        if not api_key.isascii():
            # HTTP headers carry ASCII: a typographic quote or dash pasted into the key would fail every
            # request while it is being encoded, before a byte is sent. Said here, never mid-create.
            position = next(index for index, character in enumerate(api_key) if not character.isascii())
            raise RunwayConfigurationError(
                f"Connection {conn.conn_id!r}: the API key in the password field holds a character HTTP "
                f"headers cannot carry (a non-ASCII character at position {position + 1} of "
                f"{len(api_key)}, such as a typographic quote); paste the key again."
            )
        extra = conn.extra_dejson

        def extra_value(name: str) -> Any:
            value = extra.get(name, extra.get(f"extra__runway__{name}"))
            return None if value in (None, "") else value

        timeout = extra_value("timeout")
        try:
            timeout = DEFAULT_REQUEST_TIMEOUT if timeout is None else float(timeout)
        except (TypeError, ValueError):
            timeout = -1.0
        if not timeout > 0:
            raise RunwayConfigurationError(
                f"Connection {conn.conn_id!r}: extra `timeout` must be a positive number of seconds, "
                f"got {extra_value('timeout')!r}."
            )
        runway_version = str(extra_value("runway_version") or DEFAULT_RUNWAY_VERSION).strip()
        if not runway_version.isascii() or not runway_version.isprintable() or " " in runway_version:
            raise RunwayConfigurationError(
                f"Connection {conn.conn_id!r}: extra `runway_version` must be a date such as "
                f"{DEFAULT_RUNWAY_VERSION} (it is sent as the X-Runway-Version header), got {runway_version!r:.40}."
            )
        return cls(
            **_quota_settings(conn.conn_id, extra_value),
            base_url=_base_url(conn),
            api_key=api_key,
            runway_version=runway_version,
            callback_url=extra_value("callback_url"),
            timeout=timeout,
            allowed_media_hosts=_host_list(conn.conn_id, extra_value("allowed_media_hosts")),
        )

    @cached_property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "X-Runway-Version": self.runway_version,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }


def _submitter(route: Route[P]) -> Callable[Concatenate[RunwayHook, P], str]:
    """The hook's typed ``submit_<name>`` method of one route, with the builder's own signature."""

    def submit_route(self: RunwayHook, /, *args: P.args, **kwargs: P.kwargs) -> str:
        return self.submit(route, self.payload(route, *args, **kwargs))

    submit_route.__name__ = submit_route.__qualname__ = f"submit_{route.name}"
    # help(), IDEs and the docs show the builder's own arguments.
    built = inspect.signature(route.build)
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    submit_route.__signature__ = built.replace(  # type: ignore[attr-defined]
        parameters=[self_parameter, *built.parameters.values()], return_annotation="str"
    )
    submit_route.__doc__ = (
        f"``POST {route.path}``: check the arguments (see :func:`runway_provider.routes.{route.name}`), "
        "send the request once, and return the new Runway task id."
    )
    return submit_route


F = TypeVar("F", bound=Callable[..., Any])


def _names_connection(method: F) -> F:
    """A refused key names the connection that holds it, the one place a user can fix it: the
    protocol layer, which reads the answer, does not know which connection sent the request.

    :param method: A hook method, sync or async, that talks to CometAPI.
    """
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def named_async(self: RunwayHook, *args: Any, **kwargs: Any) -> Any:
            with _naming(self.runway_conn_id):
                return await method(self, *args, **kwargs)

        return cast("F", named_async)

    @functools.wraps(method)
    def named(self: RunwayHook, *args: Any, **kwargs: Any) -> Any:
        with _naming(self.runway_conn_id):
            return method(self, *args, **kwargs)

    return cast("F", named)


@contextmanager
def _naming(conn_id: str) -> Iterator[None]:
    """Re-raise a refused key with the connection to fix, once.

    :param conn_id: The hook's ``runway`` connection.
    """
    note = f"(connection {conn_id!r}: check the CometAPI key in its password field)"
    try:
        yield
    except RunwayAuthenticationError as err:
        if str(err).endswith(note):  # named already, by a call of this hook inside this one
            raise
        raise RunwayAuthenticationError(
            f"{err} {note}", http_status=err.http_status, code=err.code, runway_task_id=err.runway_task_id
        ) from None


class RunwayHook(BaseHook):
    """Talk to CometAPI's Runway routes.

    Polls are idempotent and retried on connection errors, timeouts, 429 (honouring
    ``Retry-After``) and 5xx with bounded exponential backoff and jitter. A create is not
    idempotent (CometAPI has no idempotency key): it is retried only where the request certainly
    did not reach the service (no byte of it was sent: connection refused, DNS, connect timeout,
    TLS handshake) or was refused before processing (429); any failure once a byte may have been
    sent raises :class:`~runway_provider.exceptions.RunwaySubmissionUncertainError`. What a create's
    outcome means for the money, and what the operators do about it, is decided in
    :mod:`runway_provider.spend`.

    Every create route of :mod:`runway_provider.routes` has a typed method here,
    ``submit_<route name>`` (``submit_generate``, ``submit_image_to_video``, ...), taking the
    route builder's arguments; :meth:`submit` sends any route with a body already built.

    :param runway_conn_id: The ``runway`` connection: password = CometAPI key, host = base URL,
        extra ``runway_version``, ``callback_url``, ``timeout``, and the balance floor's
        ``quota_url``, ``quota_key``, ``min_remaining_quota``.
    :param create_retries: Retries of a create that certainly was not processed.
    :param poll_retries: Retries of one status poll.
    :param retry_backoff: First backoff in seconds; doubles on each retry, with jitter.
    :param retry_backoff_max: Longest backoff in seconds.
    """

    conn_name_attr = "runway_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "runway"
    hook_name = "Runway (CometAPI)"

    def __init__(
        self,
        runway_conn_id: str = default_conn_name,
        *,
        create_retries: int = 3,
        poll_retries: int = 4,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 30.0,
    ) -> None:
        from runway_provider.hooks import _http

        super().__init__()
        self.runway_conn_id = runway_conn_id
        self.retry_policy = _http.RetryPolicy(create_retries, poll_retries, retry_backoff, retry_backoff_max)
        self._async_settings: RunwayConnectionSettings | None = None
        self._async_session: aiohttp.ClientSession | None = None

    @cached_property
    def settings(self) -> RunwayConnectionSettings:
        return _checked_settings(self.get_connection(self.runway_conn_id))

    def get_conn(self) -> requests.Session:
        return self.session

    @cached_property
    def session(self) -> requests.Session:
        from runway_provider.hooks import _http

        return _http.new_session(self.settings, self.retry_policy)

    # -- creates -----------------------------------------------------------------------------

    submit_generate = _submitter(routes.GENERATE)
    submit_reverse_video_to_video = _submitter(routes.REVERSE_VIDEO_TO_VIDEO)
    submit_act_one = _submitter(routes.ACT_ONE)
    submit_image_to_video = _submitter(routes.IMAGE_TO_VIDEO)
    submit_video_to_video = _submitter(routes.VIDEO_TO_VIDEO)
    submit_upscale_video = _submitter(routes.UPSCALE_VIDEO)
    submit_text_to_image = _submitter(routes.TEXT_TO_IMAGE)
    submit_character_performance = _submitter(routes.CHARACTER_PERFORMANCE)

    def payload(self, route: Route[P], /, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """Check the arguments of ``route`` and build its body; sends nothing.

        A reverse-format route without ``callback_url`` gets the connection's extra ``callback_url``.

        :param route: The create route.
        :param args: Its builder's arguments (keyword-only).
        :param kwargs: Its builder's arguments.
        """
        if route.needs_callback and kwargs.get("callback_url") in (None, ""):
            kwargs["callback_url"] = self._default_callback_url()
        return route.build(*args, **kwargs)

    @_names_connection
    def submit(self, route: Route[Any], payload: Mapping[str, Any]) -> str:
        """POST an already checked create request; return the new Runway task id.

        Raises :class:`~runway_provider.exceptions.RunwaySubmissionUncertainError` when the
        generation may exist without its id (see :func:`runway_provider.protocol.parse_submission`).

        :param route: The create route.
        :param payload: The body, as built by :meth:`payload`.
        """
        from runway_provider.hooks import _http
        from runway_provider.protocol import parse_submission

        status, body = _http.send_create(self.session, self.settings, route.path, payload)
        try:
            runway_task_id = parse_submission(body, status)
        except RunwaySubmissionUncertainError as err:
            raise RunwaySubmissionUncertainError(
                _http.uncertain_message(self.settings.base_url + route.path, err), route=route.path
            ) from None
        self.log.info("Submitted Runway generation: task %s", runway_task_id)
        return runway_task_id

    def get_remaining_quota(self) -> float:
        """The account's remaining quota, from the connection's ``quota_url`` queried with ``quota_key``.

        Raises a :class:`~runway_provider.exceptions.RunwayError` when it cannot be read; the key
        never appears in the error or the log.
        """
        from runway_provider.hooks import _http
        from runway_provider.protocol import parse_quota

        settings = self.settings
        if settings.quota_key is None:
            raise RunwayConfigurationError(
                f"Connection {self.runway_conn_id!r} has no extra `quota_key` to query the balance with."
            )
        status, body = _http.get_outside(
            settings.quota_url,
            {"key": settings.quota_key},
            timeout=settings.timeout,
            secret=settings.quota_key,
        )
        try:
            return parse_quota(body, status)
        except RunwayError as err:
            # The answer's words may quote the query, key included.
            raise RunwayTransientError(
                f"The balance query at {settings.quota_url} failed: {_http.describe(str(err), settings.quota_key)}"
            ) from None

    def _default_callback_url(self) -> str:
        """The connection's webhook; CometAPI's reverse routes refuse a create without one."""
        if self.settings.callback_url is None:
            raise RunwayInputError(
                "callback_url",
                "CometAPI requires a webhook URL; pass callback_url or set extra `callback_url` on "
                f"connection {self.runway_conn_id!r}",
            )
        return self.settings.callback_url

    # -- tasks -------------------------------------------------------------------------------

    @_names_connection
    def get_task(
        self,
        runway_task_id: str,
        route_family: RouteFamily,
        *,
        deadline: float | None = None,
    ) -> RunwayTask:
        """Fetch a task, normalized: ``POST /runway/feed`` or ``GET /runwayml/v1/tasks/{id}``.

        :param runway_task_id: The task.
        :param route_family: ``reverse`` (created on ``/runway/pro/*``) or ``official``
            (created on ``/runwayml/v1/*``).
        :param deadline: Epoch seconds the poll, its retries included, must not outlive (a wait's
            deadline); each request gets at least one second.
        """
        from runway_provider.hooks import _http

        family = route_family
        method, path, payload = routes.task_request(runway_task_id, family)

        def poll() -> RunwayTask:

            status, body = _http.send(
                self.session,
                self.settings,
                self.retry_policy,
                method,
                path,
                payload,
                runway_task_id=runway_task_id,
                deadline=deadline,
            )
            return _read_task(body, status, runway_task_id, family)

        try:
            return poll()
        except RunwayAuthenticationError:
            # As on the async path: the key may have been rotated during a long wait; read it once more.
            self.__dict__.pop("settings", None)
            self.__dict__.pop("session", None)
            return poll()

    def wait_for_task(
        self,
        runway_task_id: str,
        *,
        poll_interval: float | None = None,
        timeout: float,
        not_found_grace: float,
        submitted_at: float | None = None,
        route_family: RouteFamily,
        min_poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        output_kind: OutputKind | str = OutputKind.VIDEO,
    ) -> RunwayTask:
        """Poll until the task succeeds; raise the typed error of any other end. Holds the caller.

        :param runway_task_id: The task to wait on.
        :param poll_interval: Seconds between polls (a fixed schedule); None (the default) for the
            adaptive one (:mod:`runway_provider.pacing`).
        :param timeout: Seconds to wait at most, from now.
        :param not_found_grace: Seconds after submission during which ``task_not_exist`` is normal.
        :param submitted_at: When the task was submitted (epoch seconds); defaults to now.
        :param route_family: ``reverse`` or ``official`` (see :meth:`get_task`).
        :param min_poll_interval: Adaptive schedule: the shortest delay between polls.
        :param max_poll_interval: Adaptive schedule: the longest delay between polls.
        :param output_kind: ``video`` or ``image``, what the task makes: paces the adaptive schedule.
        """
        from runway_provider.pacing import PollSchedule
        from runway_provider.wait_decision import TaskWatch, wait

        schedule = PollSchedule.from_options(
            poll_interval=poll_interval,
            min_poll_interval=min_poll_interval,
            max_poll_interval=max_poll_interval,
            output=output_kind,
        )
        now = time.time()
        watch = TaskWatch.of(
            schedule,
            runway_task_id=runway_task_id,
            submitted_at=submitted_at or now,
            end_time=now + timeout,
            not_found_grace=not_found_grace,
            log=self.log,
        )
        return wait(watch, lambda: self.get_task(runway_task_id, route_family, deadline=watch.end_time))

    @_names_connection
    def cancel_task(self, runway_task_id: str, route_family: RouteFamily) -> CancelOutcome:
        """Ask the service to cancel a task: ``DELETE /runwayml/v1/tasks/{id}`` (official family).

        Whether to cancel is decided in :mod:`runway_provider.spend`; this only asks. Reverse-format
        tasks cannot be cancelled (no request is sent); a 404, 405 or 501 means the endpoint does
        not support it. Other failures raise the typed error of the answer.

        :param runway_task_id: The task.
        :param route_family: ``reverse`` or ``official`` (see :meth:`get_task`).
        """
        from runway_provider.hooks import _http
        from runway_provider.protocol import read_cancel_answer

        if route_family != RouteFamily.OFFICIAL:
            return CancelOutcome.NOT_CANCELLABLE
        path = routes.task_path(runway_task_id)
        status, body = _http.send(
            self.session,
            self.settings,
            self.retry_policy,
            "DELETE",
            path,
            None,
            runway_task_id=runway_task_id,
        )
        return read_cancel_answer(body, status, runway_task_id=runway_task_id)

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap authenticated call (a feed lookup of a made-up id) and say what happened."""
        probe = RunwayHook(self.runway_conn_id, poll_retries=0)
        try:
            probe.get_task(_CONNECTION_TEST_TASK_ID, RouteFamily.REVERSE)
        except RunwayAuthenticationError as err:
            # Not str(err): it names the made-up task id the probe asked about.
            return False, (
                f"CometAPI at {probe.settings.base_url} refused the API key (HTTP {err.http_status}). "
                "Enter a valid CometAPI key in the API key field."
            )
        except RunwayError as err:
            return False, str(err)
        return True, f"Connected to CometAPI at {probe.settings.base_url}; the API key was accepted."

    # -- async (triggers) --------------------------------------------------------------------

    @_names_connection
    async def aget_task(
        self,
        runway_task_id: str,
        route_family: RouteFamily,
        *,
        deadline: float | None = None,
    ) -> RunwayTask:
        """Async :meth:`get_task`. Uses the pooled session held by :meth:`async_client`, if any.

        :param runway_task_id: The task.
        :param route_family: ``reverse`` or ``official`` (see :meth:`get_task`).
        :param deadline: Epoch seconds the poll, its retries included, must not outlive (a wait's
            deadline); each request gets at least one second.
        """
        from runway_provider.hooks import _http

        if self._async_session is None:
            async with self.async_client():
                return await self.aget_task(runway_task_id, route_family, deadline=deadline)
        family = route_family
        method, path, payload = routes.task_request(runway_task_id, family)
        try:
            status, body = await self._asend(method, path, payload, deadline)
            return _read_task(body, status, runway_task_id, family)
        except RunwayAuthenticationError:
            # The key may have been rotated since this hook read the connection: read it once more.
            self._async_settings = None
            _http.SETTINGS_READS.forget(self.runway_conn_id)
            status, body = await self._asend(method, path, payload, deadline)
            return _read_task(body, status, runway_task_id, family)

    @_names_connection
    async def acancel_task(self, runway_task_id: str, route_family: RouteFamily) -> CancelOutcome:
        """Async :meth:`cancel_task`, for a trigger's ``on_kill``."""
        from runway_provider.protocol import read_cancel_answer

        if route_family != RouteFamily.OFFICIAL:
            return CancelOutcome.NOT_CANCELLABLE
        if self._async_session is None:
            async with self.async_client():
                return await self.acancel_task(runway_task_id, route_family)
        status, body = await self._asend("DELETE", routes.task_path(runway_task_id), None)
        return read_cancel_answer(body, status, runway_task_id=runway_task_id)

    def async_client(self) -> _AsyncClient:
        """``async with hook.async_client():`` shares the loop's pooled session for this host."""
        return _AsyncClient(self)

    async def _aget_settings(self) -> RunwayConnectionSettings:
        from runway_provider.hooks import _http

        if self._async_settings is None:
            self._async_settings = await _http.SETTINGS_READS.read(self.runway_conn_id, self._read_settings)
        return self._async_settings

    async def _read_settings(self) -> RunwayConnectionSettings:
        return _checked_settings(await compat.aget_connection(self, self.runway_conn_id))

    async def _asend(
        self, method: str, path: str, payload: Mapping[str, Any] | None, deadline: float | None = None
    ) -> tuple[int, Any]:
        from runway_provider.hooks import _http

        session = self._async_session
        if session is None:
            raise RuntimeError("RunwayHook's async calls need a session from async_client()")
        settings = await self._aget_settings()
        return await _http.asend(session, settings, self.retry_policy, method, path, payload, deadline)


class _AsyncClient:
    """``async with hook.async_client():`` holds a pooled session for the hook's async calls."""

    __slots__ = ("_base_url", "_hook")

    def __init__(self, hook: RunwayHook) -> None:
        self._hook = hook
        self._base_url = ""

    async def __aenter__(self) -> RunwayHook:
        from runway_provider.hooks import _http

        settings = await self._hook._aget_settings()
        self._base_url = settings.base_url
        self._hook._async_session = _http.SESSION_POOL.acquire(self._base_url)
        return self._hook

    async def __aexit__(self, *exc: object) -> None:
        from runway_provider.hooks import _http

        session, self._hook._async_session = self._hook._async_session, None
        if session is not None:
            await _http.SESSION_POOL.release(self._base_url, session)


def _read_task(body: Any, status: int, runway_task_id: str, family: RouteFamily) -> RunwayTask:
    from runway_provider.protocol import normalize_task

    # Runway answers 404 for a task it does not know (yet); the wrapper answers task_not_exist.
    not_found = frozenset({404}) if family == RouteFamily.OFFICIAL else frozenset()
    return normalize_task(
        body, status, runway_task_id=runway_task_id, not_found_statuses=not_found, route_family=family
    )


def _checked_settings(conn: Connection) -> RunwayConnectionSettings:
    settings = RunwayConnectionSettings.from_connection(conn)
    _mask(settings.api_key)
    if settings.quota_key is not None:
        _mask(settings.quota_key)
    return settings


def _quota_settings(conn_id: str, extra_value: Callable[[str], Any]) -> dict[str, Any]:
    """Extras ``quota_url``, ``quota_key`` and ``min_remaining_quota``, checked."""
    floor = extra_value("min_remaining_quota")
    if floor is not None:
        try:
            floor = float(floor)
        except (TypeError, ValueError):
            floor = -1.0
        if isinstance(extra_value("min_remaining_quota"), bool) or not 0 <= floor < float("inf"):
            raise RunwayConfigurationError(
                f"Connection {conn_id!r}: extra `min_remaining_quota` must be a number of quota units, 0 "
                f"or more, got {extra_value('min_remaining_quota')!r:.40}."
            )
    quota_key = extra_value("quota_key")
    if quota_key is not None:
        quota_key = str(quota_key).strip()
        if not quota_key.isascii() or not quota_key.isprintable() or " " in quota_key:
            # Not the value: it is a secret.
            raise RunwayConfigurationError(
                f"Connection {conn_id!r}: extra `quota_key` holds whitespace or characters a URL "
                f"cannot carry ({len(quota_key)} characters long); paste the key again."
            )
    if floor is not None and not quota_key:
        raise RunwayConfigurationError(
            f"Connection {conn_id!r}: extra `min_remaining_quota` needs extra `quota_key`, the key the "
            "balance is queried with (CometAPI advises a separate key with no quota of its own, since "
            "it travels in the URL)."
        )
    quota_url = str(extra_value("quota_url") or DEFAULT_QUOTA_URL).strip()
    parts = urlsplit(quota_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise RunwayConfigurationError(
            f"Connection {conn_id!r}: extra `quota_url` must be an http(s) URL without a query, such as "
            f"{DEFAULT_QUOTA_URL}, got {quota_url!r:.80}."
        )
    return {"quota_url": quota_url, "quota_key": quota_key, "min_remaining_quota": floor}


def _mask(secret: str) -> None:
    compat.mask_secret(secret)


def _host_list(conn_id: str, value: Any) -> tuple[str, ...]:
    """Extra ``allowed_media_hosts``: a JSON list, or names separated by commas."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise RunwayConfigurationError(
            f"Connection {conn_id!r}: extra `allowed_media_hosts` must be a list of host names, IPs or "
            f"CIDRs, got {value!r:.80}."
        )
    return tuple(item.strip().lower() for item in items if item.strip())


def _base_url(conn: Connection) -> str:
    host = (conn.host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        scheme = conn.schema if conn.schema in ("http", "https") else "https"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RunwayConfigurationError(
            f"Connection {conn.conn_id!r}: host must be CometAPI's base URL such as "
            f"{DEFAULT_BASE_URL}, got {conn.host!r}."
        )
    if conn.port and not parts.port:
        host = parts._replace(netloc=f"{parts.netloc}:{conn.port}").geturl()
    return host.rstrip("/")
