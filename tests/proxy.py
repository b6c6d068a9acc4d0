"""A forward proxy on loopback for the tests: absolute-URI HTTP requests and CONNECT tunnels.

It resolves host names through its own table only, as a proxy with the only DNS that knows an
internal name would, and records every request that reaches it. One request per client
connection: the request goes upstream with ``Connection: close``, so the answer says so too and no
client reuses a socket the proxy is about to close.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import urlsplit

_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
# Hop-by-hop headers a proxy does not pass on (RFC 9110, section 7.6.1).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"})


class ForwardProxy:
    """Serve a forward proxy on 127.0.0.1 in a thread, until :meth:`stop`.

    :param hosts: The names it resolves, each to a loopback ``(address, port)``; any other target
        is answered 502, as an unknown name is.
    """

    def __init__(self, hosts: dict[str, tuple[str, int]]) -> None:
        self.hosts = hosts
        # One dict per request that reached the proxy: method, target, host, proxy_authorization.
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        started = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="forward-proxy", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the forward proxy did not start within 10 s")
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            client_writer.close()
            return
        request_line, *header_lines = head[:-4].split(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        headers = [line.split(b":", 1) for line in header_lines]
        authorization = next(
            (
                value.strip().decode()
                for name, value in headers
                if name.strip().lower() == b"proxy-authorization"
            ),
            None,
        )
        host = target.rpartition(":")[0] if method == "CONNECT" else urlsplit(target).hostname or ""
        self.requests.append(
            {"method": method, "target": target, "host": host, "proxy_authorization": authorization}
        )
        upstream = self.hosts.get(host)
        if upstream is None:
            client_writer.write(_BAD_GATEWAY)
            await client_writer.drain()
            client_writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*upstream)
        if method == "CONNECT":
            client_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            parts = urlsplit(target)
            origin_form = parts.path + (f"?{parts.query}" if parts.query else "")
            kept = [b":".join(pair) for pair in headers if pair[0].strip().lower() not in _HOP_BY_HOP]
            upstream_writer.write(
                b"\r\n".join(
                    [f"{method} {origin_form} {version}".encode("latin-1"), *kept, b"Connection: close", b""]
                )
                + b"\r\n"
            )
        await asyncio.gather(
            _relay(client_reader, upstream_writer),
            _relay(upstream_reader, client_writer),
        )


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until the sending side closes; pass a reset on as a reset, a close as a close."""
    try:
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        writer.transport.abort()
        return
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()
    writer.close()
