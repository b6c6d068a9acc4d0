"""What waiting costs in a triggerer: N waiters in one event loop, three contenders in turn.

    python benchmarks/triggerer.py --triggers 1000 --interval 2 --duration 20 [--tls]

The emulator runs in its own process (its CPU is not counted) with N jobs that all finish
``--duration`` seconds from the start. Each contender then waits on them in a fresh child process,
one event loop, as a triggerer would run them:

- ``runway``: the real ``RunwayTaskTrigger`` (real async hook, pooled session, real HTTP);
- ``http``: apache-airflow-providers-http's ``HttpSensorTrigger`` polling an endpoint that answers
  404 until the job is done (what users reach for without this provider);
- ``floor``: a bare poller on one shared aiohttp session, doing nothing but the status request.

One JSON line per contender: CPU ms per status request, peak RSS per waiting trigger (KB),
requests sent (counted by the emulator), peak open sockets, CPU cores used, detection latency
p50/p99 (event time minus the job's completion time).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

API_KEY = "sk-bench-0000000000000000"
CONTENDERS = ("runway", "http", "floor")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BIN = Path(sys.executable).parent


# -- parent: orchestration and sampling ------------------------------------------------------


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds until every job finishes")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--tls", action="store_true", help="serve the emulator over HTTPS (self-signed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    parser.add_argument("--finishes-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--report-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return []
    results = []
    with Emulator(tls=args.tls) as emulator:
        for contender in args.contenders.split(","):
            result = measure(emulator, contender, args.triggers, args.interval, args.duration)
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


class Emulator:
    """The emulator as a separate process, so that its CPU is not the contender's."""

    def __init__(self, *, tls: bool) -> None:
        self.tls = tls
        self.tmp = tempfile.TemporaryDirectory()
        self.cert_file: str | None = None

    def __enter__(self) -> Emulator:
        port = _free_port()
        command = [str(BIN / "runway-emulator"), "--port", str(port), "--api-key", API_KEY, "--no-records"]
        if self.tls:
            self.cert_file, key_file = _self_signed_certificate(Path(self.tmp.name))
            command += ["--tls-cert", self.cert_file, "--tls-key", key_file]
        self.base_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.call("GET", "/_emulator/stats")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the emulator did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.tmp.cleanup()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import ssl

        context = ssl.create_default_context(cafile=self.cert_file) if self.tls else None
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return json.loads(response.read())

    def child_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "AIRFLOW_CONN_RUNWAY_DEFAULT": json.dumps(
                {"conn_type": "runway", "host": self.base_url, "password": API_KEY, "extra": {"timeout": 30}}
            ),
            "AIRFLOW_CONN_HTTP_BENCH": json.dumps(
                {
                    "conn_type": "http",
                    "host": "127.0.0.1",
                    "port": int(self.base_url.rsplit(":", 1)[1]),
                    "schema": "https" if self.tls else "http",
                }
            ),
        }
        if self.cert_file:
            env["SSL_CERT_FILE"] = self.cert_file
        return env


def measure(
    emulator: Emulator, contender: str, triggers: int, interval: float, duration: float
) -> dict[str, Any]:
    running = max(duration - 2, 0.5)
    created = emulator.call(
        "POST",
        "/_emulator/jobs",
        {
            "count": triggers,
            "scenario": {"not_found_seconds": 1, "queued_seconds": 1, "running_seconds": running},
        },
    )
    ids_file = Path(emulator.tmp.name) / f"{contender}-ids.json"
    ids_file.write_text(json.dumps(created["runway_task_ids"]))
    report_file = Path(emulator.tmp.name) / f"{contender}-report.json"
    log_file = Path(emulator.tmp.name) / f"{contender}.log"
    before = emulator.call("GET", "/_emulator/stats")["requests"]
    # The contenders' own logging goes to a file: a full pipe would stall the child.
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            contender,
            "--ids-file",
            str(ids_file),
            "--finishes-at",
            str(created["finishes_at"]),
            "--interval",
            str(interval),
            "--base-url",
            emulator.base_url,
            "--report-file",
            str(report_file),
        ],
        env=emulator.child_env(),
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
    )
    peak_rss = peak_sockets = 0
    while process.poll() is None:
        peak_rss = max(peak_rss, _rss(process.pid))
        peak_sockets = max(peak_sockets, _open_sockets(process.pid))
        time.sleep(0.1)
    if process.returncode != 0:
        raise RuntimeError(
            f"{contender} child failed with {process.returncode}: {log_file.read_text()[-3000:]}"
        )
    report = json.loads(report_file.read_text())
    requests = emulator.call("GET", "/_emulator/stats")["requests"] - before
    latencies = sorted(report["latencies"])
    return {
        "contender": contender,
        "triggers": triggers,
        "interval_s": interval,
        "tls": emulator.tls,
        "events": report["events"],
        "requests": requests,
        "cpu_ms_per_request": round(report["cpu_s"] * 1000 / max(requests, 1), 3),
        "cpu_cores": round(report["cpu_s"] / report["wall_s"], 3),
        "rss_kb_per_trigger": round((peak_rss - report["baseline_rss"]) / 1024 / triggers, 2),
        "peak_open_sockets": peak_sockets,
        "detect_p50_s": round(_percentile(latencies, 0.50), 3),
        "detect_p99_s": round(_percentile(latencies, 0.99), 3),
        "wall_s": round(report["wall_s"], 1),
    }


