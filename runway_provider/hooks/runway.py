"""Hook for CometAPI's Runway routes: sync calls with requests, async calls with aiohttp.

requests, urllib3 and aiohttp are imported where they are used: DAG files import the operator
and sensor modules, which import this one, and DAG parsing pays for every top-level import.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseHook

from runway_provider import __version__
from runway_provider.exceptions import (
    RunwayAuthenticationError,
    RunwayConfigurationError,
    RunwayError,
    RunwayInputError,
    RunwaySubmissionUncertainError,
    RunwayTransientError,
)
from runway_provider.models import (
    RETRYABLE_HTTP_STATUSES,
    CancelOutcome,
    RouteFamily,
    RunwayTask,
    decode_body,
    is_retryable_answer,
    normalize_task,
    parse_submission,
    raise_for_error,
    read_cancel_answer,
)
from runway_provider.validation import (
    CHARACTER_PERFORMANCE_MODELS,
    IMAGE_TO_VIDEO_MODELS,
    TEXT_TO_IMAGE_MODELS,
    TEXT_TO_IMAGE_RATIOS,
    UPSCALE_MODELS,
    VIDEO_TO_VIDEO_MODELS,
    require_choice,
    require_content_moderation,
    require_http_url,
    require_int,
    require_media_uri,
    require_model,
    require_options,
    require_positive_seconds,
    require_prompt,
    require_prompt_image,
    require_ratio,
    require_reference_images,
    require_seed,
    require_text,
    require_text_only_options,
)
from runway_provider.watch import TaskWatch, resolve_event, unexpected_poll_error

if TYPE_CHECKING:
    import aiohttp
    import requests
    from airflow.sdk import Connection

DEFAULT_BASE_URL = "https://api.cometapi.com"
DEFAULT_RUNWAY_VERSION = "2024-11-06"
DEFAULT_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
GENERATE_PATH = "/runway/pro/generate"
REVERSE_VIDEO_TO_VIDEO_PATH = "/runway/pro/video2video"
ACT_ONE_PATH = "/runway/pro/act_one"
FEED_PATH = "/runway/feed"
IMAGE_TO_VIDEO_PATH = "/runwayml/v1/image_to_video"
VIDEO_TO_VIDEO_PATH = "/runwayml/v1/video_to_video"
VIDEO_UPSCALE_PATH = "/runwayml/v1/video_upscale"
CHARACTER_PERFORMANCE_PATH = "/runwayml/v1/character_performance"
TEXT_TO_IMAGE_PATH = "/runwayml/v1/text_to_image"
OFFICIAL_TASKS_PATH = "/runwayml/v1/tasks"
# Route families (models.RouteFamily): reverse-format tasks are polled through the feed, official ones by id.
REVERSE = RouteFamily.REVERSE.value
OFFICIAL = RouteFamily.OFFICIAL.value
ROUTE_FAMILIES = (REVERSE, OFFICIAL)
USER_AGENT = f"airflow-provider-runway/{__version__}"
# A Retry-After longer than this is not honoured as given: the wait loop polls again later anyway.
MAX_RETRY_AFTER = 60.0
# A create answered 429 was refused before processing: urllib3 may send it again. Every other
# status is read once, by models.parse_submission (a 503 may come from a proxy after forwarding).
_CREATE_REFUSED_STATUSES = frozenset({429})
_POLL_RETRY_STATUSES = RETRYABLE_HTTP_STATUSES
_CONNECTION_TEST_TASK_ID = "airflow-connection-test"
# A task answer is a few kilobytes: anything much larger is not read into memory.
MAX_ANSWER_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024
_MIN_REQUEST_SECONDS = 1.0
_BEARER = re.compile(r"Bearer\s+\S+", re.IGNORECASE)


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
    """

    base_url: str
    api_key: str = field(repr=False)
    runway_version: str
    callback_url: str | None
    timeout: float
    allowed_media_hosts: tuple[str, ...] = ()

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
        extra = conn.extra_dejson

        def extra_value(name: str) -> Any:
            value = extra.get(name, extra.get(f"extra__runway__{name}"))
            return None if value in (None, "") else value

        timeout = extra_value("timeout")
        try:
            timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        except (TypeError, ValueError):
            timeout = -1.0
        if not timeout > 0:
            raise RunwayConfigurationError(
                f"Connection {conn.conn_id!r}: extra `timeout` must be a positive number of seconds, "
                f"got {extra_value('timeout')!r}."
            )
        return cls(
            base_url=_base_url(conn),
            api_key=api_key,
            runway_version=str(extra_value("runway_version") or DEFAULT_RUNWAY_VERSION),
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

    :param runway_conn_id: The ``runway`` connection: password = CometAPI key, host = base URL,
        extra ``runway_version``, ``callback_url``, ``timeout``.
    :param create_retries: Retries of a create that certainly was not processed.
    :param poll_retries: Retries of one status poll.
    :param retry_backoff: First backoff in seconds; doubles on each retry, with jitter.
    :param retry_backoff_max: Longest backoff in seconds.
    """

    conn_name_attr = "runway_conn_id"
    default_conn_name = "runway_default"
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
        super().__init__()
        self.runway_conn_id = runway_conn_id
        self.create_retries = create_retries
        self.poll_retries = poll_retries
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self._async_settings: RunwayConnectionSettings | None = None
        self._async_timeout: aiohttp.ClientTimeout | None = None
        self._async_session: aiohttp.ClientSession | None = None

    # -- connection --------------------------------------------------------------------------

    @cached_property
    def settings(self) -> RunwayConnectionSettings:
        return _checked_settings(self.get_connection(self.runway_conn_id))

    def get_conn(self) -> requests.Session:
        return self.session

    # -- sync API ----------------------------------------------------------------------------

    def submit_generate(
        self,
        *,
        prompt: str,
        image: str | None = None,
        ratio: str = "1280:720",
        model: str = "gen4",
        callback_url: str | None = None,
        style: str | None = None,
        options: dict[str, Any] | None = None,
        last_image: str | None = None,
    ) -> str:
        """Create a reverse-format generation (``POST /runway/pro/generate``); return its task id.

        Every argument is checked before the request is sent.

        :param prompt: What the video shows; at most 1000 characters.
        :param image: The source image: an http(s) URL or a ``data:`` URI. Without one the video is
            made from the prompt alone, and ``options`` must give ``seconds`` and ``motion_vector``.
        :param ratio: ``W:H``, e.g. ``1280:720``.
        :param model: Runway model, e.g. ``gen4``.
        :param callback_url: Webhook for the result; defaults to the connection's ``callback_url``.
            CometAPI requires one.
        :param style: Optional style, e.g. ``cinematic``.
        :param options: Optional advanced options (``seconds``, ``motion_vector``, ...).
        :param last_image: Optional end frame: an http(s) URL or a ``data:`` URI.
        """
        payload = self.generate_payload(
            prompt=prompt,
            image=image,
            ratio=ratio,
            model=model,
            callback_url=callback_url,
            style=style,
            options=options,
            last_image=last_image,
        )
        return self.submit_payload(GENERATE_PATH, payload)

    def submit_image_to_video(self, **kwargs: Any) -> str:
        """``POST /runwayml/v1/image_to_video``; see :meth:`image_to_video_payload`. Returns the task id."""
        return self.submit_payload(IMAGE_TO_VIDEO_PATH, self.image_to_video_payload(**kwargs))

    def submit_video_to_video(self, **kwargs: Any) -> str:
        """``POST /runwayml/v1/video_to_video``; see :meth:`video_to_video_payload`."""
        return self.submit_payload(VIDEO_TO_VIDEO_PATH, self.video_to_video_payload(**kwargs))

    def submit_upscale_video(self, **kwargs: Any) -> str:
        """``POST /runwayml/v1/video_upscale``; see :meth:`upscale_video_payload`."""
        return self.submit_payload(VIDEO_UPSCALE_PATH, self.upscale_video_payload(**kwargs))

    def submit_text_to_image(self, **kwargs: Any) -> str:
        """``POST /runwayml/v1/text_to_image``; see :meth:`text_to_image_payload`. The output is an image."""
        return self.submit_payload(TEXT_TO_IMAGE_PATH, self.text_to_image_payload(**kwargs))

    def submit_character_performance(self, **kwargs: Any) -> str:
        """``POST /runwayml/v1/character_performance``; see :meth:`character_performance_payload`."""
        return self.submit_payload(CHARACTER_PERFORMANCE_PATH, self.character_performance_payload(**kwargs))

    def submit_reverse_video_to_video(self, **kwargs: Any) -> str:
        """``POST /runway/pro/video2video``; see :meth:`reverse_video_to_video_payload`."""
        return self.submit_payload(REVERSE_VIDEO_TO_VIDEO_PATH, self.reverse_video_to_video_payload(**kwargs))

    def submit_act_one(self, **kwargs: Any) -> str:
        """``POST /runway/pro/act_one``; see :meth:`act_one_payload`."""
        return self.submit_payload(ACT_ONE_PATH, self.act_one_payload(**kwargs))

    def submit_payload(self, path: str, payload: Mapping[str, Any]) -> str:
        """POST an already checked create request; return the new Runway task id.

        Raises :class:`~runway_provider.exceptions.RunwaySubmissionUncertainError` when the
        generation may exist without its id (see :func:`runway_provider.models.parse_submission`).

        :param path: The create route, e.g. ``/runway/pro/generate``.
        :param payload: The body, as built by :meth:`generate_payload`.
        """
        status, body = self._request("POST", path, payload, create=True)
        try:
            runway_task_id = parse_submission(body, status)
        except RunwaySubmissionUncertainError as err:
            raise RunwaySubmissionUncertainError(
                _uncertain_message(self.settings.base_url + path, err), route=path
            ) from None
        self.log.info("Submitted Runway generation: task %s", runway_task_id)
        return runway_task_id

    def generate_payload(
        self,
        *,
        prompt: Any,
        image: Any = None,
        ratio: Any = "1280:720",
        model: Any = "gen4",
        callback_url: Any = None,
        style: Any = None,
        options: Any = None,
        last_image: Any = None,
    ) -> dict[str, Any]:
        """Check the arguments of :meth:`submit_generate` and build its request body; sends nothing."""
        payload: dict[str, Any] = {"prompt": require_prompt(prompt)}
        if image not in (None, ""):
            payload["image"] = require_media_uri(image, "image")
        payload |= {
            "ratio": require_ratio(ratio),
            "model": require_text(model, "model"),
            "callback_url": self._callback_url(callback_url),
        }
        if style not in (None, ""):
            payload["style"] = require_text(style, "style")
        _add_options(payload, options)
        if "image" not in payload:
            # CometAPI's text-only video requires both (its wrapper schema marks them required).
            require_text_only_options(payload.get("options"))
        if last_image not in (None, ""):
            payload["last_image"] = require_media_uri(last_image, "last_image")
        return payload

    # -- official format (Runway's own schema under /runwayml/v1) -----------------------------

    def image_to_video_payload(
        self,
        *,
        prompt_image: Any,
        model: Any = "gen4_turbo",
        prompt_text: Any = None,
        ratio: Any = "1280:720",
        duration: Any = None,
        seed: Any = None,
        content_moderation: Any = None,
    ) -> dict[str, Any]:
        """Check the arguments of :meth:`submit_image_to_video` and build its body; sends nothing."""
        model = require_model(model, "model", IMAGE_TO_VIDEO_MODELS)
        # A known model's ratios and durations are checked; an unknown one's only for their form.
        rules = IMAGE_TO_VIDEO_MODELS.get(model)
        payload: dict[str, Any] = {
            "model": model,
            "promptImage": require_prompt_image(prompt_image),
            "ratio": require_choice(ratio, "ratio", rules["ratios"]) if rules else require_ratio(ratio),
        }
        if prompt_text not in (None, ""):
            payload["promptText"] = require_prompt(prompt_text, "prompt_text")
        elif rules and rules["prompt_text_required"]:
            raise RunwayInputError("prompt_text", f"is required for model {model}")
        if duration not in (None, ""):
            payload["duration"] = require_int(
                duration, "duration", allowed=rules["durations"] if rules else range(1, 61)
            )
        elif rules and rules["duration_required"]:
            raise RunwayInputError("duration", f"is required for model {model}")
        _add_common(payload, seed=seed, content_moderation=content_moderation)
        return payload

    def video_to_video_payload(
        self,
        *,
        video: Any,
        prompt_text: Any,
        model: Any = "gen4_aleph",
        ratio: Any = "1280:720",
        references: Any = None,
        seed: Any = None,
        content_moderation: Any = None,
    ) -> dict[str, Any]:
        """Body of ``POST /runwayml/v1/video_to_video`` (restyle a video from a prompt)."""
        payload: dict[str, Any] = {
            "model": require_model(model, "model", VIDEO_TO_VIDEO_MODELS),
            "videoUri": require_media_uri(video, "video"),
            "promptText": require_prompt(prompt_text, "prompt_text"),
            "ratio": require_ratio(ratio),
        }
        if references:
            if not isinstance(references, Sequence) or isinstance(references, str):
                raise RunwayInputError("references", f"expected a list of image URIs, got {references!r:.60}")
            payload["references"] = [
                {"type": "image", "uri": require_media_uri(uri, f"references[{index}]")}
                for index, uri in enumerate(references)
            ]
        _add_common(payload, seed=seed, content_moderation=content_moderation)
        return payload

    def upscale_video_payload(self, *, video: Any, model: Any = "upscale_v1") -> dict[str, Any]:
        """Body of ``POST /runwayml/v1/video_upscale`` (4× upscale, up to 4096 px)."""
        return {
            "model": require_model(model, "model", UPSCALE_MODELS),
            "videoUri": require_media_uri(video, "video"),
        }

    def text_to_image_payload(
        self,
        *,
        prompt_text: Any,
        reference_images: Any,
        model: Any = "gen4_image",
        ratio: Any = "1920:1080",
        seed: Any = None,
        content_moderation: Any = None,
    ) -> dict[str, Any]:
        """Body of ``POST /runwayml/v1/text_to_image`` (storyboards, first frames); sends nothing."""
        model = require_model(model, "model", TEXT_TO_IMAGE_MODELS)
        payload: dict[str, Any] = {
            "model": model,
            "promptText": require_prompt(prompt_text, "prompt_text"),
            "ratio": require_choice(ratio, "ratio", TEXT_TO_IMAGE_RATIOS)
            if model in TEXT_TO_IMAGE_MODELS
            else require_ratio(ratio),
            "referenceImages": require_reference_images(reference_images),
        }
        _add_common(payload, seed=seed, content_moderation=content_moderation)
        return payload

    def character_performance_payload(
        self,
        *,
        character: Any,
        reference_video: Any,
        character_type: Any = "image",
        model: Any = "act_two",
        ratio: Any = "1280:720",
        body_control: Any = None,
        expression_intensity: Any = None,
        seed: Any = None,
        content_moderation: Any = None,
    ) -> dict[str, Any]:
        """Body of ``POST /runwayml/v1/character_performance`` (Act-Two: animate a character)."""
        payload: dict[str, Any] = {
            "model": require_model(model, "model", CHARACTER_PERFORMANCE_MODELS),
            "character": {
                "type": require_choice(character_type, "character_type", ("image", "video")),
                "uri": require_media_uri(character, "character"),
            },
            "reference": {"type": "video", "uri": require_media_uri(reference_video, "reference_video")},
            "ratio": require_ratio(ratio),
        }
        if body_control is not None:
            if not isinstance(body_control, bool):
                raise RunwayInputError("body_control", f"expected true or false, got {body_control!r:.40}")
            payload["bodyControl"] = body_control
        if expression_intensity not in (None, ""):
            payload["expressionIntensity"] = require_int(
                expression_intensity, "expression_intensity", allowed=range(1, 6)
            )
        _add_common(payload, seed=seed, content_moderation=content_moderation)
        return payload

    def reverse_video_to_video_payload(
        self, *, video: Any, prompt: Any, model: Any = "gen4", callback_url: Any = None, options: Any = None
    ) -> dict[str, Any]:
        """Body of the reverse-format ``POST /runway/pro/video2video`` (video style redraw)."""
        payload: dict[str, Any] = {
            "video": require_media_uri(video, "video"),
            "prompt": require_prompt(prompt),
            "model": require_text(model, "model"),
            "callback_url": self._callback_url(callback_url),
        }
        _add_options(payload, options)
        return payload

    def act_one_payload(
        self, *, video: Any, image: Any, callback_url: Any = None, options: Any = None
    ) -> dict[str, Any]:
        """Body of the reverse-format ``POST /runway/pro/act_one`` (Act-One expression transfer)."""
        payload: dict[str, Any] = {
            "video": require_media_uri(video, "video"),
            "image": require_media_uri(image, "image"),
            "callback_url": self._callback_url(callback_url),
        }
        _add_options(payload, options)
        return payload

    def _callback_url(self, callback_url: Any) -> str:
        """The task's webhook, else the connection's; CometAPI's reverse routes refuse none."""
        if callback_url is None or callback_url == "":
            callback_url = self.settings.callback_url
        if callback_url is None:
            raise RunwayInputError(
                "callback_url",
                "CometAPI requires a webhook URL; pass callback_url or set extra `callback_url` on "
                f"connection {self.runway_conn_id!r}",
            )
        return require_http_url(callback_url, "callback_url")

    def get_task(self, runway_task_id: str, route_family: str = REVERSE) -> RunwayTask:
        """Fetch a task, normalized: ``POST /runway/feed`` or ``GET /runwayml/v1/tasks/{id}``.

        :param runway_task_id: The task.
        :param route_family: ``reverse`` (created on ``/runway/pro/*``) or ``official``
            (created on ``/runwayml/v1/*``).
        """
        method, path, payload = _task_request(runway_task_id, route_family)
        try:
            status, body = self._request(method, path, payload, runway_task_id=runway_task_id)
            return _normalize(body, status, runway_task_id, route_family)
        except RunwayAuthenticationError:
            # As on the async path: the key may have been rotated during a long wait; read it once more.
            self.__dict__.pop("settings", None)
            self.__dict__.pop("session", None)
            status, body = self._request(method, path, payload, runway_task_id=runway_task_id)
            return _normalize(body, status, runway_task_id, route_family)

    def wait_for_task(
        self,
        runway_task_id: str,
        *,
        poll_interval: float,
        timeout: float,
        not_found_grace: float,
        submitted_at: float | None = None,
        route_family: str = REVERSE,
    ) -> RunwayTask:
        """Poll until the task succeeds; raise the typed error of any other end. Holds the caller.

        :param runway_task_id: The task to wait on.
        :param poll_interval: Seconds between polls.
        :param timeout: Seconds to wait at most, from now.
        :param not_found_grace: Seconds after submission during which ``task_not_exist`` is normal.
        :param submitted_at: When the task was submitted (epoch seconds); defaults to now.
        :param route_family: ``reverse`` or ``official`` (see :meth:`get_task`).
        """
        now = time.time()
        watch = TaskWatch(
            runway_task_id=runway_task_id,
            end_time=now + timeout,
            poll_interval=require_positive_seconds(poll_interval, "poll_interval"),
            not_found_grace=not_found_grace,
            submitted_at=submitted_at or now,
            log=self.log,
        )
        while True:
            try:
                event = watch.observe(self.get_task(runway_task_id, route_family))
            except RunwayError as err:
                event = watch.observe_error(err)
            except Exception as err:  # one odd answer must not end a wait that the deadline bounds
                event = watch.observe_error(unexpected_poll_error(err))
            event = event or watch.check_deadline()
            if event:
                return resolve_event(event)
            time.sleep(watch.next_delay())

    def cancel_task(self, runway_task_id: str, route_family: str = REVERSE) -> CancelOutcome:
        """Ask the service to cancel a task: ``DELETE /runwayml/v1/tasks/{id}`` (official family).

        Whether to cancel is decided in :mod:`runway_provider.spend`; this only asks. Reverse-format
        tasks cannot be cancelled (no request is sent); a 404, 405 or 501 means the endpoint does
        not support it. Other failures raise the typed error of the answer.

        :param runway_task_id: The task.
        :param route_family: ``reverse`` or ``official`` (see :meth:`get_task`).
        """
        if _family(route_family) != OFFICIAL:
            return CancelOutcome.NOT_CANCELLABLE
        path = f"{OFFICIAL_TASKS_PATH}/{quote(runway_task_id, safe='')}"
        status, body = self._request("DELETE", path, None, runway_task_id=runway_task_id)
        return read_cancel_answer(body, status, runway_task_id=runway_task_id)

    async def acancel_task(self, runway_task_id: str, route_family: str = REVERSE) -> CancelOutcome:
        """Async :meth:`cancel_task`, for a trigger's ``on_kill``."""
        if _family(route_family) != OFFICIAL:
            return CancelOutcome.NOT_CANCELLABLE
        if self._async_session is None:
            async with self.async_client():
                return await self.acancel_task(runway_task_id, route_family)
        path = f"{OFFICIAL_TASKS_PATH}/{quote(runway_task_id, safe='')}"
        status, body = await self._arequest("DELETE", path, None)
        return read_cancel_answer(body, status, runway_task_id=runway_task_id)

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap authenticated call (a feed lookup of a made-up id) and say what happened."""
        probe = RunwayHook(self.runway_conn_id, poll_retries=0)
        try:
            probe.get_task(_CONNECTION_TEST_TASK_ID)
        except RunwayAuthenticationError as err:
            # Not str(err): it names the made-up task id the probe asked about.
            return False, (
                f"CometAPI at {probe.settings.base_url} refused the API key (HTTP {err.http_status}). "
                "Enter a valid CometAPI key in the API key field."
            )
        except RunwayError as err:
            return False, str(err)
        return True, f"Connected to CometAPI at {probe.settings.base_url}; the API key was accepted."

    # -- async API (triggers) ----------------------------------------------------------------

    async def aget_task(
        self, runway_task_id: str, route_family: str = REVERSE, *, deadline: float | None = None
    ) -> RunwayTask:
        """Async :meth:`get_task`. Uses the pooled session held by :meth:`async_client`, if any.

        :param deadline: Epoch seconds the poll, its retries included, must not outlive (a wait's
            deadline); each request gets at least one second.
        """
        if self._async_session is None:
            async with self.async_client():
                return await self.aget_task(runway_task_id, route_family, deadline=deadline)
        method, path, payload = _task_request(runway_task_id, route_family)
        try:
            status, body = await self._arequest(method, path, payload, deadline)
            return _normalize(body, status, runway_task_id, route_family)
        except RunwayAuthenticationError:
            # The key may have been rotated since this hook read the connection: read it once more.
            self._async_settings = None
            _SETTINGS_READS.forget(self.runway_conn_id)
            status, body = await self._arequest(method, path, payload, deadline)
            return _normalize(body, status, runway_task_id, route_family)

    def async_client(self) -> _AsyncClient:
        """``async with hook.async_client():`` shares the loop's pooled session for this host."""
        return _AsyncClient(self)

    # -- HTTP, sync --------------------------------------------------------------------------

    @cached_property
    def session(self) -> requests.Session:
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        session.headers.update(self.settings.headers)
        base = self.settings.base_url
        # requests picks the longest matching prefix: task lookups poll, everything else creates.
        create, poll = (
            _create_adapter_class()(max_retries=self._create_retry()),
            HTTPAdapter(max_retries=self._poll_retry()),
        )
        session.mount(base + "/runway/pro/", create)
        session.mount(base + "/runwayml/v1/", create)
        session.mount(base + FEED_PATH, poll)
        session.mount(base + OFFICIAL_TASKS_PATH + "/", poll)
        return session

    def _request(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None,
        *,
        create: bool = False,
        runway_task_id: str | None = None,
    ) -> tuple[int, Any]:
        import requests

        url = self.settings.base_url + path
        _SENDS.sent = False
        try:
            with self.session.request(
                method,
                url,
                json=payload,
                timeout=(min(CONNECT_TIMEOUT, self.settings.timeout), self.settings.timeout),
                allow_redirects=False,
                stream=True,
            ) as response:
                answer = bytearray()
                for chunk in response.iter_content(_READ_CHUNK):
                    answer += chunk
                    if len(answer) > MAX_ANSWER_BYTES:
                        break
        except requests.exceptions.RequestException as err:
            described = _describe(err, self.settings.api_key)
            if create and _SENDS.sent:
                raise RunwaySubmissionUncertainError(_uncertain_message(url, described), route=path) from None
            what = "Did not send the request to" if create else "Could not reach"
            raise RunwayTransientError(
                f"{what} CometAPI at {url}: {described}", runway_task_id=runway_task_id
            ) from None
        return response.status_code, decode_body(_answer_text(answer))

    def _poll_retry(self) -> Any:
        return self._retry(self.poll_retries, read=self.poll_retries, statuses=_POLL_RETRY_STATUSES)

    def _create_retry(self) -> Any:
        # read=0: once the request may have reached the service, never send it again.
        return self._retry(self.create_retries, read=0, statuses=_CREATE_REFUSED_STATUSES)

    def _retry(self, retries: int, *, read: int, statuses: frozenset[int]) -> Any:
        return _bounded_retry_class()(
            total=retries,
            connect=retries,
            read=read,
            status=retries,
            other=0,
            allowed_methods=frozenset({"GET", "POST", "DELETE"}),
            status_forcelist=statuses,
            backoff_factor=self.retry_backoff,
            backoff_max=self.retry_backoff_max,
            backoff_jitter=self.retry_backoff,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
            redirect=0,
        )

    # -- HTTP, async -------------------------------------------------------------------------

    async def _aget_settings(self) -> RunwayConnectionSettings:
        if self._async_settings is None:
            import aiohttp

            self._async_settings = settings = await _SETTINGS_READS.read(self)
            self._async_timeout = aiohttp.ClientTimeout(
                total=settings.timeout, sock_connect=min(CONNECT_TIMEOUT, settings.timeout)
            )
        return self._async_settings

    async def _arequest(
        self, method: str, path: str, payload: Mapping[str, Any] | None, deadline: float | None = None
    ) -> tuple[int, Any]:
        # Most polls succeed at once: only a failed first attempt pays for tenacity's machinery.
        try:
            return await self._arequest_once(method, path, payload, deadline)
        except RunwayTransientError as first_error:
            first_wait = max(self._backoff(1), first_error.retry_after or 0.0)
            if self.poll_retries < 1 or (deadline is not None and time.time() + first_wait >= deadline):
                raise
        from tenacity import AsyncRetrying, retry_if_exception_type

        await asyncio.sleep(first_wait)
        async for attempt in AsyncRetrying(
            # No retry past the wait's deadline: the wait decides what happens then.
            stop=lambda state: (
                state.attempt_number >= self.poll_retries
                or (deadline is not None and time.time() >= deadline)
            ),
            wait=lambda state: self._backoff(state.attempt_number + 1, state),
            retry=retry_if_exception_type(RunwayTransientError),
            reraise=True,
        ):
            with attempt:
                return await self._arequest_once(method, path, payload, deadline)
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def _arequest_once(
        self, method: str, path: str, payload: Mapping[str, Any] | None, deadline: float | None = None
    ) -> tuple[int, Any]:
        import aiohttp

        settings = await self._aget_settings()
        session = self._async_session
        if session is None:
            raise RuntimeError("RunwayHook._arequest_once needs a session from async_client()")
        url = settings.base_url + path
        try:
            async with session.request(
                method,
                url,
                json=payload,
                headers=settings.headers,
                timeout=self._async_timeout if deadline is None else _bounded(settings, deadline),
                allow_redirects=False,
            ) as response:
                answer = bytearray()
                while len(answer) <= MAX_ANSWER_BYTES and (chunk := await response.content.read(_READ_CHUNK)):
                    answer += chunk
                status = response.status
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            raise RunwayTransientError(
                f"Could not reach CometAPI at {url}: {_describe(err, settings.api_key)}"
            ) from None
        body = decode_body(_answer_text(answer))
        # The one retry rule (models.is_retryable_answer), as urllib3 applies it on the sync side.
        if is_retryable_answer(status, body):
            try:
                raise_for_error(body, status)
            except RunwayTransientError as err:
                err.retry_after = retry_after
                raise
        return status, body

    def _backoff(self, retry_number: int, retry_state: Any = None) -> float:
        """Exponential backoff with jitter (as urllib3 does for the sync half), or Retry-After."""
        backoff = float(min(self.retry_backoff_max, self.retry_backoff * 2 ** (retry_number - 1)))
        backoff += random.uniform(0, self.retry_backoff)
        error = retry_state.outcome.exception() if retry_state is not None and retry_state.outcome else None
        retry_after: float | None = getattr(error, "retry_after", None)
        return max(backoff, retry_after) if retry_after else backoff


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


class _AsyncClient:
    """``async with hook.async_client():`` holds a pooled session for the hook's async calls."""

    __slots__ = ("_base_url", "_hook")

    def __init__(self, hook: RunwayHook) -> None:
        self._hook = hook
        self._base_url = ""

    async def __aenter__(self) -> RunwayHook:
        settings = await self._hook._aget_settings()
        self._base_url = settings.base_url
        self._hook._async_session = _SESSION_POOL.acquire(self._base_url)
        return self._hook

    async def __aexit__(self, *exc: object) -> None:
        session, self._hook._async_session = self._hook._async_session, None
        if session is not None:
            await _SESSION_POOL.release(self._base_url, session)


class _SettingsReads:
    """Connection reads shared by the hooks of one event loop for a few seconds.

    10,000 tasks deferred together would otherwise read the same connection 10,000 times at once
    (each read goes through a thread); one read serves them all. A 401 forgets it.
    """

    ttl = 30.0

    def __init__(self) -> None:
        self._reads: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[RunwayConnectionSettings]]]
        ] = weakref.WeakKeyDictionary()

    async def read(self, hook: RunwayHook) -> RunwayConnectionSettings:
        loop = asyncio.get_running_loop()
        reads = self._reads.setdefault(loop, {})
        cached = reads.get(hook.runway_conn_id)
        if cached is None or cached[0] < time.monotonic():
            # The read runs in its own task: a caller cancelled while waiting (its trigger killed)
            # stops waiting, the read goes on for the others; a read that fails leaves the cache.
            read = loop.create_task(_read_settings(hook))
            cached = reads[hook.runway_conn_id] = (time.monotonic() + self.ttl, read)
            read.add_done_callback(lambda done: self._evict_failed(reads, hook.runway_conn_id, done))
        settings: RunwayConnectionSettings = await asyncio.shield(cached[1])
        return settings

    @staticmethod
    def _evict_failed(
        reads: dict[str, tuple[float, asyncio.Future[RunwayConnectionSettings]]],
        runway_conn_id: str,
        read: asyncio.Future[RunwayConnectionSettings],
    ) -> None:
        failed = read.cancelled() or read.exception() is not None
        if failed and reads.get(runway_conn_id, (0.0, None))[1] is read:
            del reads[runway_conn_id]

    def forget(self, runway_conn_id: str) -> None:
        self._reads.get(asyncio.get_running_loop(), {}).pop(runway_conn_id, None)


