"""The media client against real local servers: the emulator's CDN and a forwarding proxy.

Name resolution is the one thing made up here (``socket.getaddrinfo`` answers for invented
names): a DNS server that changes its answer cannot be run on this machine otherwise.
"""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from runway_provider.exceptions import RunwayTransferError
from runway_provider.hooks.media import (
    MediaClient,
    MediaHostGuard,
    embedded_ipv4,
    media_extension,
    redirect_target,
)
from runway_provider.models import RunwayTask

pytestmark = pytest.mark.unit

# A public address with no route from here: a connection to it fails at once, and leaves the machine
# for nowhere.
PUBLIC_UNREACHABLE = "2606:2800:220:1:248:1893:25c8:1946"


def media_task(url: str) -> RunwayTask:
    return RunwayTask.from_dict(
        {"runway_task_id": "task-7", "status": "SUCCEEDED", "output_urls": [url], "route_family": "official"}
    )


def download(url: str, *allowed: str) -> Any:
    client = MediaClient(allowed_hosts=lambda: allowed, max_bytes=10_000_000, timeout=30)

    def no_fresh_url() -> RunwayTask:
        raise AssertionError("no URL here expires")

    return client.download(media_task(url), fresh_task=no_fresh_url)


def check(url: str, *allowed: str, runway_task_id: str = "task-7") -> None:
    """What the client checks before it connects to ``url`` without a proxy."""
    guard = MediaHostGuard(allowed_hosts=lambda: allowed, runway_task_id=runway_task_id)
    guard.check_url(url)
    parts = urlsplit(url)
    guard.addresses(parts.hostname or "", parts.port or 80)