# -- child: one contender in one event loop --------------------------------------------------


def child(args: argparse.Namespace) -> None:
    runway_task_ids = json.loads(Path(args.ids_file).read_text())
    waiter = _waiter_factory(args.child, args.interval, args.base_url)
    import gc

    gc.collect()
    baseline_rss = _rss(os.getpid())
    latencies: list[float] = []

    async def wait_all() -> None:
        async def one(runway_task_id: str) -> None:
            await waiter(runway_task_id)
            latencies.append(time.time() - args.finishes_at)

        await asyncio.gather(*(one(runway_task_id) for runway_task_id in runway_task_ids))
        await _close_floor_session()

    cpu_before, wall_before = _cpu_seconds(), time.monotonic()
    asyncio.run(wait_all())
    report = {
        "events": len(latencies),
        "latencies": latencies,
        "cpu_s": _cpu_seconds() - cpu_before,
        "wall_s": time.monotonic() - wall_before,
        "baseline_rss": baseline_rss,
    }
    Path(args.report_file).write_text(json.dumps(report))


def _waiter_factory(contender: str, interval: float, base_url: str) -> Any:
    if contender == "runway":
        import aiohttp

        from runway_provider.triggers.runway import RunwayTaskTrigger

        async def runway_waiter(runway_task_id: str) -> None:
            now = time.time()
            trigger = RunwayTaskTrigger(
                runway_task_id=runway_task_id,
                runway_conn_id="runway_default",
                poll_interval=interval,
                end_time=now + 3600,
                not_found_grace=600,
                submitted_at=now,
                route_family="reverse",
            )
            async for event in trigger.run():
                if event.payload["status"] != "success":
                    raise RuntimeError(event.payload)
                return

        return runway_waiter
    if contender == "http":
        from airflow.providers.http.triggers.http import HttpSensorTrigger

        async def http_waiter(runway_task_id: str) -> None:
            trigger = HttpSensorTrigger(
                endpoint=f"/_emulator/done/{runway_task_id}",
                http_conn_id="http_bench",
                poke_interval=interval,
            )
            async for _ in trigger.run():
                return

        return http_waiter
    if contender == "floor":
        import aiohttp  # noqa: F401 - imported before the baseline, like the others' clients

        async def floor_waiter(runway_task_id: str) -> None:
            session = await _floor_session()
            await asyncio.sleep(random.uniform(0, interval))
            while True:
                async with session.post(
                    base_url + "/runway/feed",
                    json={"task_id": runway_task_id},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                ) as response:
                    body = await response.json(content_type=None)
                data = body.get("data") if isinstance(body, dict) else None
                if isinstance(data, dict) and data.get("status") in ("SUCCESS", "FAILURE"):
                    return
                await asyncio.sleep(interval)

        return floor_waiter
    raise SystemExit(f"unknown contender {contender!r}; choose from {CONTENDERS}")


_FLOOR_SESSION: Any = None


async def _floor_session() -> Any:
    global _FLOOR_SESSION
    if _FLOOR_SESSION is None:
        import aiohttp

        _FLOOR_SESSION = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=100))
    return _FLOOR_SESSION


async def _close_floor_session() -> None:
    if _FLOOR_SESSION is not None:
        await _FLOOR_SESSION.close()


# -- measuring helpers -----------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError):
        return 0


def _open_sockets(pid: int) -> int:
    count = 0
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(fd.path).startswith("socket:"):
                    count += 1
            except OSError:
                continue
    except OSError:
        return 0
    return count


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(fraction * (len(values) - 1)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _self_signed_certificate(folder: Path) -> tuple[str, str]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


if __name__ == "__main__":
    main()
