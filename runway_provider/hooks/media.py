"""The media download: fetch a Runway result from its media host into a local temporary file.

Kept apart from the transfer, which decides what to store where: this module only knows how to
read one URL safely.

- **Guard**: a media host on a loopback, private, link-local, reserved or metadata address is
  refused unless the Runway connection's extra ``allowed_media_hosts`` lists it. The name is
  resolved once, every address it answers is checked, and the connection goes to those checked
  addresses (TLS still verifies the name and the ``Host`` header still carries it): a name that
  answers a public address to the check and a private one to the connect (DNS rebinding) cannot
  lead anywhere unchecked. IPv4 carried inside IPv6 (mapped, NAT64, 6to4, IPv4-compatible) is
  judged as the IPv4 address it carries.
- **Proxies**: ``HTTP(S)_PROXY`` and ``NO_PROXY`` apply as everywhere in ``requests``. Through a
  proxy the worker never learns the address the proxy connects to, so only what the URL shows is
  checked (an IP literal, a ``localhost`` name); the proxy is trusted with the egress rules.
- **Redirects** are followed by hand, a few at most, never from https down to http, each hop
  guarded like the first.
- **Deadline**: ``timeout`` seconds of wall clock for the whole download. At the deadline every
  socket of the download is shut, so a read blocked on a host that sends one byte at a time ends
  at once, whatever the chunk size.
- **Signature**: the first bytes must be a video (MP4, MOV, WebM) or an image (PNG, JPEG, WebP).
- The CometAPI key never travels to the media host: the session is a bare one.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util.connection import allowed_gai_family, create_connection

from runway_provider.exceptions import RunwayTransferError
from runway_provider.models import RunwayTask

# One read of the stream: memory stays flat whatever the size.
_READ_BYTES = 1024 * 1024
_ACCEPTED_CONTENT_TYPES = (
    *("video/", "image/png", "image/jpeg", "image/webp"),
    *("application/octet-stream", "binary/octet-stream"),
)
# Result URLs are signed and expire: on these answers the task is fetched again for a fresh URL.
_EXPIRED_URL_STATUSES = frozenset({401, 403, 404, 410})
_MAX_REDIRECTS = 3
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Enough bytes to tell an MP4/MOV (``ftyp`` at 4..8) or a WebM (EBML magic) from anything else.
_SIGNATURE_BYTES = 12
# Bounds of one connect and one idle read; the download's deadline bounds the whole.
_CONNECT_SECONDS = 10.0
_READ_SECONDS = 60.0
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MediaFile:
    """A downloaded, checked result in a local temporary file, which the caller removes.

    :param local_path: The temporary file.
    :param size: Its size in bytes.
    :param sha256: Its SHA-256, hex.
    :param content_type: The media host's content type, without parameters.
    :param extension: What the first bytes say it is: ``.mp4``, ``.webm``, ``.png``, ``.jpg``, ``.webp``.
    """

    local_path: str
    size: int
    sha256: str
    content_type: str
    extension: str


class MediaClient:
    """Download Runway results from their media hosts; see the module's description.

    :param allowed_hosts: Returns the connection's ``allowed_media_hosts``; called only when a host
        is not public, so a public URL needs no Runway connection.
    :param max_bytes: Largest file accepted.
    :param timeout: Seconds the whole download may take, redirects and a refreshed URL included.
    """

    def __init__(self, *, allowed_hosts: Callable[[], Sequence[str]], max_bytes: int, timeout: float) -> None:
        self.allowed_hosts = allowed_hosts
        self.max_bytes = max_bytes
        self.timeout = timeout

    def download(self, task: RunwayTask, *, fresh_task: Callable[[], RunwayTask]) -> MediaFile:
        """Stream the task's media to a local temporary file; refuse what is no video or image, too
        large or too slow. Nothing is left behind on failure.

        :param task: The finished Runway task.
        :param fresh_task: Fetches the task again, for a fresh URL when the media host refuses an
            expired one.
        """
        if not task.video_url:
            raise RunwayTransferError(
                f"Runway task {task.runway_task_id} has no video URL (status {task.status.value})",
                runway_task_id=task.runway_task_id,
            )
        guard = MediaHostGuard(allowed_hosts=self.allowed_hosts, runway_task_id=task.runway_task_id)
        with _Deadline(self.timeout) as deadline, requests.Session() as session:
            # A bare session: the CometAPI key must never travel to the media host.
            adapter = _GuardedAdapter(guard=guard, deadline=deadline)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            response = self._open(session, guard, deadline, task, fresh_task)
            try:
                content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if not content_type.startswith(_ACCEPTED_CONTENT_TYPES):
                    raise RunwayTransferError(
                        f"The media host answered {content_type or 'no content type'} for Runway task "
                        f"{task.runway_task_id}, not a video or an image.",
                        runway_task_id=task.runway_task_id,
                    )
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise RunwayTransferError(
                        f"The video of Runway task {task.runway_task_id} is {int(declared):,} bytes, over "
                        f"max_bytes={self.max_bytes:,}.",
                        runway_task_id=task.runway_task_id,
                    )
                return self._stream_to_temp(response, deadline, task.runway_task_id, content_type)
            finally:
                response.close()

    def _open(
        self,
        session: requests.Session,
        guard: MediaHostGuard,
        deadline: _Deadline,
        task: RunwayTask,
        fresh_task: Callable[[], RunwayTask],
    ) -> requests.Response:
        response = self._get(session, guard, deadline, task.video_url or "")
        if response.status_code in _EXPIRED_URL_STATUSES:
            response.close()
            fresh = fresh_task()
            log.info("The video URL of Runway task %s was refused; fetched a fresh one.", task.runway_task_id)
            response = self._get(session, guard, deadline, fresh.video_url or "")
        if response.status_code != 200:
            response.close()
            raise RunwayTransferError(
                f"Downloading the video of Runway task {task.runway_task_id} failed: HTTP {response.status_code}",
                runway_task_id=task.runway_task_id,
            )
        return response

    def _get(
        self, session: requests.Session, guard: MediaHostGuard, deadline: _Deadline, url: str
    ) -> requests.Response:
        """GET the media, following at most a few redirects, each checked before it is followed."""
        runway_task_id = guard.runway_task_id
        for _ in range(_MAX_REDIRECTS + 1):
            guard.check_url(url)
            if deadline.passed:
                raise self._too_slow(runway_task_id)
            try:
                response = session.get(
                    url,
                    stream=True,
                    timeout=(min(_CONNECT_SECONDS, deadline.left()), _READ_SECONDS),
                    allow_redirects=False,
                )
            except requests.RequestException as err:
                raise self._broken(
                    deadline,
                    runway_task_id,
                    f"Downloading the video of Runway task {runway_task_id} failed: {type(err).__name__}: {err}",
                ) from None
            if response.status_code not in _REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location", "")
            response.close()
            url = redirect_target(url, location, runway_task_id)
        raise RunwayTransferError(
            f"The media host of Runway task {runway_task_id} redirected more than {_MAX_REDIRECTS} times.",
            runway_task_id=runway_task_id,
        )

    def _stream_to_temp(
        self, response: requests.Response, deadline: _Deadline, runway_task_id: str, content_type: str
    ) -> MediaFile:
        digest, size, head = hashlib.sha256(), 0, b""
        handle, local_path = tempfile.mkstemp(prefix="runway-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as local:
                for chunk in response.iter_content(_READ_BYTES):
                    if len(head) < _SIGNATURE_BYTES:
                        # However the host splits the stream, judge the signature on enough bytes.
                        head += chunk[: _SIGNATURE_BYTES - len(head)]
                        if len(head) >= _SIGNATURE_BYTES:
                            _check_signature(head, runway_task_id)
                    if deadline.passed:
                        raise self._too_slow(runway_task_id)
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise RunwayTransferError(
                            f"The video of Runway task {runway_task_id} exceeds max_bytes={self.max_bytes:,}.",
                            runway_task_id=runway_task_id,
                        )
                    digest.update(chunk)
                    local.write(chunk)
            # A stream shut at the deadline may end like a whole one when no length was announced.
            if deadline.passed:
                raise self._too_slow(runway_task_id)
            if size == 0:
                raise RunwayTransferError(
                    f"The video of Runway task {runway_task_id} is empty.", runway_task_id=runway_task_id
                )
            # A file shorter than the signature window is judged on what it has.
            extension = _check_signature(head, runway_task_id)
        except requests.RequestException as err:
            os.unlink(local_path)
            raise self._broken(
                deadline,
                runway_task_id,
                f"The download of Runway task {runway_task_id} broke after {size:,} bytes: {err}",
            ) from None
        except BaseException:
            os.unlink(local_path)
            raise
        return MediaFile(
            local_path=local_path,
            size=size,
            sha256=digest.hexdigest(),
            content_type=content_type,
            extension=extension,
        )

    def _broken(self, deadline: _Deadline, runway_task_id: str, problem: str) -> RunwayTransferError:
        """What a transport error means: the deadline shut the socket, or the host failed."""
        if deadline.passed:
            return self._too_slow(runway_task_id)
        return RunwayTransferError(problem, runway_task_id=runway_task_id)

    def _too_slow(self, runway_task_id: str) -> RunwayTransferError:
        return RunwayTransferError(
            f"The download of Runway task {runway_task_id} took longer than download_timeout={self.timeout:g}s.",
            runway_task_id=runway_task_id,
        )


class MediaHostGuard:
    """Which media hosts one download may reach.

    :param allowed_hosts: Returns the host names, IPs and CIDRs allowed although not public; called
        only when a host is not public.
    :param runway_task_id: The Runway task whose media this is, named in every refusal.
    """

    def __init__(self, *, allowed_hosts: Callable[[], Sequence[str]], runway_task_id: str) -> None:
        self.allowed_hosts = allowed_hosts
        self.runway_task_id = runway_task_id

    def check_url(self, url: str) -> None:
        """Refuse a URL that is not http(s) or names no host.

        :param url: The media URL, or a redirect's target.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RunwayTransferError(
                f"Runway task {self.runway_task_id} has no http(s) media URL ({url[:80]!r}).",
                runway_task_id=self.runway_task_id,
            )

    def addresses(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` once and return its addresses, each checked: the ones to connect to.

        :param host: The media host's name or IP.
        :param port: Its port.
        """
        try:
            answers = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
        except OSError as err:
            raise RunwayTransferError(
                f"The media host {host} of Runway task {self.runway_task_id} cannot be resolved: {err}",
                runway_task_id=self.runway_task_id,
            ) from None
        # Every address must pass, not only the first: an answer may mix public and private ones.
        addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
        for address in addresses:
            self._check_address(host, address)
        return addresses

    def check_proxied(self, url: str) -> None:
        """Check what can be checked of a URL fetched through a proxy, which resolves it itself:
        an IP literal like any address, a ``localhost`` name as a loopback one.

        :param url: The media URL.
        """
        host = (urlsplit(url).hostname or "").lower()
        try:
            ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            if host == "localhost" or host.endswith(".localhost"):
                self._check_address(host, "127.0.0.1")
            return  # a name: the proxy resolves it and is trusted to keep to the egress rules
        self._check_address(host, host)

    def _check_address(self, host: str, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%")[0])
        carried = embedded_ipv4(ip) or ip
        if carried.is_global:
            return
        entries = self.allowed_hosts()
        if host.lower() in entries:
            return
        networks = [network for network in map(_network, entries) if network is not None]
        if any(candidate in network for network in networks for candidate in (ip, carried)):
            return
        raise RunwayTransferError(
            f"The media URL of Runway task {self.runway_task_id} points at {host} ({ip}), a loopback, "
            "private, link-local or reserved address; list the host in the Runway connection's extra "
            "`allowed_media_hosts` if it is yours.",
            runway_task_id=self.runway_task_id,
        )


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, which is where its packets end up: IPv4-mapped
    (``::ffff:a.b.c.d``), NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``) or IPv4-compatible
    (``::a.b.c.d``); None for an IPv4 address or an IPv6 address that carries none.

    :param ip: The address.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None  # a host name: matched by name


def redirect_target(current: str, location: str, runway_task_id: str) -> str:
    """Where a redirect leads; never from https down to http.

    :param current: The URL that answered the redirect.
    :param location: Its ``Location``.
    :param runway_task_id: The Runway task, named in a refusal.
    """
    if not location:
        raise RunwayTransferError(
            f"The media host of Runway task {runway_task_id} redirected without a Location.",
            runway_task_id=runway_task_id,
        )
    target = urljoin(current, location)
    if urlsplit(current).scheme == "https" and urlsplit(target).scheme != "https":
        raise RunwayTransferError(
            f"The media host of Runway task {runway_task_id} redirected from https to {urlsplit(target).scheme}.",
            runway_task_id=runway_task_id,
        )
    return target


def media_extension(head: bytes) -> str | None:
    """The file extension the first bytes stand for, or None when they are no video or image.

    :param head: The first bytes (12 suffice).
    """
    if head[4:8] == b"ftyp":
        return ".mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if head[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return None


def _check_signature(head: bytes, runway_task_id: str) -> str:
    extension = media_extension(head)
    if extension is None:
        raise RunwayTransferError(
            f"The download for Runway task {runway_task_id} does not start like a video (MP4, MOV, "
            "WebM) or an image (PNG, JPEG, WebP).",
            runway_task_id=runway_task_id,
        )
    return extension


# -- the transport under requests -------------------------------------------------------------


class _Deadline:
    """A moment of wall clock after which every socket it watches is shut.

    Shutting the socket is what makes it a deadline: a read timeout restarts with every byte, and
    one read of a chunk is many reads of the socket.

    :param seconds: Seconds from now.
    """

    def __init__(self, seconds: float) -> None:
        self._ends_at = time.monotonic() + seconds
        self._expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._timer.cancel()

    @property
    def passed(self) -> bool:
        return self._expired or time.monotonic() >= self._ends_at

    def left(self) -> float:
        return max(0.0, self._ends_at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` at the deadline, or now if it has passed."""
        with self._lock:
            if not self._expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # Already closed: nothing left to stop.
    with contextlib.suppress(OSError):
        # The plain socket's shutdown, also for a TLS socket: ssl.SSLSocket.shutdown drops its TLS
        # state under the reading thread, which must only see the stream end.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _GuardedAdapter(HTTPAdapter):
    """Gives every connection of one download its guard and its deadline.

    :param guard: The download's guard.
    :param deadline: The download's deadline.
    """

    def __init__(self, *, guard: MediaHostGuard, deadline: _Deadline) -> None:
        self._guard = guard
        self._deadline = deadline
        super().__init__(max_retries=0)

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        proxies: dict[str, str] | None = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        # The same choice of proxy requests makes (HTTP(S)_PROXY, NO_PROXY), just before it connects.
        proxy = select_proxy(request.url or "", proxies)
        if proxy and urlsplit(proxy).scheme.lower().startswith("socks"):
            # A SOCKS pool's connections are its own: the deadline could not shut them.
            raise RunwayTransferError(
                f"The media download of Runway task {self._guard.runway_task_id} would go through a SOCKS "
                "proxy; it supports HTTP(S) proxies only: set HTTPS_PROXY to one, or list the media host "
                "in NO_PROXY.",
                runway_task_id=self._guard.runway_task_id,
            )
        if proxy:
            self._guard.check_proxied(request.url or "")
        pool: HTTPConnectionPool = super().get_connection_with_tls_context(request, verify, proxies, cert)
        pool.ConnectionCls = _GuardedHTTPSConnection if pool.scheme == "https" else _GuardedHTTPConnection
        pool.conn_kw.update(guard=self._guard, deadline=self._deadline)
        return pool


class _GuardedHTTPConnection(HTTPConnection):
    """Connects to the addresses its guard checked, not to a second resolution of the name (TLS
    verification and the ``Host`` header keep the name); its socket is shut at the deadline."""

    def __init__(self, *args: Any, guard: MediaHostGuard, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        if self.proxy is not None:
            # This socket goes to the proxy, which resolves the media host: see check_proxied.
            return super()._new_conn()
        failure: OSError | None = None
        for address in self._guard.addresses(self.host, self.port):
            try:
                return create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as err:
                failure = err  # the next checked address may answer, as socket.create_connection does
        raise NewConnectionError(self, f"Failed to establish a new connection to {self.host}: {failure}")

    def connect(self) -> None:
        super().connect()
        if self.sock is not None:
            self._deadline.watch(self.sock)


class _GuardedHTTPSConnection(_GuardedHTTPConnection, HTTPSConnection):
    """The same over TLS, its certificate verified for the media host's name."""
