"""A forward proxy on loopback for the tests: absolute-URI HTTP requests and CONNECT tunnels.

It resolves host names through its own table only, as a proxy with the only DNS that knows an
internal name would, and records every request that reaches it. One request per client
connection: the request goes upstream with ``Connection: close``, so the answer says so too and no
client reuses a socket the proxy is about to close. It can also put TLS in front of a plain HTTP
server (:meth:`ForwardProxy.serve_tls`), for an https origin to tunnel to.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
from pathlib import Path
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
        self._servers: list[asyncio.Server] = []
        # Clients keep sockets (and tunnels) open: stopping closes them, or the relays never end.
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ForwardProxy:
        started = threading.Event()

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self._servers.append(server)
            self.port = server.sockets[0].getsockname()[1]
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

    def serve_tls(self, upstream: tuple[str, int], certificate: Path, key: Path) -> int:
        """Serve TLS with ``certificate`` on a new loopback port, relaying the plain bytes to
        ``upstream``; return the port. A reset upstream is passed on as a reset.

        :param upstream: The plain HTTP server's ``(address, port)``.
        :param certificate: The server certificate (PEM).
        :param key: Its private key (PEM).
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate, key)

        async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            self._clients.add(client_writer)
            upstream_reader, upstream_writer = await asyncio.open_connection(*upstream)
            await asyncio.gather(
                _relay(client_reader, upstream_writer), _relay(upstream_reader, client_writer)
            )

        async def serve() -> int:
            server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=context)
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            for client in self._clients:
                client.transport.abort()
            relays = asyncio.all_tasks() - {asyncio.current_task()}
            await asyncio.gather(*relays, return_exceptions=True)
            for server in self._servers:
                await server.wait_closed()

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
        self._clients.add(client_writer)
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


def self_signed_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for ``host`` that is its own authority (a day long), and its key, as PEM files.

    :param folder: Where to write ``certificate.pem`` and ``key.pem``.
    :param host: The DNS name the certificate is for.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate_file, key_file = folder / "certificate.pem", folder / "key.pem"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certificate_file, key_file
