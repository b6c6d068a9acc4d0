"""Operator that submits a Runway generation through CometAPI and, optionally, waits for it.

DAG files import this module when they are parsed: only what building an operator needs is
imported here (the route table, the poll schedule's checks); the hook, spend, lineage and the wait
decision are imported where ``execute`` uses them.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from runway_provider import routes
from runway_provider.compat import conf
from runway_provider.defaults import (
    DEFAULT_CONN_ID,
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_WAIT_TIMEOUT,
)
from runway_provider.links.runway import RunwayVideoLink
from runway_provider.pacing import PollSchedule

# Re-exported: users read the submitted task's XCom keys from the operator module.
from runway_provider.refs import XCOM_RUNWAY_TASK as XCOM_RUNWAY_TASK
from runway_provider.refs import XCOM_RUNWAY_TASK_ID as XCOM_RUNWAY_TASK_ID
from runway_provider.refs import XCOM_SUBMITTED_AT as XCOM_SUBMITTED_AT
from runway_provider.refs import TaskRef
from runway_provider.routes import Route
from runway_provider.wait_mixin import RunwayWaitMixin

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from runway_provider.lineage import RunwayOperatorLineage
    from runway_provider.models import RouteFamily, RunwayTask


class BaseRunwaySubmitOperator(RunwayWaitMixin, BaseOperator):
    """Submit one Runway job, keep its id across Airflow retries, and optionally wait for it.

    Subclasses give the create route and build its body (checking every argument). Whether to
    submit, reconnect or cancel is decided in :mod:`runway_provider.spend`, whose table says what
    each failure costs: before the POST a marker with the request's fingerprint is saved in
    ``task_state_store``, and right after the answer the task id, which is also pushed to XCom key
    ``runway_task_id``. A retry (or a clear) of the same request reconnects to that task while it
    runs or once it succeeded; a different request, or a task that failed, was cancelled or got
    lost, is submitted anew. A create whose answer was lost fails the task without retry
    (:class:`~runway_provider.exceptions.RunwaySubmissionUncertainError`), and later tries of the
    same request fail the same way instead of paying twice.

    :param runway_conn_id: The ``runway`` connection. Default ``runway_default``.
    :param wait_for_completion: Wait until the video is ready, pushing the finished task to XCom key
        ``runway_task``. Default False.
    :param deferrable: Wait in the triggerer, freeing the worker slot. Used only if
        ``wait_for_completion`` is True. Default ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status polls (±10%), a fixed schedule. Default None:
        the adaptive schedule, which paces polls by the task's status and progress within
        ``[min_poll_interval, max_poll_interval]``, and for the route's output (an image is polled
        every few seconds from the start, a video slowly until it runs) (``docs/behaviour.md``).
        ``poll_interval=10`` is the fixed schedule that was the default before. Used only if
        ``wait_for_completion``.
    :param min_poll_interval: Adaptive schedule: the shortest delay between polls. Default 4.
    :param max_poll_interval: Adaptive schedule: the longest delay between polls. Default 60.
    :param timeout: Seconds each try waits at most, from submission (or from reconnection on a
        retry). Used only if ``wait_for_completion``.
    :param not_found_grace: Seconds after submission during which ``task_not_exist`` is normal.
    :param cancel_on_kill: Cancel the generation when a user stops the task while it waits
        (marks it failed or clears it), on the worker or in the triggerer. Default True.
    :param cancel_on_timeout: Cancel the generation when the last try's wait times out; a try that
        Airflow will retry leaves it running for the retry to reconnect to. Default True.
        Only official-format tasks can be cancelled; reverse-format ones are logged as such.
    :param reuse_from: A folder where ``RunwayToObjectStorageOperator`` stored earlier results (its
        ``destination``; a path or URI such as ``s3://conn_id@bucket/videos/``). When it holds the
        result of this very request (same route and fields, by fingerprint), intact (same sha256),
        nothing is sent: the stored result's Runway task id is returned and XCom
        ``runway_request`` says it was reused, so the transfer downstream does nothing either (or,
        storing elsewhere, copies it from there). A changed request, a missing object, a changed
        checksum or a malformed record generates anew. Point it only at storage the team trusts:
        whoever can write there can make a run reuse what they wrote. Default None: always
        generate. Templated.
    """

    template_fields: Sequence[str] = ("reuse_from",)
    # The create route: its path, family and builder (runway_provider.routes); a class attribute,
    # but RunwaySubmitOperator's, read from its ``path``, is the instance's.
    route: Route[...]
    operator_extra_links = (RunwayVideoLink(),)

    def __init__(
        self,
        *,
        runway_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | None = None,
        min_poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        reuse_from: str | ObjectStoragePath | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runway_conn_id = runway_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_schedule = PollSchedule.from_options(
            poll_interval=poll_interval,
            min_poll_interval=min_poll_interval,
            max_poll_interval=max_poll_interval,
            output=self.route.output,
        )
        self.poll_interval = self.poll_schedule.fixed_interval
        self.timeout = timeout
        self.not_found_grace = not_found_grace
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self.reuse_from = reuse_from

    @property
    def route_family(self) -> RouteFamily:
        """Where this operator's tasks are looked up: its route's family."""
        return self.route.family

    @property
    def runway_task_xcom_keys(self) -> tuple[str, ...]:
        """Where the finished task is in XCom, for the "Runway video" link: nowhere without a wait."""
        return (XCOM_RUNWAY_TASK,) if self.wait_for_completion else ()

    def build_payload(self) -> dict[str, Any]:
        """Check the rendered arguments and build the create request body; sends nothing.

        The route's builder names the fields; the operator holds each under the same name.
        """
        fields = inspect.signature(self.route.build).parameters
        return self.hook.payload(self.route, **{name: getattr(self, name) for name in fields})

    def execute(self, context: Context) -> str:
        from runway_provider import lineage, spend
        from runway_provider.exceptions import RunwayTaskTimeoutError
        from runway_provider.models import RunwayTask, RunwayTaskStatus

        execute_started = time.time()
        payload = self.build_payload()
        self._lineage_payload = payload
        submission = spend.submit_or_resume(
            hook=self.hook,
            context=context,
            route=self.route,
            payload=payload,
            not_found_grace=self.not_found_grace,
            log=self.log,
            reuse_from=self._reuse_folder(),
        )
        ref = TaskRef(submission.runway_task_id, self.route.family)
        if submission.reused is not None:
            # Already generated and stored: finished, with the stored object as its output.
            stored = RunwayTask(
                ref.runway_task_id,
                RunwayTaskStatus.SUCCEEDED,
                output_urls=(submission.reused.uri,),
                route_family=ref.family,
            )
            return self._finish(context, stored)
        if not self.wait_for_completion:
            # The record stays: a later try or clear of this request reconnects to this task.
            self._lineage_facts = lineage.note_submission(self, ref.runway_task_id)
            return ref.runway_task_id
        end_time = time.time() + self.timeout
        try:
            if self.deferrable:
                task = self.defer_unless_finished(
                    context,
                    ref,
                    submitted_at=submission.submitted_at,
                    end_time=self.deferred_end_time(end_time, execute_started=execute_started),
                )
            else:
                task = self.wait_on_worker(
                    context, ref, submitted_at=submission.submitted_at, end_time=end_time
                )
        except RunwayTaskTimeoutError as err:
            self.settle_timeout(ref, last_status=err.status, will_retry=spend.retry_follows(context["ti"]))
            raise
        return self._finish(context, task)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger: succeed on an explicit success event only."""
        from runway_provider import spend
        from runway_provider.exceptions import RunwayTaskTimeoutError
        from runway_provider.wait_decision import resolve_event

        try:
            task = resolve_event(event)
        except RunwayTaskTimeoutError as err:
            ref = TaskRef(str(err.runway_task_id), self.route.family)
            self.settle_timeout(ref, last_status=err.status, will_retry=spend.retry_follows(context["ti"]))
            raise
        return self._finish(context, task)

    def _reuse_folder(self) -> ObjectStoragePath | None:
        if self.reuse_from is None or self.reuse_from == "":
            return None
        from airflow.sdk import ObjectStoragePath

        from runway_provider.exceptions import RunwayInputError

        if isinstance(self.reuse_from, ObjectStoragePath):
            return self.reuse_from
        if not isinstance(self.reuse_from, str):
            raise RunwayInputError(
                "reuse_from", f"expected a folder path or URI, got {self.reuse_from!r:.80}"
            )
        return ObjectStoragePath(self.reuse_from)

    def _finish(self, context: Context, task: RunwayTask) -> str:
        from runway_provider import lineage, spend
        from runway_provider.urls import public_url

        self.push_state(context, task)
        spend.mark_done(context, task.runway_task_id)
        # Host and path only: a signed result URL keeps its signature in the query.
        self.log.info("Runway task %s succeeded: %s", task.runway_task_id, public_url(task.video_url or ""))
        self._lineage_facts = lineage.note_submission(self, task.runway_task_id)
        return task.runway_task_id

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> RunwayOperatorLineage:
        """OpenLineage: the source media URLs read and the Runway task made (:mod:`runway_provider.lineage`)."""
        from runway_provider import lineage

        return lineage.operator_lineage(getattr(self, "_lineage_facts", None))


class RunwayGenerateOperator(BaseRunwaySubmitOperator):
    """Submit a Runway video generation (``POST /runway/pro/generate``): from an image, or from the
    prompt alone.

    Every argument is checked before anything is sent. Right after submission the Runway task id
    is pushed to XCom key ``runway_task_id``; it is also the return value, so
    ``RunwayTaskSensor(runway_task_id=generate.output)`` waits on it. An Airflow retry reconnects
    to the generation of the earlier try instead of paying for a new one (see
    :class:`BaseRunwaySubmitOperator`).

    :param prompt: What the video shows; at most 1000 characters. Templated.
    :param image: Source image, an http(s) URL or a ``data:`` URI. Optional: without it the video is
        made from the prompt alone, and ``options`` must give ``seconds`` and ``motion_vector``
        (``{x, y, z, r, bg_x_pan, bg_y_pan}``), checked before sending. Templated.
    :param ratio: ``W:H``, default ``1280:720``. Templated.
    :param model: Runway model, default ``gen4``. Templated.
    :param callback_url: Webhook CometAPI requires; defaults to the connection's extra
        ``callback_url``. Templated.
    :param style: Optional style, e.g. ``cinematic``. Templated.
    :param options: Optional advanced options dict (``seconds``, ``motion_vector``...). Templated.
    :param last_image: Optional end frame, an http(s) URL or a ``data:`` URI. Templated.
    :param kwargs: ``runway_conn_id``, ``wait_for_completion``, ``deferrable``, ``poll_interval``,
        ``timeout``, ``not_found_grace`` (see :class:`BaseRunwaySubmitOperator`) and
        ``BaseOperator`` arguments.
    """

    route = routes.GENERATE
    template_fields: Sequence[str] = (
        *BaseRunwaySubmitOperator.template_fields,
        "prompt",
        "image",
        "ratio",
        "model",
        "callback_url",
        "style",
        "options",
        "last_image",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"options": "json"}
    ui_color = "#e8e1fb"

    def __init__(
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.image = image
        self.ratio = ratio
        self.model = model
        self.callback_url = callback_url
        self.style = style
        self.options = options
        self.last_image = last_image


class RunwayImageToVideoOperator(BaseRunwaySubmitOperator):
    """Animate an image with Runway's official image-to-video (``POST /runwayml/v1/image_to_video``).

    Checks every argument against the model's rules before sending (e.g. ``gen4_turbo``: ratios
    1280:720, 720:1280, 1104:832, 832:1104, 960:960, 1584:672; duration 2–10 s). Wait on the task
    with ``RunwayTaskSensor(route_family="official")`` or ``wait_for_completion=True``.

    :param prompt_image: The first frame: an https URL or a ``data:`` URI, or first/last frames as
        ``[{"uri": ..., "position": "first"}, {"uri": ..., "position": "last"}]``. Templated.
    :param model: Default ``gen4_turbo``; known: ``gen3a_turbo``, ``gen4_turbo``, ``gen4.5``,
        ``veo3.1``, ``veo3.1_fast``. Any other name is sent as given with a warning. Templated.
    :param prompt_text: What happens in the video; at most 1000 characters (required for
        ``gen4.5``). Templated.
    :param ratio: Output size, one of the model's ratios. Templated.
    :param duration: Seconds of video, within the model's durations. Templated.
    :param seed: Seed for reproducible results, 0–4294967295. Templated.
    :param content_moderation: ``{"publicFigureThreshold": "auto" | "low"}``. Templated.
    :param kwargs: ``runway_conn_id``, ``wait_for_completion``, ``deferrable``, ``poll_interval``,
        ``timeout``, ``not_found_grace`` (see :class:`BaseRunwaySubmitOperator`) and ``BaseOperator``
        arguments.
    """

    route = routes.IMAGE_TO_VIDEO
    template_fields: Sequence[str] = (
        *BaseRunwaySubmitOperator.template_fields,
        "prompt_image",
        "model",
        "prompt_text",
        "ratio",
        "duration",
        "seed",
        "content_moderation",
    )

    def __init__(
        self,
        *,
        prompt_image: str | list[dict[str, str]],
        model: str = "gen4_turbo",
        prompt_text: str | None = None,
        ratio: str = "1280:720",
        duration: int | None = None,
        seed: int | None = None,
        content_moderation: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt_image = prompt_image
        self.model = model
        self.prompt_text = prompt_text
        self.ratio = ratio
        self.duration = duration
        self.seed = seed
        self.content_moderation = content_moderation


class RunwayVideoToVideoOperator(BaseRunwaySubmitOperator):
    """Restyle a video from a prompt (``POST /runwayml/v1/video_to_video``, e.g. model ``gen4_aleph``).

    :param video: The source video, an https URL or a ``data:`` URI. Templated.
    :param prompt_text: The transformation; at most 1000 characters. Templated.
    :param model: Default ``gen4_aleph`` (also known: ``aleph2``; others are sent with a warning). Templated.
    :param ratio: ``W:H`` of the output. Templated.
    :param references: Optional image URIs to guide the style. Templated.
    :param seed: Seed for reproducible results, 0–4294967295. Templated.
    :param content_moderation: ``{"publicFigureThreshold": "auto" | "low"}``. Templated.
    :param kwargs: See :class:`BaseRunwaySubmitOperator` and ``BaseOperator``.
    """

    route = routes.VIDEO_TO_VIDEO
    template_fields: Sequence[str] = (
        *BaseRunwaySubmitOperator.template_fields,
        "video",
        "prompt_text",
        "model",
        "ratio",
        "references",
        "seed",
        "content_moderation",
    )

    def __init__(
        self,
        *,
        video: str,
        prompt_text: str,
        model: str = "gen4_aleph",
        ratio: str = "1280:720",
        references: list[str] | None = None,
        seed: int | None = None,
        content_moderation: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video = video
        self.prompt_text = prompt_text
        self.model = model
        self.ratio = ratio
        self.references = references
        self.seed = seed
        self.content_moderation = content_moderation


class RunwayUpscaleVideoOperator(BaseRunwaySubmitOperator):
    """Upscale a video (``POST /runwayml/v1/video_upscale``, e.g. model ``upscale_v1``).

    :param video: The video to upscale, an https URL or a ``data:`` URI. Templated.
    :param model: Default ``upscale_v1`` (also known: ``magnific_video_upscaler_creative``; others
        are sent with a warning). Templated.
    :param kwargs: See :class:`BaseRunwaySubmitOperator` and ``BaseOperator``.
    """

    route = routes.UPSCALE_VIDEO
    template_fields: Sequence[str] = (*BaseRunwaySubmitOperator.template_fields, "video", "model")

    def __init__(self, *, video: str, model: str = "upscale_v1", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.video = video
        self.model = model


class RunwayTextToImageOperator(BaseRunwaySubmitOperator):
    """Make an image from a prompt and reference images (``POST /runwayml/v1/text_to_image``):
    storyboards, or first frames for :class:`RunwayImageToVideoOperator`.

    The task's output URL is an image (PNG or JPEG); the sensor and
    :class:`~runway_provider.transfers.runway_to_object_storage.RunwayToObjectStorageOperator`
    handle it like a video.

    :param prompt_text: What the image shows; at most 1000 characters; a reference can be named in
        it as ``@tag``. Templated.
    :param reference_images: 1 to 3 ``{"uri": ..., "tag": ...}`` (CometAPI requires at least one);
        ``uri`` an https URL or a ``data:`` URI, ``tag`` 3-16 letters, digits or ``_``. Templated.
    :param ratio: Output size, default ``1920:1080`` (known: 1920:1080, 1080:1920, 1024:1024,
        1360:768, 1080:1080, 1168:880, 1440:1080, 1080:1440, 1808:768, 2112:912, 1280:720,
        720:1280, 720:720, 960:720, 720:960, 1680:720). Templated.
    :param model: Default ``gen4_image`` (also known: ``gen4_image_turbo``; others are sent with a
        warning). Templated.
    :param seed: Seed for reproducible results, 0–4294967295. Templated.
    :param content_moderation: ``{"publicFigureThreshold": "auto" | "low"}``. Templated.
    :param kwargs: See :class:`BaseRunwaySubmitOperator` and ``BaseOperator``.
    """

    route = routes.TEXT_TO_IMAGE
    template_fields: Sequence[str] = (
        *BaseRunwaySubmitOperator.template_fields,
        "prompt_text",
        "reference_images",
        "ratio",
        "model",
        "seed",
        "content_moderation",
    )

    def __init__(
        self,
        *,
        prompt_text: str,
        reference_images: list[dict[str, str]],
        ratio: str = "1920:1080",
        model: str = "gen4_image",
        seed: int | None = None,
        content_moderation: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt_text = prompt_text
        self.reference_images = reference_images
        self.ratio = ratio
        self.model = model
        self.seed = seed
        self.content_moderation = content_moderation


class RunwayCharacterPerformanceOperator(BaseRunwaySubmitOperator):
    """Animate a character from a performance video, Act-Two (``POST /runwayml/v1/character_performance``).

    :param character: The character, an image or a video (https URL or ``data:`` URI). Templated.
    :param reference_video: The performance to transfer, a video URL or ``data:`` URI. Templated.
    :param character_type: ``image`` (default) or ``video``. Templated.
    :param model: ``act_two``. Templated.
    :param ratio: ``W:H`` of the output. Templated.
    :param body_control: Transfer body movement too (not only the face): true or false, or its text
        from a template. Templated.
    :param expression_intensity: 1–5, how strongly expressions transfer. Templated.
    :param seed: Seed for reproducible results, 0–4294967295. Templated.
    :param content_moderation: ``{"publicFigureThreshold": "auto" | "low"}``. Templated.
    :param kwargs: See :class:`BaseRunwaySubmitOperator` and ``BaseOperator``.
    """

    route = routes.CHARACTER_PERFORMANCE
    template_fields: Sequence[str] = (
        *BaseRunwaySubmitOperator.template_fields,
        "character",
        "reference_video",
        "character_type",
        "model",
        "ratio",
        "body_control",
        "expression_intensity",
        "seed",
        "content_moderation",
    )

    def __init__(
        self,
        *,
        character: str,
        reference_video: str,
        character_type: str = "image",
        model: str = "act_two",
        ratio: str = "1280:720",
        body_control: bool | str | None = None,
        expression_intensity: int | None = None,
        seed: int | None = None,
        content_moderation: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.character = character
        self.reference_video = reference_video
        self.character_type = character_type
        self.model = model
        self.ratio = ratio
        self.body_control = body_control
        self.expression_intensity = expression_intensity
        self.seed = seed
        self.content_moderation = content_moderation


class RunwayReverseVideoToVideoOperator(BaseRunwaySubmitOperator):
    """Reverse-format video style redraw (``POST /runway/pro/video2video``), polled through the feed.

    CometAPI documents this route only briefly: the body is ``video``, ``prompt``, ``model``,
    ``callback_url`` and optional ``options``, passed through as given.

    :param video: The source video, an http(s) URL or a ``data:`` URI. Templated.
    :param prompt: The redraw's description; at most 1000 characters. Templated.
    :param model: Runway model, default ``gen4``. Templated.
    :param callback_url: Webhook; defaults to the connection's ``callback_url``. Templated.
    :param options: Optional advanced options. Templated.
    :param kwargs: See :class:`BaseRunwaySubmitOperator` and ``BaseOperator``.
    """

    route = routes.REVERSE_VIDEO_TO_VIDEO
    template_fields: Sequence[str] = (
        *BaseRunwaySubmitOperator.template_fields,
        "video",
        "prompt",
        "model",
        "callback_url",
        "options",
    )

    def __init__(
        self,
        *,
        video: str,
        prompt: str,
        model: str = "gen4",
        callback_url: str | None = None,
        options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video = video
        self.prompt = prompt
        self.model = model
        self.callback_url = callback_url
        self.options = options


class RunwayActOneOperator(BaseRunwaySubmitOperator):
    """Reverse-format Act-One expression transfer (``POST /runway/pro/act_one``), polled through the feed.

    :param video: The driving performance video, an http(s) URL or a ``data:`` URI. Templated.
    :param image: The character image, an http(s) URL or a ``data:`` URI. Templated.
    :param callback_url: Webhook; defaults to the connection's ``callback_url``. Templated.
    :param options: Optional advanced options. Templated.
    :param kwargs: See :class:`BaseRunwaySubmitOperator` and ``BaseOperator``.
    """

    route = routes.ACT_ONE
    template_fields: Sequence[str] = (
        *BaseRunwaySubmitOperator.template_fields,
        "video",
        "image",
        "callback_url",
        "options",
    )

    def __init__(
        self,
        *,
        video: str,
        image: str,
        callback_url: str | None = None,
        options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video = video
        self.image = image
        self.callback_url = callback_url
        self.options = options


class RunwaySubmitOperator(BaseRunwaySubmitOperator):
    """Submit a raw body to any CometAPI Runway create path, with the same spend safety and waits.

    For a route this provider does not list yet (a new model's route, a field its builders do not
    know): the body is sent as given, checked only to be a JSON object, so the service, not the
    provider, says what is wrong with it. Everything around the create is the same as for the route
    table's operators: the fingerprint marker, reconnect on retry, cancel on the last try's timeout
    (official family), ``reuse_from``, ``wait_for_completion`` and ``deferrable``; a
    ``RunwayTaskSensor`` or ``RunwayToObjectStorageOperator`` downstream needs no ``route_family``.
    Prefer the route's own operator where there is one: it checks every field before sending.

    :param path: The create path: ``/runwayml/v1/...`` (official family: tasks looked up by id,
        cancellable) or ``/runway/...`` (CometAPI's reverse format: tasks looked up through the
        feed, never cancellable). The family is read from this prefix when the DAG is parsed, so a
        templated path must start with it written out. Templated.
    :param body: The request body: a dict, or JSON text of an object. On a ``/runway/`` path
        without ``callback_url`` the connection's extra ``callback_url`` is added. Templated.
    :param kwargs: ``runway_conn_id``, ``wait_for_completion``, ``deferrable``, ``poll_interval``,
        ``timeout``, ``not_found_grace``, ``reuse_from`` (see :class:`BaseRunwaySubmitOperator`) and
        ``BaseOperator`` arguments.
    """

    template_fields: Sequence[str] = (*BaseRunwaySubmitOperator.template_fields, "path", "body")
    template_fields_renderers: ClassVar[dict[str, str]] = {"body": "json"}

    def __init__(self, *, path: str, body: dict[str, Any] | str, **kwargs: Any) -> None:
        # Before the base reads the family. A templated path is checked whole once rendered.
        self.route = routes.Route(
            "submit", str(path), routes.path_family(path), routes.output_of(str(path)), routes.raw_body
        )
        if "{{" not in path:
            self.route = routes.raw_route(path)
        super().__init__(**kwargs)
        self.path = path
        self.body = body

    def build_payload(self) -> dict[str, Any]:
        """Check the rendered path and body; the body as given, plus a reverse route's webhook."""
        # The family cannot change here: the prefix it is read from is written out, not templated.
        self.route = routes.raw_route(self.path)
        body = routes.raw_body(body=self.body)
        return self.hook.payload(self.route, body=body, callback_url=body.get("callback_url"))
