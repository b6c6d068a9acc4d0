"""A local CometAPI-compatible Runway server, for running and testing DAGs offline.

It shares no code with the client on purpose: if both used one parser, a parsing bug would pass
every test. Start it with ``runway-emulator --port 8765`` or, in pytest, with
:class:`EmulatorServer`. Each job follows a :class:`Scenario`: the server default, overridden per
job by ``options["emulator"]`` in the create request (see ``docs/emulator.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import shlex
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

from aiohttp import web

from runway_provider.testing.workload import DONE, QUEUED, RUNNING, THROTTLED, Timeline, Workload

DEFAULT_API_KEY = "emulator-key"
# The key CometAPI's balance query (GET /user/quota?key=...) accepts, a separate key as CometAPI advises.
DEFAULT_QUOTA_KEY = "emulator-quota-key"
OUTCOMES = ("succeeded", "failed", "cancelled", "never_appears", "no_output")
SHAPES = ("wrapped", "legacy", "official")
_ANSWER_FAULTS = (
    *("refused", "429", "500", "502", "503", "504", "html", "proxy503", "garbage", "reset", "slow"),
    # Hostile answers: bytes that are not UTF-8, a 500 saying the request is wrong, 2 MB of JSON.
    *("binary", "invalid500", "huge"),
    # The gateway's refusal of an account that cannot pay (new-api's 403 insufficient_user_quota).
    "spent_balance",
)
# "<fault>_after_create": the create is processed (the job exists and bills), then the answer is
# lost in that way: what a proxy or a network between Airflow and CometAPI can do.
_AFTER_CREATE = "_after_create"
FAULTS = (
    *_ANSWER_FAULTS,
    *(f"{fault}{_AFTER_CREATE}" for fault in ("502", "proxy503", "reset", "slow", "garbage")),
)
# Fields each official-format route needs, as Runway's API reference lists them.
_OFFICIAL_REQUIRED = {
    "image_to_video": ("model", "promptImage"),
    "video_to_video": ("model", "videoUri", "promptText"),
    "video_upscale": ("model", "videoUri"),
    "character_performance": ("model", "character", "reference"),
    # CometAPI refuses text-to-image without references (reference_images_empty).
    "text_to_image": ("model", "promptText", "referenceImages"),
}
_ERROR_STATUS = {"429": 429, "500": 500, "502": 502, "503": 503, "504": 504}
_HTML_PAGES = {"html": (502, "502 Bad Gateway"), "proxy503": (503, "503 Service Unavailable")}
_CREATE_PATHS = frozenset(
    {"/runway/pro/generate", "/runway/pro/video2video", "/runway/pro/act_one"}
    | {f"/runwayml/v1/{route}" for route in _OFFICIAL_REQUIRED}
)


@dataclass
class Scenario:
    """How one job behaves.

    :param outcome: ``succeeded``, ``failed``, ``cancelled``, ``never_appears`` (task_not_exist
        forever) or ``no_output`` (success without any URL).
    :param shape: Answer shape of the feed: ``wrapped`` (current), ``legacy`` or ``official``.
    :param not_found_seconds: How long the new id answers ``task_not_exist``.
    :param queued_seconds: How long it is queued after that.
    :param running_seconds: How long it runs after that.
    :param failure: Failure text of a failed job.
    :param failure_code: Runway ``failureCode`` of a failed job.
    :param task_not_exist_http_status: 400 (new-api) or 200.
    :param feed_faults: Faults answered, in order, to this job's first feed requests.
    :param create_faults: Faults answered, in order, to the first create requests with this body;
        ``<fault>_after_create`` ones make the job first.
    :param delay_seconds: Extra latency of every answer about this job.
    :param expired_urls: How many answers of the finished job give an output URL that has already
        expired (the CDN answers 403), before fresh ones.
    :param signed_urls: Output URLs carry a signature in their query, as presigned S3 or CDN URLs do
        (the CDN ignores it).
    :param workload: A :class:`~runway_provider.testing.workload.Workload` as a JSON object: each
        job then draws its own phases and progress from it, and the three phase keys above are unused.
    :param time_scale: Service seconds per wall-clock second: 20 runs a 200 s generation in 10 s.
    """

    outcome: str = "succeeded"
    shape: str = "wrapped"
    not_found_seconds: float = 1.0
    queued_seconds: float = 1.0
    running_seconds: float = 2.0
    failure: str = "The generation failed upstream."
    failure_code: str = "INTERNAL.BAD_OUTPUT.CODE01"
    task_not_exist_http_status: int = 400
    feed_faults: list[str] = field(default_factory=list)
    create_faults: list[str] = field(default_factory=list)
    delay_seconds: float = 0.0
    expired_urls: int = 0
    signed_urls: bool = False
    workload: dict[str, Any] | None = None
    time_scale: float = 1.0

    def updated(self, overrides: Any) -> Scenario:
        """A copy with ``overrides`` applied; raises ValueError naming any bad key or value."""
        if not isinstance(overrides, dict):
            raise ValueError("the emulator scenario must be a JSON object")
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown emulator scenario keys {unknown}; known keys: {sorted(known)}")
        merged = Scenario(**{**asdict(self), **overrides})
        if merged.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {merged.outcome!r}")
        if merged.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {merged.shape!r}")
        for fault in [*merged.feed_faults, *merged.create_faults]:
            if not _known_fault(fault):
                raise ValueError(f"faults must be among {FAULTS}, got {fault!r}")
        if merged.workload is not None:
            merged.workload = Workload.from_dict(merged.workload).to_dict()
        if isinstance(merged.time_scale, bool) or not isinstance(merged.time_scale, (int, float)):
            raise ValueError(f"time_scale must be a number, got {merged.time_scale!r}")
        if not 0 < merged.time_scale < float("inf"):
            raise ValueError(f"time_scale must be positive, got {merged.time_scale!r}")
        return merged

    def plain_timeline(self) -> Timeline:
        """The course of a job of this scenario when it has no workload."""
        return Timeline.plain(self.not_found_seconds, self.queued_seconds, self.running_seconds)


@dataclass
class Job:
    runway_task_id: str
    created: float
    body: dict[str, Any]
    scenario: Scenario
    feed_requests: int = 0
    pending_faults: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    official: bool = False
    cancelled_at: float | None = None
    # Runway's DELETE of a finished task deletes it and its output.
    deleted_at: float | None = None
    expired_left: int = 0
    output_extension: str = "mp4"
    timeline: Timeline | None = None

    @property
    def course(self) -> Timeline:
        """The job's phases: drawn from the workload, or the scenario's fixed ones."""
        return self.timeline or self.scenario.plain_timeline()

    @property
    def finishes_at(self) -> float:
        """Wall-clock time at which the job reaches its terminal state."""
        return self.created_at + self.course.total_seconds / self.scenario.time_scale


class Emulator:
    """The emulated service: its jobs, its configuration and its record of every request.

    :param api_key: The only Bearer key accepted.
    :param scenario: Default scenario of every job.
    :param fault_rate: Probability of a random fault on any API request (on top of scenarios).
    :param fault_kinds: Faults drawn from when ``fault_rate`` fires.
    :param create_fault_kinds: Faults drawn from for a create request (default: ``fault_kinds``).
        Any fault but 429/503 makes a careful client give up without retrying, since the create
        may have been processed.
    :param slow_seconds: How long a ``slow`` fault waits before answering.
    :param balance_spent: The account cannot pay: every create is refused as CometAPI's gateway
        refuses it (the ``spent_balance`` fault) until this is set back to False.
    :param seed: Seed of the random faults, for repeatable runs.
    :param keep_records: Keep a record of every request (``requests``); benchmarks turn it off and
        read only ``request_count``.
    :param cancel_supported: Whether ``DELETE /runwayml/v1/tasks/{id}`` is served; CometAPI does not
        document it, and a gateway that does not pass it through answers 405.
    :param remaining_quota: The balance ``GET /user/quota`` gives (``total_quota`` minus
        ``total_used_quota``, as CometAPI's balance query answers).
    :param quota_key: The only key ``GET /user/quota?key=...`` accepts.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        scenario: Scenario | None = None,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = ("429", "500", "503", "reset"),
        create_fault_kinds: tuple[str, ...] | None = None,
        slow_seconds: float = 5.0,
        balance_spent: bool = False,
        seed: int | None = None,
        keep_records: bool = True,
        cancel_supported: bool = True,
        remaining_quota: float = 1_000_000.0,
        quota_key: str = DEFAULT_QUOTA_KEY,
    ) -> None:
        for kind in (*fault_kinds, *(create_fault_kinds or ())):
            if not _known_fault(kind):
                raise ValueError(f"fault kinds must be among {FAULTS}, got {kind!r}")
        self.api_key = api_key
        self.scenario = scenario or Scenario()
        self.fault_rate = fault_rate
        self.fault_kinds = fault_kinds
        self.create_fault_kinds = create_fault_kinds
        self.slow_seconds = slow_seconds
        self.balance_spent = balance_spent
        self.keep_records = keep_records
        self.cancel_supported = cancel_supported
        self.remaining_quota = remaining_quota
        self.quota_key = quota_key
        self.jobs: dict[str, Job] = {}
        self.requests: list[dict[str, Any]] = []
        self.request_count = 0
        self.callbacks: list[Any] = []
        self.media_requests: list[dict[str, Any]] = []
        self._create_faults_used: dict[str, int] = {}
        # How many jobs each workload seed has drawn: the n-th draw of a seed is always the same.
        self._draws: dict[int, int] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    # -- public helpers for tests ------------------------------------------------------------

    def submissions(self) -> list[dict[str, Any]]:
        """Every create request that made a job, in order (each one a paid generation)."""
        return [r for r in self.requests if r.get("created")]

    def quota_queries(self) -> list[dict[str, Any]]:
        """Every balance query (``GET /user/quota``) received."""
        return [r for r in self.requests if r["path"] == "/user/quota"]

    def create_requests(self) -> list[dict[str, Any]]:
        """Every create request received, whether or not it made a job."""
        return [r for r in self.requests if r["method"] == "POST" and r["path"] in _CREATE_PATHS]

    def cancels(self) -> list[dict[str, Any]]:
        """Every cancel request (``DELETE /runwayml/v1/tasks/{id}``) received."""
        return [r for r in self.requests if r["method"] == "DELETE"]

    def deleted_results(self) -> list[str]:
        """The ids of finished tasks a DELETE destroyed, with their output: a result paid for and lost."""
        return [job.runway_task_id for job in self.jobs.values() if job.deleted_at is not None]

    def reset(self) -> None:
        with self._lock:
            self.jobs.clear()
            self.requests.clear()
            self.request_count = 0
            self.callbacks.clear()
            self.media_requests.clear()
            self._create_faults_used.clear()
            self._draws.clear()

    def build_app(self) -> web.Application:
        """The aiohttp application serving this emulator."""
        app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[_reset_middleware])
        app.add_routes(
            [
                web.post("/runway/pro/generate", self._generate),
                web.post("/runway/pro/video2video", self._reverse_video2video),
                web.post("/runway/pro/act_one", self._act_one),
                web.post("/runway/feed", self._feed),
                web.post("/runwayml/v1/{route}", self._official_create),
                web.get("/runwayml/v1/tasks/{runway_task_id}", self._official_task),
                web.delete("/runwayml/v1/tasks/{runway_task_id}", self._official_cancel),
                web.get("/user/quota", self._quota),
                web.get("/_emulator/media/{name}", self._media),
                web.post("/_emulator/callback", self._callback),
                web.get("/_emulator/requests", self._list_requests),
                web.get("/_emulator/jobs", self._list_jobs),
                web.post("/_emulator/jobs", self._create_jobs),
                web.get("/_emulator/done/{runway_task_id}", self._done),
                web.get("/_emulator/stats", self._stats),
                web.post("/_emulator/config", self._configure),
                web.post("/_emulator/reset", self._reset),
            ]
        )
        return app

    # -- service routes ----------------------------------------------------------------------

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        # Text-only video: CometAPI's wrapper schema then requires options.seconds and motion_vector.
        return await self._reverse_create(request, ("prompt", "model", "ratio"), text_only_needs_options=True)

    async def _reverse_video2video(self, request: web.Request) -> web.StreamResponse:
        return await self._reverse_create(request, ("video", "prompt"))

    async def _act_one(self, request: web.Request) -> web.StreamResponse:
        return await self._reverse_create(request, ("video", "image"))

    async def _reverse_create(
        self, request: web.Request, required: tuple[str, ...], *, text_only_needs_options: bool = False
    ) -> web.StreamResponse:
        record = self._record(request)
        if not self._authorized(request):
            return self._finish(record, _error(401, "Invalid token", ""))
        body = await _json_body(request)
        if not isinstance(body, dict):
            return self._finish(record, _error(400, "request body must be a JSON object", "invalid_request"))
        try:
            scenario = self.scenario.updated(((body.get("options") or {}).get("emulator")) or {})
        except (ValueError, AttributeError) as err:
            return self._finish(record, _error(400, f"options.emulator: {err}", "invalid_request"))
        fault = self._create_fault(body, scenario)
        if fault and not fault.endswith(_AFTER_CREATE):
            return await self._fault(record, fault)
        if not body.get("callback_url"):
            # CometAPI's wrapper refuses a missing webhook inside a successful HTTP answer.
            return self._finish(
                record,
                web.json_response({"code": "callback_url_empty", "msg": "callback_url_empty", "data": None}),
            )
        for name in required:
            if not isinstance(body.get(name), str) or not body[name].strip():
                return self._finish(record, _error(400, f"{name} is required", "invalid_request"))
        options: dict[str, Any] = body["options"] if isinstance(body.get("options"), dict) else {}
        if text_only_needs_options and not body.get("image"):
            for name in ("seconds", "motion_vector"):
                if name not in options:
                    return self._finish(record, _error(400, f"options.{name} is required", "invalid_request"))
        job = self._new_job(body, scenario, record)
        if fault:
            return await self._fault(record, fault.removesuffix(_AFTER_CREATE))
        await asyncio.sleep(scenario.delay_seconds)
        return self._finish(
            record,
            web.json_response(
                {"code": 200, "msg": "success", "data": {"task_id": job.runway_task_id}, "exec_time": 0.01}
            ),
        )

    async def _official_create(self, request: web.Request) -> web.StreamResponse:
        """Runway's own schema, passed through: answers ``{"id": ...}``; the job follows the default scenario."""
        record = self._record(request)
        route = request.match_info["route"]
        if route not in _OFFICIAL_REQUIRED:
            raise web.HTTPNotFound()
        if not self._authorized(request):
            return self._finish(record, _error(401, "Invalid token", ""))
        if not request.headers.get("X-Runway-Version"):
            return self._finish(
                record, _error(400, "the X-Runway-Version header is required", "invalid_request")
            )
        body = await _json_body(request)
        if not isinstance(body, dict):
            return self._finish(record, _error(400, "request body must be a JSON object", "invalid_request"))
        fault = self._create_fault(body, self.scenario)
        if fault and not fault.endswith(_AFTER_CREATE):
            return await self._fault(record, fault)
        for name in _OFFICIAL_REQUIRED[route]:
            if body.get(name) in (None, "", [], {}):
                return self._finish(record, _error(400, f"{name} is required", "invalid_request"))
        job = self._new_job(body, self.scenario, record, official=True)
        job.output_extension = "png" if route == "text_to_image" else "mp4"
        if fault:
            return await self._fault(record, fault.removesuffix(_AFTER_CREATE))
        return self._finish(record, web.json_response({"id": job.runway_task_id}))

    async def _official_task(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request)
        if not self._authorized(request):
            return self._finish(record, _error(401, "Invalid token", ""))
        return await self._answer_task(request, record, request.match_info["runway_task_id"], official=True)

    async def _official_cancel(self, request: web.Request) -> web.StreamResponse:
        """Runway's ``DELETE /v1/tasks/{id}``: a PENDING, THROTTLED or RUNNING task becomes CANCELLED; a
        finished one is deleted with its output (later reads answer 404, its media is gone). 204
        without a body. ``record["deleted"]`` marks a DELETE that destroyed a finished task."""
        record = self._record(request)
        if not self._authorized(request):
            return self._finish(record, _error(401, "Invalid token", ""))
        runway_task_id = request.match_info["runway_task_id"]
        record["runway_task_id"] = runway_task_id
        if not self.cancel_supported:
            return self._finish(record, _error(405, "Method Not Allowed", ""))
        job = self.jobs.get(runway_task_id)
        if job is None or not job.official or job.deleted_at is not None:
            return self._finish(record, web.json_response({"error": "Task not found"}, status=404))
        if job.cancelled_at is None and time.time() < job.finishes_at:
            job.cancelled_at = time.time()
        else:
            job.deleted_at = time.time()
            record["deleted"] = True
        return self._finish(record, web.Response(status=204))

    def _new_job(
        self, body: dict[str, Any], scenario: Scenario, record: dict[str, Any], *, official: bool = False
    ) -> Job:
        job = Job(runway_task_id=str(uuid.uuid4()), created=time.monotonic(), body=body, scenario=scenario)
        job.timeline = self._draw(scenario)
        job.pending_faults = list(scenario.feed_faults)
        job.expired_left = scenario.expired_urls
        job.official = official
        with self._lock:
            self.jobs[job.runway_task_id] = job
        record["runway_task_id"] = job.runway_task_id
        record["created"] = True
        return job

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request)
        if not self._authorized(request):
            return self._finish(record, _error(401, "Invalid token", ""))
        body = await _json_body(request)
        runway_task_id = body.get("task_id") if isinstance(body, dict) else None
        if not isinstance(runway_task_id, str) or not runway_task_id:
            return self._finish(record, _error(400, "task_id is required", "invalid_request"))
        return await self._answer_task(request, record, runway_task_id, official=False)

    async def _answer_task(
        self, request: web.Request, record: dict[str, Any], runway_task_id: str, *, official: bool
    ) -> web.StreamResponse:
        record["runway_task_id"] = runway_task_id
        job = self.jobs.get(runway_task_id)
        if job is not None and (job.official != official or job.deleted_at is not None):
            # Each route family knows only its own tasks, as the real service's lookups would; a
            # deleted task is known to none.
            job = None
        if job is not None:
            job.feed_requests += 1
            fault = job.pending_faults.pop(0) if job.pending_faults else None
            if fault or (fault := self._random_fault()):
                return await self._fault(record, fault)
            await asyncio.sleep(job.scenario.delay_seconds)
        elif fault := self._random_fault():
            return await self._fault(record, fault)
        view = _job_view(job, request) if job else None
        # The official route answers the plain Runway task unless the scenario asks for the wrapper.
        shape = job.scenario.shape if job else "wrapped"
        if official and shape == "legacy":
            shape = "official"
        if view is None:
            record["task_status"] = "task_not_exist"
            if official and shape == "official":
                return self._finish(record, web.json_response({"error": "Task not found"}, status=404))
            status = job.scenario.task_not_exist_http_status if job else 400
            return self._finish(
                record,
                web.json_response(
                    {"code": "task_not_exist", "message": "task_not_exist", "data": None}, status=status
                ),
            )
        assert job is not None  # a view exists only for a known job
        record["task_status"] = view["state"]
        if view.get("urls") and job.expired_left > 0:
            job.expired_left -= 1
            media = f"/_emulator/media/{job.runway_task_id}"
            view = {
                **view,
                "urls": [
                    url.replace(media, f"/_emulator/media/expired-{job.runway_task_id}")
                    for url in view["urls"]
                ],
            }
        return self._finish(record, web.json_response(_render(job, view, shape)))

    async def _media(self, request: web.Request) -> web.StreamResponse:
        """The CDN: a real sample video, plus made-up ones for storage tests.

        ``size-<bytes>.mp4`` streams a video-signed file of that size, ``broken-<bytes>.mp4`` drops
        the connection halfway, ``redirect-<n>-<name>`` redirects n times, ``goto-<host>-<name>``
        redirects to another host, ``tiny-first-chunk.mp4`` sends its first 4 bytes alone, ``expired-<anything>`` answers 403 like an expired signed URL,
        ``page-<anything>`` answers an HTML page, ``notvideo-<anything>`` text labelled video/mp4,
        ``nowhere-<anything>`` a redirect with no Location and ``drip-<bytes>.mp4`` a video signature
        then one byte every 0.2 s.
        Who asked, with which ``Host`` and ``Authorization`` headers, is kept in ``media_requests``.
        """
        name = request.match_info["name"]
        self.media_requests.append(
            {"name": name, "host": request.host, "authorization": request.headers.get("Authorization")}
        )
        deleted = self.jobs.get(name.rpartition(".")[0])
        if deleted is not None and deleted.deleted_at is not None:
            raise web.HTTPNotFound(text="Deleted with its task")
        if name.startswith("size-") or name.startswith("broken-"):
            return await self._stream_video(request, name)
        if name.startswith("drip-"):
            return await self._drip_video(request, name)
        if name.startswith("redirect-"):
            # redirect-<n>-<name>: n redirects (relative Locations), then <name>.
            _, hops, rest = name.split("-", 2)
            target = f"redirect-{int(hops) - 1}-{rest}" if int(hops) > 1 else rest
            raise web.HTTPFound(location=target)
        if name.startswith("goto-"):
            # goto-<host>-<name>: a redirect to another host on this port.
            _, host, rest = name.split("-", 2)
            raise web.HTTPFound(
                location=f"{request.scheme}://{host}:{request.url.port}/_emulator/media/{rest}"
            )
        if name == "tiny-first-chunk.mp4":
            # A CDN that sends the first few bytes alone: the signature spans two chunks.
            response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            video = _asset("sample.mp4")
            await response.write(video[:4])
            await response.write(video[4:])
            await response.write_eof()
            return response
        if name.startswith("expired-"):
            raise web.HTTPForbidden(text="Request has expired")
        if name.startswith("page-"):
            return web.Response(text="<html><body>Not a video</body></html>", content_type="text/html")
        if name.startswith("nowhere-"):
            return web.Response(status=302)
        if name.startswith("notvideo-"):
            return web.Response(body=b"this is plain text, not a video", content_type="video/mp4")
        if name.endswith(".mp4"):
            data, content_type = _asset("sample.mp4"), "video/mp4"
        elif name.endswith(".png"):
            data, content_type = _asset("first-frame.png"), "image/png"
        else:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type=content_type)

    async def _stream_video(self, request: web.Request, name: str) -> web.StreamResponse:
        kind, _, rest = name.partition("-")
        try:
            size = int(rest.removesuffix(".mp4"))
        except ValueError:
            raise web.HTTPNotFound() from None
        response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Content-Length": str(size)})
        await response.prepare(request)
        stop_at = size // 2 if kind == "broken" else size
        head = _asset("sample.mp4")[:32]
        sent, chunk = 0, bytes(256 * 1024)
        while sent < stop_at:
            piece = (
                (head + chunk)[: min(len(chunk), stop_at - sent)] if sent == 0 else chunk[: stop_at - sent]
            )
            await response.write(piece)
            sent += len(piece)
        if kind == "broken":
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def _drip_video(self, request: web.Request, name: str) -> web.StreamResponse:
        """A host that holds a reader: the signature at once, then one byte every 0.2 s."""
        try:
            size = int(name.removeprefix("drip-").removesuffix(".mp4"))
        except ValueError:
            raise web.HTTPNotFound() from None
        response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Content-Length": str(size)})
        await response.prepare(request)
        head = _asset("sample.mp4")[:12]
        await response.write(head)
        for _ in range(size - len(head)):
            await asyncio.sleep(0.2)
            if request.transport is None or request.transport.is_closing():
                return response  # the reader gave up
            await response.write(b"\0")
        await response.write_eof()
        return response

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        self.callbacks.append(await _json_body(request))
        return web.json_response({"ok": True})

    # -- control routes ----------------------------------------------------------------------

    async def _list_requests(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.requests)

    async def _list_jobs(self, request: web.Request) -> web.StreamResponse:
        jobs = []
        for job in list(self.jobs.values()):
            view = _job_view(job, request)
            jobs.append(
                {
                    "runway_task_id": job.runway_task_id,
                    "prompt": job.body.get("prompt"),
                    "outcome": job.scenario.outcome,
                    "state": view["state"] if view else "task_not_exist",
                    "feed_requests": job.feed_requests,
                }
            )
        return web.json_response(jobs)

    async def _create_jobs(self, request: web.Request) -> web.StreamResponse:
        """Make ``count`` jobs at once (benchmarks), each following ``scenario`` over the default.

        ``"official": true`` makes official-format jobs (looked up on ``/runwayml/v1/tasks/{id}``).
        """
        body = await _json_body(request)
        try:
            count = int(body["count"])
            scenario = self.scenario.updated(body.get("scenario") or {})
            official = bool(body.get("official", False))
        except (KeyError, TypeError, ValueError) as err:
            return _error(400, f"expected {{count, scenario}}: {err}", "invalid_request")
        now, created = time.monotonic(), []
        with self._lock:
            for _ in range(count):
                job = Job(
                    runway_task_id=str(uuid.uuid4()), created=now, body={"prompt": "bulk"}, scenario=scenario
                )
                job.timeline = self._draw(scenario, locked=True)
                job.official = official
                self.jobs[job.runway_task_id] = job
                created.append(job)
        return web.json_response(
            {
                "runway_task_ids": [job.runway_task_id for job in created],
                "finishes_at": created[0].finishes_at if created else None,
                # Each job's own, when a workload draws them.
                "finish_times": [job.finishes_at for job in created],
            }
        )

    async def _done(self, request: web.Request) -> web.StreamResponse:
        """404 until the job has ended, then 200: what a plain ``HttpSensor`` can wait on."""
        self._record(request)
        job = self.jobs.get(request.match_info["runway_task_id"])
        view = _job_view(job, request) if job else None
        if view is None or view["state"] in (THROTTLED, QUEUED, RUNNING):
            raise web.HTTPNotFound()
        return web.json_response({"state": view["state"]})

    async def _quota(self, request: web.Request) -> web.StreamResponse:
        # CometAPI serves this on its own host (query.cometapi.com); the emulator on its one host.
        record = self._record(request)
        record["authorized"] = request.query.get("key") == self.quota_key
        if not record["authorized"]:
            return self._finish(record, _error(401, "invalid key", "invalid_key"))
        used = 12_500.0
        answer = {
            "total_quota": self.remaining_quota + used,
            "total_used_quota": used,
            "request_count": len(self.jobs),
            # The query key has no quota of its own, as CometAPI advises; the production key has some.
            "keys": [
                {"name": "balance query", "remain_quota": 0, "used_quota": 0},
                {"name": "production", "remain_quota": self.remaining_quota, "used_quota": used},
            ],
        }
        return self._finish(record, web.json_response(answer))

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"requests": self.request_count, "jobs": len(self.jobs)})

    async def _configure(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "config must be a JSON object", "invalid_request")
        try:
            if "scenario" in body:
                self.scenario = self.scenario.updated(body["scenario"])
            if "fault_rate" in body:
                self.fault_rate = float(body["fault_rate"])
            if "fault_kinds" in body:
                kinds = tuple(body["fault_kinds"])
                if not all(_known_fault(kind) for kind in kinds):
                    raise ValueError(f"fault_kinds must be among {FAULTS}")
                self.fault_kinds = kinds
            if "balance_spent" in body:
                if not isinstance(body["balance_spent"], bool):
                    raise ValueError("balance_spent must be true or false")
                self.balance_spent = body["balance_spent"]
            if "remaining_quota" in body:
                if isinstance(body["remaining_quota"], bool):
                    raise ValueError("remaining_quota must be a number")
                self.remaining_quota = float(body["remaining_quota"])
            if "seed" in body:
                self._random.seed(body["seed"])
        except (TypeError, ValueError) as err:
            return _error(400, str(err), "invalid_request")
        return web.json_response(
            {
                "scenario": asdict(self.scenario),
                "fault_rate": self.fault_rate,
                "fault_kinds": self.fault_kinds,
                "balance_spent": self.balance_spent,
                "remaining_quota": self.remaining_quota,
            }
        )

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"ok": True})

    # -- plumbing ----------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.api_key}"

    def _record(self, request: web.Request) -> dict[str, Any]:
        record: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            # What every call must carry; whether the key matched, never the key itself.
            "runway_version": request.headers.get("X-Runway-Version"),
            "authorized": self._authorized(request),
        }
        with self._lock:
            self.request_count += 1
            if self.keep_records:
                self.requests.append(record)
        return record

    @staticmethod
    def _finish(record: dict[str, Any], response: web.Response) -> web.Response:
        record["http_status"] = response.status
        return response

    def _draw(self, scenario: Scenario, *, locked: bool = False) -> Timeline | None:
        """The next timeline of the scenario's workload; None without a workload."""
        if scenario.workload is None:
            return None
        workload = Workload.from_dict(scenario.workload)
        if not locked:
            with self._lock:
                return self._draw(scenario, locked=True)
        index = self._draws.get(workload.seed, 0)
        self._draws[workload.seed] = index + 1
        return workload.draw(index)

    def _create_fault(self, body: dict[str, Any], scenario: Scenario) -> str | None:
        """The fault a create answers: a spent balance, the scenario's next one, or a random one."""
        if self.balance_spent:
            return "spent_balance"
        return self._scenario_create_fault(body, scenario) or self._random_fault(self.create_fault_kinds)

    def _scenario_create_fault(self, body: dict[str, Any], scenario: Scenario) -> str | None:
        if not scenario.create_faults:
            return None
        fingerprint = json.dumps(body, sort_keys=True)
        used = self._create_faults_used.get(fingerprint, 0)
        if used >= len(scenario.create_faults):
            return None
        self._create_faults_used[fingerprint] = used + 1
        return scenario.create_faults[used]

    def _random_fault(self, kinds: tuple[str, ...] | None = None) -> str | None:
        if self.fault_rate > 0 and self._random.random() < self.fault_rate:
            return self._random.choice(kinds or self.fault_kinds)
        return None

    async def _fault(self, record: dict[str, Any], fault: str) -> web.StreamResponse:
        record["fault"] = fault
        if fault == "reset":
            record["http_status"] = None
            raise _ConnectionReset()
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
            return self._finish(record, _error(504, "upstream timed out", ""))
        if fault == "garbage":
            return self._finish(
                record, web.Response(text='{"code": "success", "data": {', content_type="application/json")
            )
        if fault in _HTML_PAGES:
            # A proxy's own page: not CometAPI's JSON error.
            page_status, title = _HTML_PAGES[fault]
            return self._finish(
                record,
                web.Response(
                    status=page_status,
                    text=f"<html><body><h1>{title}</h1></body></html>",
                    content_type="text/html",
                ),
            )
        if fault.startswith("http"):
            status, _, code = fault.removeprefix("http").partition(":")
            return self._finish(record, _error(int(status), f"an answer with HTTP {status}", code))
        if fault == "binary":
            return self._finish(
                record, web.Response(body=b"\xff\xfe\x00garbage\x80", content_type="application/json")
            )
        if fault == "invalid500":
            return self._finish(record, _error(500, "the request is invalid", "invalid_request"))
        if fault == "huge":
            filler = "x" * (2 * 1024 * 1024)
            return self._finish(record, web.json_response({"code": "success", "data": {"filler": filler}}))
        if fault == "refused":
            return self._finish(
                record, _error(400, "the prompt was refused by the content policy", "invalid_request")
            )
        if fault == "spent_balance":
            return self._finish(record, _error(403, "user quota is not enough", "insufficient_user_quota"))
        response = _error(_ERROR_STATUS[fault], "upstream saturated, please retry later", "")
        if fault == "429":
            response.headers["Retry-After"] = "1"
        return self._finish(record, response)


