"""The provider's data: a Runway task as every module reads it, its status and where it came from.

This module knows nothing of HTTP or of CometAPI's answer shapes: :mod:`runway_provider.protocol`
reads those and hands out :class:`RunwayTask`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

MAX_RAW_CHARS = 4096


class RouteFamily(str, Enum):
    """How a task is looked up: reverse-format tasks (``/runway/pro/*``) through the feed,
    official-format ones (``/runwayml/v1/*``) by id. Each family knows only its own tasks.

    A ``str`` enum compared with ``==``: a hook called from DAG code with the plain name
    (``"official"``) behaves as with the member."""

    REVERSE = "reverse"
    OFFICIAL = "official"


class OutputKind(str, Enum):
    """What a route's task outputs: the transfer stores either, and a wait is paced for it."""

    VIDEO = "video"
    IMAGE = "image"


class RunwayTaskStatus(str, Enum):
    """Normalized status of a Runway task."""

    PENDING = "PENDING"
    # Runway accepted the task but queues it past the account's concurrency limit: not failed.
    THROTTLED = "THROTTLED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {RunwayTaskStatus.SUCCEEDED, RunwayTaskStatus.FAILED, RunwayTaskStatus.CANCELLED}
)
NON_TERMINAL_STATUSES = frozenset(
    {RunwayTaskStatus.PENDING, RunwayTaskStatus.THROTTLED, RunwayTaskStatus.RUNNING, RunwayTaskStatus.UNKNOWN}
)

# Every status spelling seen in the wrapper (new-api), in Runway's own API and in the legacy feed.


@dataclass(frozen=True)
class RunwayTask:
    """A Runway task as the rest of the provider sees it; JSON-serializable through :meth:`to_dict`.

    :param runway_task_id: Runway's (CometAPI's) task id.
    :param status: Normalized status.
    :param visible: False while the service answers ``task_not_exist`` for this id.
    :param progress: Fraction done, 0..1, when the service reports it.
    :param output_urls: Every output URL found, in the service's order.
    :param failure: The service's failure text, if any.
    :param failure_code: Runway's ``failureCode``, if any (e.g. ``SAFETY.INPUT.TEXT``).
    :param service_status: The status string as the service sent it, for diagnostics.
    :param raw: The answer's task object, for diagnostics.
    :param route_family: ``reverse`` or ``official``: where the task came from, so that every
        consumer (sensor, transfer) looks it up on the right route. Required: every task is read
        from one family's route.
    """

    runway_task_id: str
    status: RunwayTaskStatus
    visible: bool = True
    progress: float | None = None
    output_urls: tuple[str, ...] = ()
    failure: str | None = None
    failure_code: str | None = None
    service_status: str | None = None
    raw: Mapping[str, Any] | None = field(default=None, compare=False)
    route_family: RouteFamily = field(kw_only=True)

    @property
    def video_url(self) -> str | None:
        """The first output URL, the generated video."""
        return self.output_urls[0] if self.output_urls else None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def to_dict(self) -> dict[str, Any]:
        raw = dict(self.raw) if self.raw is not None else None
        if raw is not None:
            text = json.dumps(raw, ensure_ascii=False, default=str)
            if len(text) > MAX_RAW_CHARS:
                # XCom and trigger events land in the metadata database: keep a bounded excerpt.
                raw = {"truncated": True, "excerpt": text[:MAX_RAW_CHARS]}
        return {
            "runway_task_id": self.runway_task_id,
            "status": self.status.value,
            "visible": self.visible,
            "progress": self.progress,
            "video_url": self.video_url,
            "output_urls": list(self.output_urls),
            "failure": self.failure,
            "failure_code": self.failure_code,
            "service_status": self.service_status,
            "raw": raw,
            "route_family": self.route_family.value,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> RunwayTask:
        return cls(
            runway_task_id=str(value["runway_task_id"]),
            status=RunwayTaskStatus(value["status"]),
            visible=bool(value.get("visible", True)),
            progress=value.get("progress"),
            output_urls=tuple(value.get("output_urls") or ()),
            failure=value.get("failure"),
            failure_code=value.get("failure_code"),
            service_status=value.get("service_status"),
            raw=value.get("raw"),
            route_family=RouteFamily(value["route_family"]),
        )


class CancelOutcome(str, Enum):
    """What a cancel request achieved."""

    CANCELLED = "cancelled"
    # The endpoint answered 404, 405 or 501: CometAPI does not document the DELETE route.
    UNSUPPORTED = "unsupported"
    # Reverse-format tasks have no cancel route at all; nothing was sent.
    NOT_CANCELLABLE = "not_cancellable"