class Resolver:
    """``socket.getaddrinfo`` with made-up answers for some names, the real one for the rest; counts
    the questions per name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: dict[str, int] = {}
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.asked[name] = self.asked.get(name, 0) + 1
        if name not in self.answers:
            return self._real(host, port, *args, **kwargs)
        turns = self.answers[name]
        addresses = turns[min(self.asked[name], len(turns)) - 1]
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, int(port or 0)),
            )
            for address in addresses
        ]


# -- the guard ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped
        ("64:ff9b::a00:7", "10.0.0.7"),  # NAT64
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4
        ("::a9fe:a9fe", "169.254.169.254"),  # IPv4-compatible
        ("64:ff9b::808:808", "8.8.8.8"),
        ("2606:2800:220:1::1", None),
        ("127.0.0.1", None),
    ],
)
def test_the_ipv4_address_an_ipv6_address_carries_is_unwrapped(address, carried):
    ip = ipaddress.ip_address(address)
    assert embedded_ipv4(ip) == (ipaddress.ip_address(carried) if carried else None)


@pytest.mark.parametrize(
    "address",
    ["::ffff:127.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:a00:7::1", "::7f00:1", "::a00:7"],
)
def test_a_private_ipv4_address_inside_ipv6_is_refused(address):
    # Python calls most of these global: judged by the IPv6 address alone, they would pass.
    with pytest.raises(RunwayTransferError, match="allowed_media_hosts") as caught:
        check(f"http://[{address}]/v.mp4")
    assert caught.value.runway_task_id == "task-7"


def test_an_address_inside_ipv6_is_judged_and_allowed_as_the_ipv4_address_it_carries():
    check("http://[64:ff9b::808:808]/v.mp4")  # NAT64 of a public address: public
    check("http://[64:ff9b::a00:7]/v.mp4", "10.0.0.0/8")  # allowed by its IPv4 network
    check("http://[::ffff:127.0.0.1]/v.mp4", "::ffff:0:0/96")  # or by its own
    with pytest.raises(RunwayTransferError):
        check("http://[64:ff9b::a00:7]/v.mp4", "192.168.0.0/16")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/v.mp4",
        "http://[::1]/v.mp4",
        "ftp://cdn/v",
    ],
)
def test_metadata_private_and_odd_urls_are_refused_without_a_request(url):
    with pytest.raises(RunwayTransferError):
        check(url)  # decided before any connection is opened


def test_a_refused_media_url_says_why_and_names_its_task():
    url = "ftp://cdn.example/" + "v" * 100
    with pytest.raises(RunwayTransferError) as caught:
        check(url)
    assert str(caught.value) == f"Runway task task-7 has no http(s) media URL ({url[:80]!r})."
    assert caught.value.runway_task_id == "task-7"
    with pytest.raises(RunwayTransferError) as caught:
        check("http://10.0.0.7/v.mp4", "192.168.0.0/16", "cdn.example")
    assert str(caught.value) == (
        "The media URL of Runway task task-7 points at 10.0.0.7 (10.0.0.7), a loopback, private, "
        "link-local or reserved address; list the host in the Runway connection's extra "
        "`allowed_media_hosts` if it is yours."
    )
    assert caught.value.runway_task_id == "task-7"
    check("http://10.0.0.7/v.mp4", "10.0.0.0/8")  # allowed: no error
    check("HTTP://10.0.0.7/v.mp4", "10.0.0.7")
    check("https://10.0.0.7/v.mp4", "10.0.0.7")
    check("http://LocalHost:8080/v.mp4", "localhost")  # names ignore case


def test_a_host_answering_one_public_and_one_private_address_is_refused(monkeypatch):
    # A DNS answer mixing a public and a private address: every address must pass.
    Resolver(monkeypatch, {"cdn.example": [["1.2.3.4", "10.0.0.5"]]})
    with pytest.raises(RunwayTransferError, match=r"points at cdn\.example \(10\.0\.0\.5\)"):
        check("https://cdn.example/v.mp4")


def test_a_redirect_never_downgrades_to_http():
    assert redirect_target("https://cdn.example/a.mp4", "/b.mp4", "t") == "https://cdn.example/b.mp4"
    assert redirect_target("http://cdn.example/a.mp4", "https://cdn.example/b.mp4", "t") == (
        "https://cdn.example/b.mp4"
    )
    with pytest.raises(RunwayTransferError) as caught:
        redirect_target("https://cdn.example/a.mp4", "http://cdn.example/b.mp4", "task-7")
    assert str(caught.value) == "The media host of Runway task task-7 redirected from https to http."
    assert caught.value.runway_task_id == "task-7"  # the failed Airflow task names its generation


def test_a_redirect_without_a_location_is_refused_naming_the_task():
    with pytest.raises(RunwayTransferError) as caught:
        redirect_target("https://cdn.example/a.mp4", "", "task-7")
    assert str(caught.value) == "The media host of Runway task task-7 redirected without a Location."
    assert caught.value.runway_task_id == "task-7"


@pytest.mark.parametrize(
    ("head", "extension"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00", ".mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00", ".mp4"),  # a MOV is stored as .mp4
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81", ".webm"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d", ".png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", ".jpg"),
        (b"RIFF\x24\x00\x00\x00WEBP", ".webp"),
        (b"RIFF\x24\x00\x00\x00WAVE", None),  # audio in the same container
        (b"\x89png\r\n\x1a\n\x00\x00\x00\x0d", None),
        (b"<html><body>", None),
        (b"\x00\x00\x00\x20FTYPisom\x00\x00", None),
    ],
    ids=["mp4", "mov", "webm", "png", "jpeg", "webp", "wav", "png-lowercase", "html", "FTYP"],
)
def test_the_first_bytes_decide_what_is_accepted_and_its_extension(head, extension):
    assert media_extension(head) == extension


# -- the checked address is the connected one --------------------------------------------------


def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_fetched_from_loopback(
    monkeypatch, server, emulator
):
    """The name answers a public address first and loopback after: the download connects to the
    address it checked (public, unreachable from here), never asks again, and the local server
    sees no request."""
    resolver = Resolver(monkeypatch, {"rebind.test": [[PUBLIC_UNREACHABLE], ["127.0.0.1"]]})
    with pytest.raises(RunwayTransferError, match="failed") as caught:
        download(f"http://rebind.test:{server.port}/_emulator/media/x.mp4")
    assert caught.value.runway_task_id == "task-7"
    assert emulator.media_requests == []
    assert resolver.asked["rebind.test"] == 1


def test_the_connection_to_the_checked_address_still_names_the_host(monkeypatch, server, emulator):
    Resolver(monkeypatch, {"media.test": [["127.0.0.1"]]})
    media = download(f"http://media.test:{server.port}/_emulator/media/x.mp4", "media.test")
    assert media.extension == ".mp4" and media.size > 0
    [request] = emulator.media_requests
    assert request["host"] == f"media.test:{server.port}" and request["authorization"] is None


def test_a_redirect_to_a_name_that_resolves_to_loopback_is_refused_before_connecting(
    monkeypatch, server, emulator
):
    # The first host is allowed by its name; the second is not, though it lives at the same address.
    Resolver(monkeypatch, {"cdn.test": [["127.0.0.1"]], "inside.test": [["127.0.0.1"]]})
    with pytest.raises(RunwayTransferError, match=r"points at inside\.test \(127\.0\.0\.1\)"):
        download(f"http://cdn.test:{server.port}/_emulator/media/goto-inside.test-x.mp4", "cdn.test")
    assert [r["name"] for r in emulator.media_requests] == ["goto-inside.test-x.mp4"]


# -- proxies -----------------------------------------------------------------------------------


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet test output


class LoopbackServer:
    """Serves ``self.server`` on a thread while in a ``with`` block."""

    server: http.server.ThreadingHTTPServer

    def __enter__(self) -> Any:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def use_proxy(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """``url`` as the environment's HTTP proxy, for every host."""
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


