"""What request produced which stored file: the record the transfer writes beside each result.

``RunwayToObjectStorageOperator`` writes, beside each stored object ``<name>``, a small JSON record
``<name>.runway.json`` (route, model, the request's fields without its webhook, the request
fingerprint that :mod:`runway_provider.spend` computes, the Runway task id, sha256, bytes, content
type, submitted and stored times), and the same record under the folder's index,
``_runway_index/<fingerprint>.json``, so that a rerun finds a stored result by its request without
listing the folder.

A generate operator given ``reuse_from`` asks :func:`find_reusable` before it creates anything:
a record for the same fingerprint whose object still exists with the recorded sha256 is reused,
and nothing is sent to the service. A changed request has another fingerprint; a missing object, a
checksum mismatch or an unreadable record is not reused, and the request is generated anew.

The key never reaches a record: the request body holds none, and its ``callback_url`` (which may
carry a token) is left out.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

RECORD_SUFFIX = ".runway.json"
INDEX_FOLDER = "_runway_index"
RECORD_VERSION = 1
# Request fields never written to a record: a webhook URL may carry a token.
_NOT_RECORDED = frozenset({"callback_url"})
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """The request behind a Runway task, as the operator that sent it knows it (XCom ``runway_request``).

    :param route: The create route's path.
    :param route_family: ``reverse`` or ``official``.
    :param fingerprint: sha256 of the route and the canonical body (:func:`runway_provider.spend.request_fingerprint`).
    :param request: The request's fields, without ``callback_url``.
    :param submitted_at: When the task was submitted, epoch seconds.
    :param reused: The stored result reused instead of generating, if any (a :class:`StoredResult` dict).
    """

    route: str
    route_family: str
    fingerprint: str
    request: dict[str, Any]
    submitted_at: float | None = None
    reused: dict[str, Any] | None = None

    @classmethod
    def of(
        cls,
        *,
        route: str,
        route_family: str,
        fingerprint: str,
        payload: Mapping[str, Any],
        submitted_at: float | None,
    ) -> RequestRecord:
        request = {key: value for key, value in payload.items() if key not in _NOT_RECORDED}
        return cls(route, route_family, fingerprint, request, submitted_at)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any) -> RequestRecord | None:
        """The record pushed to XCom, or None for anything else (an older provider pushed none)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return cls(
                route=str(value["route"]),
                route_family=str(value["route_family"]),
                fingerprint=str(value["fingerprint"]),
                request=dict(value.get("request") or {}),
                submitted_at=value.get("submitted_at"),
                reused=dict(value["reused"]) if isinstance(value.get("reused"), Mapping) else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class StoredResult:
    """One stored result and the request that produced it (the ``.runway.json`` record).

    :param name: The object's file name inside its folder.
    :param uri: The object's URI (without a connection id), as in the asset event.
    :param runway_task_id: The Runway task whose output it is.
    :param sha256: SHA-256 of the stored bytes.
    :param bytes: Size of the stored object.
    :param content_type: The media host's content type.
    :param stored_at: When it was stored, epoch seconds.
    :param route: The create route's path, when the request is known.
    :param route_family: ``reverse`` or ``official``, when known.
    :param model: The request's model, when it names one.
    :param fingerprint: The request fingerprint, when the request is known.
    :param request: The request's fields (no ``callback_url``), when known.
    :param submitted_at: When the task was submitted, when known.
    """

    name: str
    uri: str
    runway_task_id: str
    sha256: str
    bytes: int
    content_type: str
    stored_at: float
    route: str | None = None
    route_family: str | None = None
    model: str | None = None
    fingerprint: str | None = None
    request: dict[str, Any] = field(default_factory=dict)
    submitted_at: float | None = None
    record_version: int = RECORD_VERSION

    @classmethod
    def of(
        cls,
        *,
        name: str,
        uri: str,
        runway_task_id: str,
        sha256: str,
        size: int,
        content_type: str,
        stored_at: float,
        request: RequestRecord | None,
    ) -> StoredResult:
        known = request or RequestRecord("", "", "", {})
        model = known.request.get("model")
        return cls(
            name=name,
            uri=uri,
            runway_task_id=runway_task_id,
            sha256=sha256,
            bytes=size,
            content_type=content_type,
            stored_at=stored_at,
            route=known.route or None,
            route_family=known.route_family or None,
            model=model if isinstance(model, str) else None,
            fingerprint=known.fingerprint or None,
            request=known.request,
            submitted_at=known.submitted_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any) -> StoredResult:
        """Read a record; raises ValueError for anything that is not one."""
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        known = {name for name in cls.__dataclass_fields__}
        try:
            return cls(**{key: item for key, item in value.items() if key in known})
        except TypeError as err:
            raise ValueError(str(err)) from None


def record_path(target: ObjectStoragePath) -> ObjectStoragePath:
    """Where the record of the object ``target`` lives: beside it."""
    return target.parent / f"{target.name}{RECORD_SUFFIX}"


def index_path(folder: ObjectStoragePath, fingerprint: str) -> ObjectStoragePath:
    """Where a folder's index keeps the record of the result of one request."""
    return folder / INDEX_FOLDER / f"{fingerprint}.json"


def write(target: ObjectStoragePath, result: StoredResult) -> ObjectStoragePath:
    """Write ``result``'s record beside ``target`` and, for a known request, in the folder's index.

    Each is one small write: a reader sees the old record or the new one.
    """
    text = json.dumps(result.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    beside = record_path(target)
    beside.write_text(text)
    if result.fingerprint:
        index = index_path(target.parent, result.fingerprint)
        if index.protocol in ("", "file", "local"):
            os.makedirs(os.path.dirname(os.path.abspath(index.path)), exist_ok=True)
        index.write_text(text)
    return beside


def find_reusable(folder: ObjectStoragePath, fingerprint: str, log: Any) -> StoredResult | None:
    """The stored result of the request with ``fingerprint`` in ``folder``, if it is still intact.

    :param folder: Where earlier results were stored (the transfer's destination folder).
    :param fingerprint: The request fingerprint.
    :param log: Where to say why a record was not reused.
    """
    index = index_path(folder, fingerprint)
    if not index.exists():
        return None
    try:
        result = StoredResult.from_dict(json.loads(index.read_text()))
    except ValueError as err:
        log.warning("Not reusing %s: the record cannot be read (%s); generating anew.", index, err)
        return None
    stored = folder / result.name
    if result.fingerprint != fingerprint or os.sep in result.name or result.name.startswith("."):
        log.warning("Not reusing %s: the record does not describe this request; generating anew.", index)
        return None
    if not stored.exists():
        log.warning("Not reusing %s: %s is gone; generating anew.", index, stored)
        return None
    if sha256_of(stored) != result.sha256:
        log.warning("Not reusing %s: %s no longer has the recorded sha256; generating anew.", index, stored)
        return None
    return result


def sha256_of(path: ObjectStoragePath) -> str:
    """SHA-256 of a stored object, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as existing:  # type: ignore[no-untyped-call]  # untyped in Airflow
        while chunk := existing.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