def _known_fault(fault: str) -> bool:
    """A named fault, or ``http<status>[:<code>]``: that status with CometAPI's error and that code."""
    return fault in FAULTS or re.fullmatch(r"http[1-5]\d\d(:[\w.-]+)?", fault) is not None


class _ConnectionReset(Exception):
    """Raised by a handler to drop the connection without an answer."""


@web.middleware
async def _reset_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except _ConnectionReset:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError() from None


def _job_view(job: Job, request: web.Request) -> dict[str, Any] | None:
    """Where the job is on its timeline, or None while it is not visible."""
    scenario = job.scenario
    phase, progress = job.course.phase((time.monotonic() - job.created) * scenario.time_scale)
    if scenario.outcome == "never_appears" or phase not in (THROTTLED, QUEUED, RUNNING, DONE):
        return None
    if job.cancelled_at is not None:
        return {"state": "cancelled", "progress": 0.0, "urls": []}
    base = f"{request.scheme}://{request.host}/_emulator/media/{job.runway_task_id}"
    if phase != DONE:
        # progress is None for a job that never reports it.
        return {"state": phase, "progress": 0.0 if phase != RUNNING else progress}
    state = {"succeeded": "succeeded", "no_output": "succeeded", "failed": "failed"}.get(
        scenario.outcome, "cancelled"
    )
    urls = [f"{base}.{job.output_extension}"] if scenario.outcome == "succeeded" else []
    if scenario.signed_urls:
        signature = hashlib.sha256(job.runway_task_id.encode()).hexdigest()
        urls = [f"{url}?X-Amz-Expires=86400&X-Amz-Signature={signature}" for url in urls]
    return {"state": state, "progress": 1.0, "urls": urls, "poster": f"{base}.png"}