class ForwardingProxy(LoopbackServer):
    """A forwarding HTTP proxy on loopback that resolves every name to 127.0.0.1, as a real proxy
    would resolve it to wherever the name lives; records the URLs it was asked for."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        proxy = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                proxy.requested.append(self.path)
                target = urlsplit(self.path)
                upstream = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
                try:
                    upstream.request("GET", target.path, headers={"Host": target.netloc})
                    answer = upstream.getresponse()
                    body = answer.read()
                    self.send_response(answer.status)
                    for header in ("Content-Type", "Location"):
                        if answer.getheader(header):
                            self.send_header(header, answer.getheader(header))
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    upstream.close()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardingProxy]:
    with ForwardingProxy() as running:
        use_proxy(monkeypatch, running.url)
        yield running


def test_through_a_proxy_the_worker_does_not_resolve_the_media_host(monkeypatch, proxy, server, emulator):
    """The proxy resolves the name (the worker may have no DNS for it) and is trusted with where it
    connects; the worker checks only what the URL shows."""
    resolver = Resolver(monkeypatch, {})
    media = download(f"http://cdn.proxied.test:{server.port}/_emulator/media/x.mp4")
    assert media.extension == ".mp4"
    assert proxy.requested == [f"http://cdn.proxied.test:{server.port}/_emulator/media/x.mp4"]
    assert "cdn.proxied.test" not in resolver.asked
    assert [r["host"] for r in emulator.media_requests] == [f"cdn.proxied.test:{server.port}"]


@pytest.mark.parametrize(
    "host",
    ["10.0.0.7", "169.254.169.254", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]", "localhost", "a.localhost"],
)
def test_through_a_proxy_a_private_address_or_localhost_in_the_url_is_still_refused(proxy, host):
    with pytest.raises(RunwayTransferError, match="allowed_media_hosts"):
        download(f"http://{host}:8080/v.mp4")
    assert proxy.requested == []


def test_no_proxy_sends_the_media_host_around_the_proxy(monkeypatch, proxy, server, emulator):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    media = download(f"{server.base_url}/_emulator/media/x.mp4", "127.0.0.1")
    assert media.size > 0 and proxy.requested == []
    assert len(emulator.media_requests) == 1


def test_a_socks_proxy_is_refused_naming_what_to_do(monkeypatch, server, emulator):
    # Without this, the guarded connections would replace the SOCKS ones and bypass the proxy.
    use_proxy(monkeypatch, "socks5://user:secret@127.0.0.1:1080")
    with pytest.raises(RunwayTransferError, match="HTTP\\(S\\) proxies only") as caught:
        download(f"{server.base_url}/_emulator/media/x.mp4", "127.0.0.1")
    assert "secret" not in str(caught.value) and emulator.media_requests == []


def test_a_proxied_redirect_to_a_private_address_is_refused(proxy, server, emulator):
    url = f"http://cdn.proxied.test:{server.port}/_emulator/media/goto-10.0.0.7-x.mp4"
    with pytest.raises(RunwayTransferError, match=r"points at 10\.0\.0\.7"):
        download(url)
    assert proxy.requested == [url]


# -- TLS ---------------------------------------------------------------------------------------


def _certificate(subject: str, issuer_key: Any, public_key: Any, *, issuer: str, ca: bool) -> Any:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Python 3.13 verifies strictly (VERIFY_X509_STRICT): key identifiers, and a CA's key usage.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        # The name only, no IP: a certificate check against 127.0.0.1 would fail.
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class TlsMediaHost(LoopbackServer):
    """An HTTPS media host on loopback with a certificate for ``media.test`` only, from a CA of its
    own: ``/x.mp4`` is the sample video, ``/drip.mp4`` its signature then one byte every 0.2 s."""

    def __init__(self, folder: Any) -> None:
        import ssl

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("test media CA", ca_key, ca_key.public_key(), issuer="test media CA", ca=True)
        leaf = _certificate("media.test", ca_key, key.public_key(), issuer="test media CA", ca=False)
        self.ca_file, chain, key_file = folder / "ca.pem", folder / "host.pem", folder / "host.key"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain, key_file)
        sample = (
            Path(__file__).parents[2] / "runway_provider" / "testing" / "media" / "sample.mp4"
        ).read_bytes()

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                drip = self.path == "/drip.mp4"
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(300 if drip else len(sample)))
                self.end_headers()
                if not drip:
                    self.wfile.write(sample)
                    return
                self.wfile.write(sample[:12])
                try:
                    for _ in range(300 - 12):
                        time.sleep(0.2)
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                except OSError:
                    return  # the reader gave up

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]


@pytest.fixture
def tls_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsMediaHost]:
    with TlsMediaHost(tmp_path) as running:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(running.ca_file))
        yield running


def test_over_https_the_certificate_is_verified_for_the_name_not_the_checked_address(monkeypatch, tls_host):
    Resolver(monkeypatch, {"media.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
    media = download(f"https://media.test:{tls_host.port}/x.mp4", "media.test")
    assert media.extension == ".mp4" and media.size > 0
    # The same address under a name the certificate does not carry: refused by TLS.
    with pytest.raises(
        RunwayTransferError, match=r"Hostname mismatch, certificate is not valid for 'other\.test'"
    ):
        download(f"https://other.test:{tls_host.port}/x.mp4", "other.test")


def test_a_tls_host_that_drips_is_cut_at_the_deadline(monkeypatch, tls_host, tmp_path):
    """The deadline shuts the socket under TLS too; the temporary file goes with the download."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    Resolver(monkeypatch, {"media.test": [["127.0.0.1"]]})
    client = MediaClient(allowed_hosts=lambda: ("media.test",), max_bytes=10_000, timeout=1.5)
    started = time.monotonic()
    with pytest.raises(RunwayTransferError) as caught:
        client.download(media_task(f"https://media.test:{tls_host.port}/drip.mp4"), fresh_task=media_task)
    ended = time.monotonic() - started
    print(f"TLS drip: ended {ended:.2f} s after it started; timeout 1.5 s")
    assert str(caught.value) == "The download of Runway task task-7 took longer than download_timeout=1.5s."
    assert ended < 1.5 + 5  # generous; the drip itself would take 58 s
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "host.key", "host.pem"]
