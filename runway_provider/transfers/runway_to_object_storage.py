"""Copy a generated Runway video into the team's own storage, and announce it as an Airflow asset."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import Asset, AssetAlias, BaseOperator, ObjectStoragePath

from runway_provider.exceptions import RunwayError, RunwayInputError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RunwayTask

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Context

DEFAULT_ASSET_ALIAS = "runway-videos"
DEFAULT_MAX_BYTES = 500 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
_ACCEPTED_CONTENT_TYPES = ("video/", "application/octet-stream", "binary/octet-stream")
# Result URLs are signed and expire: on these answers the task is fetched again for a fresh URL.
_EXPIRED_URL_STATUSES = frozenset({401, 403, 404, 410})


class RunwayTransferError(RunwayError):
    """The video could not be stored; nothing was left at the destination."""


@dataclass(frozen=True)
class _Download:
    local_path: str
    size: int
    sha256: str
    content_type: str


class RunwayToObjectStorageOperator(BaseOperator):
    """Stream a Runway video to any Airflow object storage (``file://``, ``s3://conn_id@bucket/key``...).

    The download streams in 1 MiB chunks (memory stays flat whatever the size), checks the content
    type and the file signature, and computes the SHA-256 on the way. The destination never holds a
    partial object: the stream lands in a temporary file first, then a local destination gets it by
    an atomic rename and an object store gets it in one upload. The CometAPI key is never sent to
    the media host. An existing object with the same SHA-256 makes the task a no-op, so retries are
    idempotent; different content there is an error unless ``overwrite``.

    Returns ``{uri, bytes, sha256, content_type, runway_task_id, stored_at}`` and adds an asset event for
    ``Asset(uri)`` to the ``AssetAlias`` ``asset_alias`` (extra: ``runway_task_id``, ``sha256``,
    ``bytes``), so downstream DAGs can be scheduled on new videos.

    :param runway_task: The finished task (the sensor's return value, a dict) or a Runway task id,
        in which case the task is fetched for a fresh URL. Templated.
    :param destination: Where to store: a path or URI, or an ``ObjectStoragePath``; one ending in
        ``/`` gets ``<runway_task_id>.mp4``. Templated.
    :param destination_conn_id: Connection of the object store, unless given in the URI.
    :param overwrite: Replace different content already at the destination. Default False.
    :param max_bytes: Largest video accepted. Default 500 MB.
    :param asset_alias: Name of the ``AssetAlias`` that receives the asset event.
    :param runway_conn_id: The ``runway`` connection, used only to fetch a fresh URL.
    """

    template_fields: Sequence[str] = ("runway_task", "destination")
    template_fields_renderers: ClassVar[dict[str, str]] = {"runway_task": "json"}
    ui_color = "#e1f0fb"

    def __init__(
        self,
        *,
        runway_task: Mapping[str, Any] | str,
        destination: str | ObjectStoragePath,
        destination_conn_id: str | None = None,
        overwrite: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        asset_alias: str = DEFAULT_ASSET_ALIAS,
        runway_conn_id: str = RunwayHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [AssetAlias(asset_alias)])
        super().__init__(**kwargs)
        self.runway_task = runway_task
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.overwrite = overwrite
        self.max_bytes = max_bytes
        self.asset_alias = asset_alias
        self.runway_conn_id = runway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        task = self._resolve_task()
        target = self._target(task.runway_task_id)
        download = self._download(task)
        try:
            stored = self._store(download, target)
        finally:
            if os.path.exists(download.local_path):
                os.unlink(download.local_path)
        uri = _asset_uri(target)
        result = {
            "uri": uri,
            "bytes": download.size,
            "sha256": download.sha256,
            "content_type": download.content_type,
            "runway_task_id": task.runway_task_id,
            "stored_at": time.time(),
        }
        context["outlet_events"][AssetAlias(self.asset_alias)].add(
            Asset(uri),
            extra={"runway_task_id": task.runway_task_id, "sha256": download.sha256, "bytes": download.size},
        )
        self.log.info("%s %s (%d bytes, sha256 %s)", stored, uri, download.size, download.sha256)
        return result

    # -- steps -------------------------------------------------------------------------------

    def _resolve_task(self) -> RunwayTask:
        value = self.runway_task
        if isinstance(value, str) and value.strip():
            return RunwayHook(self.runway_conn_id).get_task(value.strip())
        if isinstance(value, Mapping):
            try:
                return RunwayTask.from_dict(value)
            except (KeyError, TypeError, ValueError) as err:
                raise RunwayInputError("runway_task", f"is not a Runway task dict ({err!r})") from None
        raise RunwayInputError("runway_task", f"expected a task dict or a Runway task id, got {value!r:.80}")

    def _target(self, runway_task_id: str) -> ObjectStoragePath:
        destination = self.destination
        if isinstance(destination, ObjectStoragePath):
            target = destination
            text = str(destination)
        elif isinstance(destination, str) and destination.strip():
            text = destination.strip()
            target = ObjectStoragePath(text, conn_id=self.destination_conn_id)
        else:
            raise RunwayInputError(
                "destination", f"expected a path, a URI or an ObjectStoragePath, got {destination!r:.80}"
            )
        if text.endswith("/"):
            target = target / f"{runway_task_id}.mp4"
        return target

    def _download(self, task: RunwayTask) -> _Download:
        """Stream the video to a local temporary file; refuse what is not a video or too large."""
        if not task.video_url:
            raise RunwayTransferError(
                f"Runway task {task.runway_task_id} has no video URL (status {task.status.value})",
                runway_task_id=task.runway_task_id,
            )
        response = self._open(task)
        try:
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not content_type.startswith(_ACCEPTED_CONTENT_TYPES):
                raise RunwayTransferError(
                    f"The media host answered {content_type or 'no content type'} for Runway task "
                    f"{task.runway_task_id}, not a video.",
                    runway_task_id=task.runway_task_id,
                )
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise RunwayTransferError(
                    f"The video of Runway task {task.runway_task_id} is {int(declared):,} bytes, over "
                    f"max_bytes={self.max_bytes:,}.",
                    runway_task_id=task.runway_task_id,
                )
            return self._stream_to_temp(task, response, content_type or "application/octet-stream")
        finally:
            response.close()

    def _open(self, task: RunwayTask) -> requests.Response:
        import requests

        # A bare session: the CometAPI key must never travel to the media host.
        with requests.Session() as session:
            response = self._get(session, task.video_url or "", task)
            if response.status_code in _EXPIRED_URL_STATUSES:
                response.close()
                fresh = RunwayHook(self.runway_conn_id).get_task(task.runway_task_id)
                self.log.info(
                    "The video URL of Runway task %s was refused; fetched a fresh one.", task.runway_task_id
                )
                response = self._get(session, fresh.video_url or "", task)
        if response.status_code != 200:
            response.close()
            raise RunwayTransferError(
                f"Downloading the video of Runway task {task.runway_task_id} failed: HTTP {response.status_code}",
                runway_task_id=task.runway_task_id,
            )
        return response

    @staticmethod
    def _get(session: requests.Session, url: str, task: RunwayTask) -> requests.Response:
        import requests

        try:
            return session.get(url, stream=True, timeout=(10, 60))
        except requests.exceptions.RequestException as err:
            raise RunwayTransferError(
                f"Downloading the video of Runway task {task.runway_task_id} failed: {type(err).__name__}: {err}",
                runway_task_id=task.runway_task_id,
            ) from None

    def _stream_to_temp(self, task: RunwayTask, response: requests.Response, content_type: str) -> _Download:
        import requests

        digest, size = hashlib.sha256(), 0
        handle, local_path = tempfile.mkstemp(prefix="runway-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as local:
                for chunk in response.iter_content(CHUNK_BYTES):
                    if size == 0 and not _looks_like_video(chunk):
                        raise RunwayTransferError(
                            f"The download for Runway task {task.runway_task_id} does not start like an MP4, "
                            "MOV or WebM file.",
                            runway_task_id=task.runway_task_id,
                        )
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise RunwayTransferError(
                            f"The video of Runway task {task.runway_task_id} exceeds max_bytes={self.max_bytes:,}.",
                            runway_task_id=task.runway_task_id,
                        )
                    digest.update(chunk)
                    local.write(chunk)
        except requests.exceptions.RequestException as err:
            os.unlink(local_path)
            raise RunwayTransferError(
                f"The download of Runway task {task.runway_task_id} broke after {size:,} bytes: {err}",
                runway_task_id=task.runway_task_id,
            ) from None
        except BaseException:
            os.unlink(local_path)
            raise
        if size == 0:
            os.unlink(local_path)
            raise RunwayTransferError(f"The video of Runway task {task.runway_task_id} is empty.")
        return _Download(
            local_path=local_path, size=size, sha256=digest.hexdigest(), content_type=content_type
        )

    def _store(self, download: _Download, target: ObjectStoragePath) -> str:
        """Put the verified file at ``target`` in one step; return what was done."""
        if target.exists():
            if _sha256_of(target) == download.sha256:
                return "Already stored, unchanged:"
            if not self.overwrite:
                raise RunwayTransferError(
                    f"{target} already holds different content; set overwrite=True to replace it."
                )
        if target.protocol in ("", "file", "local"):
            # Written beside the target, then renamed: readers see the whole file or nothing.
            final = os.path.abspath(target.path)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            staging = os.path.join(
                os.path.dirname(final), f".{os.path.basename(final)}.{uuid.uuid4().hex}.part"
            )
            try:
                with open(download.local_path, "rb") as source, open(staging, "wb") as sink:
                    while chunk := source.read(CHUNK_BYTES):
                        sink.write(chunk)
                os.replace(staging, final)
            finally:
                if os.path.exists(staging):
                    os.unlink(staging)
        else:
            # Object stores have no rename: the object appears only when the one upload completes.
            target.fs.put_file(download.local_path, target.path)
        return "Stored"


def _looks_like_video(head: bytes) -> bool:
    return head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3"


def _sha256_of(path: ObjectStoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as existing:  # type: ignore[no-untyped-call]  # untyped in Airflow
        while chunk := existing.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _asset_uri(target: ObjectStoragePath) -> str:
    """The target's URI without the connection id (asset URIs are stored in clear text)."""
    protocol = target.protocol or "file"
    if protocol in ("file", "local"):
        return f"file://{os.path.abspath(target.path)}"
    return f"{protocol}://{target.path}"
