"""Copy a generated Runway video or image into the team's own storage, and announce it as an Airflow asset."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import Asset, AssetAlias, BaseOperator, ObjectStoragePath

from runway_provider import compat, destinations, refs
from runway_provider.defaults import DEFAULT_CONN_ID
from runway_provider.exceptions import RunwayInputError, RunwayTransferError
from runway_provider.models import RunwayTask, RunwayTaskStatus
from runway_provider.records import RequestRecord, StoredResult, object_uri, record_path, sha256_of
from runway_provider.records import write as write_record
from runway_provider.refs import TaskRef, Upstream

if TYPE_CHECKING:
    from airflow.sdk import Context

    from runway_provider.hooks.media import MediaClient, MediaFile
    from runway_provider.hooks.runway import RunwayHook
    from runway_provider.lineage import RunwayOperatorLineage
    from runway_provider.models import RouteFamily

DEFAULT_ASSET_ALIAS = "runway-videos"
DEFAULT_MAX_BYTES = 500 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
DEFAULT_DOWNLOAD_TIMEOUT = 1800.0
# A task id names a file: letters, digits, ".", "_", "-", not starting with a dot, nothing more.
_SAFE_TASK_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


class RunwayToObjectStorageOperator(BaseOperator):
    """Stream a Runway video or image to any Airflow object storage (``file://``, ``s3://conn_id@bucket/key``...).

    The download streams in 1 MiB chunks (memory stays flat whatever the size), checks the content
    type and the file signature (MP4, MOV, WebM; PNG, JPEG, WebP from text-to-image), and computes
    the SHA-256 on the way. The destination never holds a
    partial object: the stream lands in a temporary file first, then a local destination gets it by
    an atomic rename and an object store gets it in one upload. The CometAPI key is never sent to
    the media host. An existing object with the same SHA-256 makes the task a no-op, so retries are
    idempotent; different content there is an error unless ``overwrite``.

    Beside the object it writes ``<name>.runway.json``, the record of what request produced it
    (route, model, the request's fields without its webhook, the request fingerprint, Runway task
    id, sha256, bytes, content type, times; see :mod:`runway_provider.records`), read from XCom
    ``runway_request`` of the Runway operator (or sensor) whose output ``runway_task`` is. A task
    that operator reused from storage (``reuse_from``) is recognised: when this destination already
    holds it intact, nothing is downloaded, written or announced; otherwise it is copied from where
    the operator found it, its sha256 checked again on the way, and never fetched from the service
    (whose URL may have expired).

    Returns ``{uri, bytes, sha256, content_type, runway_task_id, stored_at, record_uri, reused, billed}`` and,
    for a new object, adds an asset event for ``Asset(uri)`` to the ``AssetAlias`` ``asset_alias``
    (extra: ``runway_task_id``, ``sha256``, ``bytes``), so downstream DAGs can be scheduled on new videos.

    :param runway_task: The finished task (the sensor's return value, a dict) or a Runway task id,
        in which case the task is fetched for a fresh URL. Templated.
    :param destination: Where to store: a path or URI, or an ``ObjectStoragePath``. A folder (see
        ``destination_folder``) gets ``<runway_task_id>`` with the extension of the content
        (``.mp4``, ``.webm``, ``.png``, ``.jpg``, ``.webp``), the task id checked first (letters,
        digits, ``.``, ``_``, ``-``). A string must end in ``/`` (a folder) or have an extension
        (a file); with its scheme's packages it is checked when the DAG is parsed, or, templated,
        when the task starts, before any download (:mod:`runway_provider.destinations`). Templated.
    :param destination_folder: Whether ``destination`` is a folder. Default: a string ending in
        ``/`` is one; an ``ObjectStoragePath`` (which drops a trailing slash) is one when it exists
        as a folder. Pass True for a new folder given as an ``ObjectStoragePath``.
    :param destination_conn_id: Connection of the object store, unless given in the URI.
    :param overwrite: Replace different content already at the destination. Default False.
    :param max_bytes: Largest file accepted. Default 500 MB.
    :param asset_alias: Name of the ``AssetAlias`` that receives the asset event.
    :param runway_conn_id: The ``runway`` connection, used to fetch a fresh URL and for its extra
        ``allowed_media_hosts``: media hosts on loopback, private, link-local or metadata addresses
        are refused unless listed there (host names, IPs or CIDRs).
    :param download_timeout: Seconds of wall clock the whole download may take, redirects and a
        refreshed URL included: a host still sending then is cut off. Default 1800.
    :param route_family: Where to look the task up for a fresh URL. Default: the task dict's own
        ``route_family``, else the family of the Runway operator whose output ``runway_task`` is,
        else the family that the one Runway operator upstream recorded with its request (a
        templated id), else ``reverse``.
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
        runway_conn_id: str = DEFAULT_CONN_ID,
        destination_folder: bool | None = None,
        download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
        route_family: RouteFamily | str | None = None,
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
        self.destination_folder = destination_folder
        self.download_timeout = download_timeout
        # The argument as given (checked now); where the task lives is resolved when the transfer runs.
        self.route_family = refs.checked_family(route_family) if route_family is not None else None
        # The Runway operator (or sensor) whose output ``runway_task`` is, known now.
        self._upstream = Upstream.of(runway_task)
        if (
            isinstance(destination, str)
            and destination.strip()
            and not destinations.is_templated(destination)
        ):
            # Checked when the DAG is parsed: a wrong destination is found before any run pays.
            destinations.check_form(destination.strip(), folder=destination_folder)

    def execute(self, context: Context) -> dict[str, Any]:
        from runway_provider import lineage

        # Before anything is looked up, downloaded or copied: a rendered template is checked only now.
        self._destination(None)
        upstream = self._upstream or Upstream.above(self)
        pulled = upstream.pull_request(context) if upstream is not None else None
        request = RequestRecord.from_dict(pulled)
        found = self._reused(request)
        fetch: Callable[[], MediaFile]
        if found is not None:
            reused, source = found
            ref = self._ref(reused.runway_task_id, reused.to_dict(), upstream, pulled)
            unchanged = self._already_here(reused, ref.family)
            if unchanged is not None:
                return unchanged
            # Stored elsewhere already, and checked there: copied from there, never fetched from the
            # service by task id again (its URL may have expired; the copy needs no URL).
            task = RunwayTask(ref.runway_task_id, RunwayTaskStatus.SUCCEEDED, route_family=ref.family)
            fetch = functools.partial(self._copy, source, reused)
        else:
            task = self._resolve_task(upstream, pulled)
            fetch = functools.partial(
                self.media.download,
                task,
                fresh_task=lambda: self.hook.get_task(task.runway_task_id, task.route_family),
            )
        destination, is_folder = self._destination(task.runway_task_id)
        download = fetch()
        try:
            # A folder gets <runway_task_id> with the extension the content has (.mp4, .png, ...).
            target = self._named(destination, task.runway_task_id, download) if is_folder else destination
            stored = self._store(download, target)
        finally:
            if os.path.exists(download.local_path):
                os.unlink(download.local_path)
        uri = object_uri(target)
        record = StoredResult.of(
            name=target.name,
            uri=uri,
            runway_task_id=task.runway_task_id,
            sha256=download.sha256,
            size=download.size,
            content_type=download.content_type,
            stored_at=time.time(),
            request=request,
        )
        record_uri = object_uri(write_record(target, record))
        context["outlet_events"][AssetAlias(self.asset_alias)].add(
            Asset(uri),
            extra={"runway_task_id": task.runway_task_id, "sha256": download.sha256, "bytes": download.size},
        )
        self.log.info("%s %s (%d bytes, sha256 %s)", stored, uri, download.size, download.sha256)
        self._lineage_facts = lineage.note_transfer(self, record, task.route_family)
        return _result(record, record_uri, reused=False)

    def _reused(self, request: RequestRecord | None) -> tuple[StoredResult, ObjectStoragePath] | None:
        """The stored result the Runway operator reused, and where it found it intact; None if it made a task."""
        if request is None or request.reused is None:
            return None
        try:
            reused = StoredResult.from_dict(request.reused)
        except ValueError as err:
            # The operator checked what it pushed: only another provider version or a hand-made XCom gets here.
            raise RunwayTransferError(
                f"The Runway operator upstream reused a stored result that cannot be read ({err})."
            ) from None
        return reused, compat.storage_path(reused.uri, request.reused_conn_id)

    def _ref(self, runway_task_id: str, own: Any, upstream: Upstream | None, pulled: Any) -> TaskRef:
        """Where the task lives (:func:`runway_provider.refs.resolve`); ``own`` is what it says itself."""
        return refs.resolve(
            runway_task_id,
            explicit=self.route_family,
            own=refs.recorded_family(own),
            upstream=upstream,
            request=pulled,
        )

    def _already_here(self, reused: StoredResult, family: RouteFamily) -> dict[str, Any] | None:
        """The reused result, when this destination holds it intact: then there is nothing to do."""
        destination, is_folder = self._destination(reused.runway_task_id)
        target = destination / reused.name if is_folder else destination
        if not target.exists() or sha256_of(target) != reused.sha256:
            self.log.info(
                "Runway task %s was reused from another place than %s: copying it here.",
                reused.runway_task_id,
                target,
            )
            return None
        here = dataclasses.replace(reused, uri=object_uri(target))
        self.log.info("Reused, already stored and unchanged: %s; nothing to do.", here.uri)
        from runway_provider import lineage

        self._lineage_facts = lineage.note_transfer(self, here, family)
        return _result(here, object_uri(record_path(target)), reused=True)

    def _copy(self, source: ObjectStoragePath, reused: StoredResult) -> MediaFile:
        """Copy a reused object to a local temporary file, checking on the way that it still has the
        sha256 it had when the Runway operator reused it."""
        from runway_provider.hooks.media import MediaFile

        digest, size = hashlib.sha256(), 0
        if source.is_file():
            handle, local_path = tempfile.mkstemp(prefix="runway-", suffix=".part")
            try:
                with os.fdopen(handle, "wb") as local, source.open("rb") as stored:  # type: ignore[no-untyped-call]
                    while chunk := stored.read(CHUNK_BYTES):
                        digest.update(chunk)
                        size += len(chunk)
                        local.write(chunk)
            except BaseException:
                os.unlink(local_path)
                raise
            if digest.hexdigest() == reused.sha256:
                # The reused file's own extension: its name checked in its record, its content by its sha256.
                extension = os.path.splitext(reused.name)[1]
                return MediaFile(
                    local_path=local_path,
                    size=size,
                    sha256=reused.sha256,
                    content_type=reused.content_type,
                    extension=extension,
                )
            os.unlink(local_path)
        raise RunwayTransferError(
            f"{object_uri(source)}, reused for Runway task {reused.runway_task_id}, is gone or changed since the "
            "Runway operator checked it; nothing was stored. Clear that operator's task: it checks again, and "
            "generates anew what is no longer intact.",
            runway_task_id=reused.runway_task_id,
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> RunwayOperatorLineage:
        """OpenLineage: the Runway task read and the object stored (:mod:`runway_provider.lineage`)."""
        from runway_provider import lineage

        return lineage.operator_lineage(getattr(self, "_lineage_facts", None))

    @cached_property
    def hook(self) -> RunwayHook:
        """The run's one Runway hook: task lookups, the media hosts allowed and lineage share it."""
        from runway_provider.hooks.runway import RunwayHook

        return RunwayHook(self.runway_conn_id)

    @cached_property
    def media(self) -> MediaClient:
        """The media host's client, imported here: DAG parsing need not load requests."""
        from runway_provider.hooks.media import MediaClient

        return MediaClient(
            # Read only for a host that is not public: a public URL needs no Runway connection.
            allowed_hosts=lambda: self.hook.settings.allowed_media_hosts,
            max_bytes=self.max_bytes,
            timeout=self.download_timeout,
        )

    # -- steps -------------------------------------------------------------------------------

    def _resolve_task(self, upstream: Upstream | None, pulled: Any) -> RunwayTask:
        value = self.runway_task
        if isinstance(value, str) and value.strip():
            ref = self._ref(value.strip(), None, upstream, pulled)
            return self.hook.get_task(ref.runway_task_id, ref.family)
        if isinstance(value, Mapping):
            try:
                ref = self._ref(str(value["runway_task_id"]), value, upstream, pulled)
                return RunwayTask.from_dict({**value, "route_family": ref.family.value})
            except (KeyError, TypeError, ValueError) as err:
                raise RunwayInputError("runway_task", f"is not a Runway task dict ({err!r})") from None
        raise RunwayInputError("runway_task", f"expected a task dict or a Runway task id, got {value!r:.80}")

    def _destination(self, runway_task_id: str | None) -> tuple[ObjectStoragePath, bool]:
        """Where to store and whether it is a folder, checked (see :mod:`runway_provider.destinations`);
        a folder's file name, from ``runway_task_id``, too, when given."""
        destination = self.destination
        if isinstance(destination, ObjectStoragePath):
            target = destination
            text = str(destination)
        elif isinstance(destination, str) and destination.strip():
            text = destination.strip()
            destinations.check_form(text, folder=self.destination_folder)
            target = compat.storage_path(text, self.destination_conn_id)
        else:
            raise RunwayInputError(
                "destination", f"expected a path, a URI or an ObjectStoragePath, got {destination!r:.80}"
            )
        if runway_task_id is None:
            destinations.check_reachable(target, text)
        is_folder = self.destination_folder
        if is_folder is None:
            is_folder = text.endswith("/") or (isinstance(destination, ObjectStoragePath) and target.is_dir())
        if runway_task_id is not None and is_folder and not _SAFE_TASK_ID.match(runway_task_id):
            raise RunwayTransferError(
                f"Runway task id {runway_task_id!r:.80} cannot name a file: expected letters, digits, '.', '_' "
                "and '-', not starting with a dot. Give destination a file name instead of a folder.",
                runway_task_id=runway_task_id,
            )
        return target, is_folder

    @staticmethod
    def _named(folder: ObjectStoragePath, runway_task_id: str, download: MediaFile) -> ObjectStoragePath:
        named = folder / f"{runway_task_id}{download.extension}"
        if os.path.dirname(named.path.rstrip("/")) != folder.path.rstrip("/"):
            raise RunwayTransferError(f"{named} is not inside {folder}.", runway_task_id=runway_task_id)
        return named

    def _store(self, download: MediaFile, target: ObjectStoragePath) -> str:
        """Put the verified file at ``target`` in one step; return what was done."""
        if target.exists():
            if sha256_of(target) == download.sha256:
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


def _result(record: StoredResult, record_uri: str, *, reused: bool) -> dict[str, Any]:
    return {
        "uri": record.uri,
        "bytes": record.bytes,
        "sha256": record.sha256,
        "content_type": record.content_type,
        "runway_task_id": record.runway_task_id,
        "stored_at": record.stored_at,
        "record_uri": record_uri,
        "reused": reused,
        "billed": record.billed,
    }
