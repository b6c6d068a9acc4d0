"""The media client against real local servers: the emulator's CDN and a forwarding proxy.

Name resolution is the one thing made up here (``socket.getaddrinfo`` answers for invented
names): a DNS server that changes its answer cannot be run on this machine otherwise.
"""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
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

# A public address with no route from here: a connection to it fails at once, and leaves the machine
# for nowhere.
PUBLIC_UNREACHABLE = "2606:2800:220:1:248:1893:25c8:1946"


def media_task(url: str) -> RunwayTask:
    return RunwayTask.from_dict({"runway_task_id": "task-7", "status": "SUCCEEDED", "output_urls": [url]})


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


class ForwardingProxy:
    """A forwarding HTTP proxy on loopback that resolves every name to 127.0.0.1, as a real proxy
    would resolve it to wherever the name lives; records the URLs it was asked for."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
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

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ForwardingProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardingProxy]:
    with ForwardingProxy() as running:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, running.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
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


def test_a_proxied_redirect_to_a_private_address_is_refused(proxy, server, emulator):
    url = f"http://cdn.proxied.test:{server.port}/_emulator/media/goto-10.0.0.7-x.mp4"
    with pytest.raises(RunwayTransferError, match=r"points at 10\.0\.0\.7"):
        download(url)
    assert proxy.requested == [url]


def test_parsing_a_dag_with_the_transfer_loads_no_http_client():
    """DAG files import the transfer: the media client, and requests with it, load in ``execute``."""
    code = (
        "import sys, runway_provider.transfers.runway_to_object_storage;"
        "print(sorted(m for m in ('aiohttp', 'requests', 'runway_provider.hooks.media') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