_SETTINGS_READS = _SettingsReads()
_SESSION_POOL = _SessionPool()


async def _read_settings(hook: RunwayHook) -> RunwayConnectionSettings:
    return _checked_settings(await hook.aget_connection(hook.runway_conn_id))


def _bounded(settings: RunwayConnectionSettings, deadline: float) -> aiohttp.ClientTimeout:
    """A request timeout that ends by ``deadline``, yet gives a late request a second to answer."""
    import aiohttp

    total = max(min(settings.timeout, deadline - time.time()), _MIN_REQUEST_SECONDS)
    return aiohttp.ClientTimeout(total=total, sock_connect=min(CONNECT_TIMEOUT, total))


def _checked_settings(conn: Connection) -> RunwayConnectionSettings:
    settings = RunwayConnectionSettings.from_connection(conn)
    _mask(settings.api_key)
    return settings


def _mask(secret: str) -> None:
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


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


def _task_request(runway_task_id: str, route_family: str) -> tuple[str, str, dict[str, Any] | None]:
    if _family(route_family) == OFFICIAL:
        return "GET", f"{OFFICIAL_TASKS_PATH}/{quote(runway_task_id, safe='')}", None
    return "POST", FEED_PATH, {"task_id": runway_task_id}


def _normalize(body: Any, status: int, runway_task_id: str, route_family: str) -> RunwayTask:
    # Runway answers 404 for a task it does not know (yet); the wrapper answers task_not_exist.
    not_found = frozenset({404}) if route_family == OFFICIAL else frozenset()
    return normalize_task(
        body, status, runway_task_id=runway_task_id, not_found_statuses=not_found, route_family=route_family
    )


def _add_options(payload: dict[str, Any], options: Any) -> None:
    if (checked_options := require_options(options)) is not None:
        payload["options"] = checked_options


def _add_common(payload: dict[str, Any], *, seed: Any, content_moderation: Any) -> None:
    if seed not in (None, ""):
        payload["seed"] = require_seed(seed)
    if content_moderation:
        payload["contentModeration"] = require_content_moderation(content_moderation)


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


def _family(route_family: str) -> str:
    if route_family not in ROUTE_FAMILIES:
        raise RunwayInputError(
            "route_family", f"expected one of {', '.join(ROUTE_FAMILIES)}, got {route_family!r}"
        )
    return route_family


def _uncertain_message(url: str, err: object) -> str:
    return (
        f"The create request to {url} may have reached CometAPI but no usable answer came back "
        f"({_describe(err)}). CometAPI may have created, and will bill, the generation. It was not "
        "sent again because CometAPI has no idempotency key."
    )


def _describe(err: object, secret: str | None = None) -> str:
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


def _parse_retry_after(value: str | None) -> float | None:
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
