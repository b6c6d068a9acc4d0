"""Operator that submits a Runway generation through CometAPI and, optionally, waits for it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf

from runway_provider.exceptions import RunwayTransientError
from runway_provider.links.runway import RunwayVideoLink
from runway_provider.hooks.runway import GENERATE_PATH, RunwayHook
from runway_provider.lifecycle import (
    DEFAULT_NOT_FOUND_GRACE,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    RunwayTaskWaiter,
)
from runway_provider.models import RunwayTask
from runway_provider.watch import resolve_event

if TYPE_CHECKING:
    from airflow.sdk import Context

XCOM_RUNWAY_TASK_ID = "runway_task_id"
XCOM_RUNWAY_TASK = "runway_task"
XCOM_SUBMITTED_AT = "runway_submitted_at"
# task_state_store key: the submitted task, kept across the tries of one task instance.
STATE_SUBMITTED_TASK = "runway_submitted_task"


class BaseRunwaySubmitOperator(RunwayTaskWaiter, BaseOperator):
    """Submit one Runway job, keep its id across Airflow retries, and optionally wait for it.

    Subclasses give the create route and build its body (checking every argument). Right after
    submission the task id is saved in ``task_state_store`` and pushed to XCom key
    ``runway_task_id``. A retry of the same task instance looks the saved task up: still running,
    it waits on it again instead of paying for a new one; succeeded, it returns it; failed,
    cancelled or lost, it submits anew and says so.

    :param runway_conn_id: The ``runway`` connection. Default ``runway_default``.
    :param wait_for_completion: Wait until the video is ready, pushing the finished task to XCom key
        ``runway_task``. Default False.
    :param deferrable: Wait in the triggerer, freeing the worker slot. Used only if
        ``wait_for_completion`` is True. Default ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status polls. Used only if ``wait_for_completion``.
    :param timeout: Seconds each try waits at most, from submission (or from reconnection on a
        retry); the generation may still finish and bill (CometAPI cannot cancel). Used only if
        ``wait_for_completion``.
    :param not_found_grace: Seconds after submission during which ``task_not_exist`` is normal.
    """

    route: str
    operator_extra_links = (RunwayVideoLink(),)

    def __init__(
        self,
        *,
        runway_conn_id: str = RunwayHook.default_conn_name,
        wait_for_completion: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runway_conn_id = runway_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.not_found_grace = not_found_grace

    def build_payload(self) -> dict[str, Any]:
        """Check the rendered arguments and build the create request body; sends nothing."""
        raise NotImplementedError

    def execute(self, context: Context) -> str:
        payload = self.build_payload()
        store = context.get("task_state_store")
        if store is None:
            self.log.warning(
                "This Airflow gives the task no task_state_store (it needs Airflow 3.3+ and Airflow's task "
                "runner): if this try fails after submitting, a retry will submit, and pay for, a new "
                "generation instead of reconnecting to this one."
            )
        resumed = self._resume(store)
        if resumed is not None:
            runway_task_id, submitted_at = resumed
            wait_from = time.time()
        else:
            submitted_at = wait_from = time.time()
            runway_task_id = self.hook.submit_payload(self.route, payload)
            if store is not None:
                store.set(STATE_SUBMITTED_TASK, {"runway_task_id": runway_task_id, "submitted_at": submitted_at})
        context["ti"].xcom_push(key=XCOM_RUNWAY_TASK_ID, value=runway_task_id)
        context["ti"].xcom_push(key=XCOM_SUBMITTED_AT, value=submitted_at)
        if not self.wait_for_completion:
            _forget(context)
            return runway_task_id
        if self.deferrable:
            task = self.defer_unless_finished(
                runway_task_id=runway_task_id, submitted_at=submitted_at, end_time=wait_from + self.timeout
            )
        else:
            task = self.hook.wait_for_task(
                runway_task_id,
                poll_interval=self.poll_interval,
                timeout=wait_from + self.timeout - time.time(),
                not_found_grace=self.not_found_grace,
                submitted_at=submitted_at,
            )
        return self._finish(context, task)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger: succeed on an explicit success event only."""
        return self._finish(context, resolve_event(event))

    def _resume(self, store: Any) -> tuple[str, float] | None:
        """The task an earlier try submitted, if it is worth waiting on or already done."""
        saved = store.get(STATE_SUBMITTED_TASK) if store is not None else None
        if not saved:
            return None
        runway_task_id, submitted_at = str(saved["runway_task_id"]), float(saved["submitted_at"])
        try:
            task = self.hook.get_task(runway_task_id)
        except RunwayTransientError as err:
            self.log.warning(
                "Could not check Runway task %s from an earlier try (%s); reconnecting to it rather than "
                "paying for a new one.",
                runway_task_id,
                err,
            )
            return runway_task_id, submitted_at
        watch = self.watch(runway_task_id=runway_task_id, submitted_at=submitted_at, end_time=time.time())
        event = watch.observe(task)
        if event is None:
            self.log.info(
                "Reconnecting to Runway task %s submitted by an earlier try (status %s); not submitting again.",
                runway_task_id,
                task.status.value,
            )
            return runway_task_id, submitted_at
        if event["status"] == "success":
            self.log.info("Runway task %s from an earlier try already succeeded; not submitting again.", runway_task_id)
            return runway_task_id, submitted_at
        self.log.warning(
            "Runway task %s from an earlier try ended without a video (%s); submitting a new generation.",
            runway_task_id,
            event["message"],
        )
        return None

    def _finish(self, context: Context, task: RunwayTask) -> str:
        context["ti"].xcom_push(key=XCOM_RUNWAY_TASK, value=task.to_dict())
        _forget(context)
        self.log.info("Runway task %s succeeded: %s", task.runway_task_id, task.video_url)
        return task.runway_task_id


def _forget(context: Context) -> None:
    """Once this task instance has succeeded, a later clear and rerun should generate anew."""
    store = context.get("task_state_store")
    if store is not None:
        store.delete(STATE_SUBMITTED_TASK)


class RunwayGenerateOperator(BaseRunwaySubmitOperator):
    """Submit a Runway gen4 image-to-video generation (``POST /runway/pro/generate``).

    Every argument is checked before anything is sent. Right after submission the Runway task id
    is pushed to XCom key ``runway_task_id``; it is also the return value, so
    ``RunwayTaskSensor(runway_task_id=generate.output)`` waits on it. An Airflow retry reconnects
    to the generation of the earlier try instead of paying for a new one (see
    :class:`BaseRunwaySubmitOperator`).

    :param prompt: What the video shows; at most 1000 characters. Templated.
    :param image: Source image, an http(s) URL or a ``data:`` URI. Templated.
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

    route = GENERATE_PATH
    template_fields: Sequence[str] = (
        "prompt",
        "image",
        "ratio",
        "model",
        "callback_url",
        "style",
        "options",
        "last_image",
    )
    template_fields_renderers = {"options": "json"}
    ui_color = "#e8e1fb"

    def __init__(
        self,
        *,
        prompt: str,
        image: str,
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

    def build_payload(self) -> dict[str, Any]:
        return self.hook.generate_payload(
            prompt=self.prompt,
            image=self.image,
            ratio=self.ratio,
            model=self.model,
            callback_url=self.callback_url,
            style=self.style,
            options=self.options,
            last_image=self.last_image,
        )