_WRAPPED_STATUS = {
    # new-api has no throttled status: its wrapper says QUEUED, the nested Runway task THROTTLED.
    "throttled": "QUEUED",
    "queued": "QUEUED",
    "running": "IN_PROGRESS",
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "cancelled": "FAILURE",
}
_OFFICIAL_STATUS = {
    "throttled": "THROTTLED",
    "queued": "PENDING",
    "running": "RUNNING",
    "succeeded": "SUCCEEDED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
}
_LEGACY_STATUS = {
    "throttled": "0",
    "queued": "0",
    "running": "1",
    "succeeded": "3",
    "failed": "2",
    "cancelled": "2",
}


def _render(job: Job, view: dict[str, Any], shape: str) -> dict[str, Any]:
    state, scenario = view["state"], job.scenario
    failed = state in ("failed", "cancelled")
    urls = view.get("urls", [])
    official: dict[str, Any] = {
        "id": job.runway_task_id,
        "status": _OFFICIAL_STATUS[state],
        "createdAt": "2026-11-26T00:00:00Z",
    }
    if state == "running" and view["progress"] is not None:
        # Runway's own task: a fraction, only while RUNNING.
        official["progress"] = view["progress"]
    if urls:
        official["output"] = urls
    if state == "failed":
        official["failure"], official["failureCode"] = scenario.failure, scenario.failure_code
    if shape == "official":
        return official
    if shape == "legacy":
        return {
            "code": 200,
            "msg": "成功",
            "data": {
                "task_id": job.runway_task_id,
                "state": state,
                "status": _LEGACY_STATUS[state],
                "prompt": job.body.get("prompt"),
                "video_url": urls[0] if urls else None,
                "poster": view.get("poster"),
                "msg": scenario.failure if failed else None,
                "create_time": str(int(time.time())),
            },
            "exec_time": 0.01,
        }
    return {
        "code": "success",
        "message": "",
        "data": {
            "task_id": job.runway_task_id,
            "action": "IMAGE_TO_VIDEO",
            "status": _WRAPPED_STATUS[state],
            "fail_reason": scenario.failure if state == "failed" else "",
            "result_url": urls[0] if urls else "",
            "submit_time": int(time.time()),
            # The wrapper's percentage, "0%" while nothing is reported.
            "progress": f"{int(round((view['progress'] or 0.0) * 100, 6))}%",
            "data": official,
        },
    }


