"""Operator that submits a Runway generation through CometAPI and, optionally, waits for it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf

from runway_provider.hooks.runway import RunwayHook
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


class RunwayGenerateOperator(RunwayTaskWaiter, BaseOperator):
    """Submit a Runway gen4 image-to-video generation (``POST /runway/pro/generate``).

    Every argument is checked before anything is sent. Right after submission the Runway task id
    is pushed to XCom key ``runway_task_id``; it is also the return value, so
    ``RunwayTaskSensor(runway_task_id=generate.output)`` waits on it.

    :param prompt: What the video shows; at most 1000 characters. Templated.
    :param image: Source image, an http(s) URL or a ``data:`` URI. Templated.
    :param ratio: ``W:H``, default ``1280:720``. Templated.
    :param model: Runway model, default ``gen4``. Templated.
    :param callback_url: Webhook CometAPI requires; defaults to the connection's extra
        ``callback_url``. Templated.
    :param style: Optional style, e.g. ``cinematic``. Templated.
    :param options: Optional advanced options dict (``seconds``, ``motion_vector``...). Templated.
    :param last_image: Optional end frame, an http(s) URL or a ``data:`` URI. Templated.
    :param runway_conn_id: The ``runway`` connection. Default ``runway_default``.
    :param wait_for_completion: Wait until the video is ready, pushing the finished task to XCom key
        ``runway_task``. Default False.
    :param deferrable: Wait in the triggerer, freeing the worker slot. Used only if
        ``wait_for_completion`` is True. Default ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status polls. Used only if ``wait_for_completion``.
    :param timeout: Seconds from submission to give up waiting; the generation may still finish and
        bill (CometAPI cannot cancel). Used only if ``wait_for_completion``.
    :param not_found_grace: Seconds after submission during which ``task_not_exist`` is normal.
        Used only if ``wait_for_completion``.
    """

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
        runway_conn_id: str = RunwayHook.default_conn_name,
        wait_for_completion: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        not_found_grace: float = DEFAULT_NOT_FOUND_GRACE,
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
        self.runway_conn_id = runway_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.not_found_grace = not_found_grace

    def execute(self, context: Context) -> str:
        submitted_at = time.time()
        runway_task_id = self.hook.submit_generate(
            prompt=self.prompt,
            image=self.image,
            ratio=self.ratio,
            model=self.model,
            callback_url=self.callback_url,
            style=self.style,
            options=self.options,
            last_image=self.last_image,
        )
        context["ti"].xcom_push(key=XCOM_RUNWAY_TASK_ID, value=runway_task_id)
        if not self.wait_for_completion:
            return runway_task_id
        if self.deferrable:
            task = self.defer_unless_finished(
                runway_task_id=runway_task_id,
                submitted_at=submitted_at,
                end_time=submitted_at + self.timeout,
            )
        else:
            task = self.hook.wait_for_task(
                runway_task_id,
                poll_interval=self.poll_interval,
                timeout=self.timeout - (time.time() - submitted_at),
                not_found_grace=self.not_found_grace,
                submitted_at=submitted_at,
            )
        return self._finish(context, task)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger: succeed on an explicit success event only."""
        return self._finish(context, resolve_event(event))

    def _finish(self, context: Context, task: RunwayTask) -> str:
        context["ti"].xcom_push(key=XCOM_RUNWAY_TASK, value=task.to_dict())
        self.log.info("Runway task %s succeeded: %s", task.runway_task_id, task.video_url)
        return task.runway_task_id