def _error(status: int, message: str, code: str) -> web.Response:
    request_id = uuid.uuid4().hex[:16]
    return web.json_response(
        {
            "error": {
                "message": f"{message} (request id: {request_id})",
                "type": "comet_api_error",
                "param": "",
                "code": code,
            }
        },
        status=status,
    )


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


_ASSETS: dict[str, bytes] = {}


def _asset(name: str) -> bytes:
    if name not in _ASSETS:
        _ASSETS[name] = (
            resources.files("runway_provider.testing").joinpath("media").joinpath(name).read_bytes()
        )
    return _ASSETS[name]


def connection_json(
    base_url: str,
    host: str,
    *,
    api_key: str,
    callback_url: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """An ``AIRFLOW_CONN_RUNWAY_DEFAULT`` value for an emulator at ``base_url``.

    :param base_url: The emulator's address, e.g. ``http://127.0.0.1:8765``.
    :param host: The host its media URLs name, allowed for downloads.
    :param api_key: The key the emulator accepts.
    :param callback_url: The webhook; default the emulator's sink.
    :param extra: More connection extras (a balance floor's).
    """
    return json.dumps(
        {
            "conn_type": "runway",
            "host": base_url,
            "password": api_key,
            "extra": {
                "callback_url": callback_url or f"{base_url}/_emulator/callback",
                # The emulator's CDN is on loopback, which the transfer refuses unless allowed.
                "allowed_media_hosts": [host],
                **(extra or {}),
            },
        }
    )


class EmulatorServer:
    """Run an :class:`Emulator` on a background thread, for pytest or scripts.

    Example::

        with EmulatorServer() as server:
            os.environ["AIRFLOW_CONN_RUNWAY_DEFAULT"] = server.connection_json()
            ...  # run DAGs; inspect server.emulator.submissions()

    :param emulator: The emulated service (a default one if omitted).
    :param host: Interface to listen on.
    :param port: Port; 0 picks a free one.
    """

    def __init__(self, emulator: Emulator | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator or Emulator()
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connection_json(
        self,
        *,
        api_key: str | None = None,
        callback_url: str | None = None,
        min_remaining_quota: float | None = None,
    ) -> str:
        """An ``AIRFLOW_CONN_RUNWAY_DEFAULT`` value pointing at this server.

        :param api_key: The key to send; default the emulator's own.
        :param callback_url: The webhook; default the emulator's sink.
        :param min_remaining_quota: A balance floor: the connection then queries this server's
            ``/user/quota`` with the emulator's quota key.
        """
        quota: dict[str, Any] = {}
        if min_remaining_quota is not None:
            quota = {
                "quota_url": f"{self.base_url}/user/quota",
                "quota_key": self.emulator.quota_key,
                "min_remaining_quota": min_remaining_quota,
            }
        return connection_json(
            self.base_url,
            self.host,
            api_key=api_key or self.emulator.api_key,
            callback_url=callback_url,
            extra=quota,
        )

    def start(self) -> EmulatorServer:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            self._runner = web.AppRunner(self.emulator.build_app(), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            started.set()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="runway-emulator", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the Runway emulator did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``runway-emulator``: serve the emulated CometAPI Runway routes until interrupted."""
    parser = argparse.ArgumentParser(prog="runway-emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the Bearer key the emulator accepts")
    parser.add_argument(
        "--scenario", default="{}", help='default scenario as JSON, e.g. \'{"outcome": "failed"}\''
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="probability of a random fault per request"
    )
    parser.add_argument(
        "--fault-kinds", default="429,500,503,reset", help="comma-separated faults to draw from"
    )
    parser.add_argument(
        "--create-fault-kinds", default="", help="faults for creates (default: --fault-kinds)"
    )
    parser.add_argument(
        "--balance-spent",
        action="store_true",
        help="refuse every create as CometAPI does for an account that cannot pay (HTTP 403)",
    )
    parser.add_argument(
        "--remaining-quota",
        type=float,
        default=1_000_000.0,
        help="the balance GET /user/quota gives (point a connection's extra quota_url here)",
    )
    parser.add_argument(
        "--quota-key", default=DEFAULT_QUOTA_KEY, help="the key GET /user/quota?key=... accepts"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-records", action="store_true", help="count requests without keeping them")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    try:
        scenario = Scenario().updated(json.loads(args.scenario))
    except ValueError as err:
        parser.error(f"--scenario: {err}")
    emulator = Emulator(
        api_key=args.api_key,
        scenario=scenario,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(k for k in args.fault_kinds.split(",") if k),
        create_fault_kinds=tuple(k for k in args.create_fault_kinds.split(",") if k) or None,
        balance_spent=args.balance_spent,
        remaining_quota=args.remaining_quota,
        quota_key=args.quota_key,
        seed=args.seed,
        keep_records=not args.no_records,
    )
    ssl_context = None
    if args.tls_cert:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
    scheme = "https" if ssl_context else "http"
    base_url = f"{scheme}://{args.host}:{args.port}"
    banner = f"Runway emulator on {base_url} (Bearer key from --api-key)"
    # Ready to paste: the connection a DAG needs to run against this emulator, its media host allowed.
    export = "export AIRFLOW_CONN_RUNWAY_DEFAULT=" + shlex.quote(
        connection_json(base_url, args.host, api_key=args.api_key)
    )

    def announce(_aiohttp_banner: str) -> None:
        # aiohttp calls this once the socket listens, so scripts may connect as soon as they read the line.
        print(banner, flush=True)
        print("Connect Airflow to it (in the shell that runs `airflow`):", flush=True)
        print(export, flush=True)

    web.run_app(
        emulator.build_app(),
        host=args.host,
        port=args.port,
        ssl_context=ssl_context,
        print=announce,
        access_log=None,
    )


if __name__ == "__main__":
    main()
