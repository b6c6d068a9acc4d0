"""What request produced which stored file: the record the transfer writes beside each result.

``RunwayToObjectStorageOperator`` writes, beside each stored object ``<name>``, a small JSON record
``<name>.runway.json`` (route, model, the request's fields without its webhook, the request
fingerprint that :mod:`runway_provider.spend` computes, the Runway task id, sha256, bytes, content
type, submitted and stored times), and the same record under the folder's index,
``_runway_index/<fingerprint>.json``, so that a rerun finds a stored result by its request without
listing the folder.

A generate operator given ``reuse_from`` asks :func:`find_reusable` before it creates anything:
a record for the same fingerprint whose object still exists with the recorded sha256 and size is reused,
and nothing is sent to the service. A changed request has another fingerprint; a missing object, a
checksum mismatch, a record that is malformed (every field is type-checked by
:meth:`StoredResult.from_dict`) or that disagrees with the record beside its object is not reused,
and the request is generated anew. Records are read, not believed: where the reused object is
comes from the folder searched and the recorded file name, never from the record's ``uri``.

What a record (and XCom ``runway_request``) keeps of the request is :func:`recordable`: never the
key (the body holds none), nor ``callback_url`` (a webhook URL may carry a token), nor an http(s)
URL's query, fragment or credentials (a presigned URL's signature), nor a ``data:`` URI's media,
which is summarised as ``{"media_type", "length", "sha256"}`` of the bytes it carries.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from runway_provider.models import OutputKind, RouteFamily
from runway_provider.routes import output_of
from runway_provider.urls import public_url

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

RECORD_SUFFIX = ".runway.json"
INDEX_FOLDER = "_runway_index"
RECORD_VERSION = 1
# Request fields never written to a record: a webhook URL may carry a token.
_NOT_RECORDED = frozenset({"callback_url"})
_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The longest file name the common file systems and object stores' key segments take.
_MAX_NAME = 255


@dataclass(frozen=True)
class RequestRecord:
    """The request behind a Runway task, as the operator that sent it knows it (XCom ``runway_request``).

    :param route: The create route's path.
    :param route_family: ``reverse`` or ``official``.
    :param fingerprint: sha256 of the route and the canonical body (:func:`runway_provider.spend.request_fingerprint`).
    :param request: What may be kept of the request's fields (:func:`recordable`).
    :param submitted_at: When the task was submitted, epoch seconds.
    :param reused: The stored result reused instead of generating, if any (a :class:`StoredResult` dict
        whose ``uri`` is where it was found, without a connection id).
    :param reused_conn_id: The storage connection of the folder it was found in (``reuse_from``'s), if any:
        with ``reused["uri"]`` it lets a transfer copy the object from there.
    """

    route: str
    route_family: str
    fingerprint: str
    request: dict[str, Any]
    submitted_at: float | None = None
    reused: dict[str, Any] | None = None
    reused_conn_id: str | None = None

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
        return cls(route, route_family, fingerprint, recordable(payload), submitted_at)

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
                # Pushed by an earlier provider, it may hold data: URIs and signed URLs whole.
                request=recordable(dict(value.get("request") or {})),
                submitted_at=value.get("submitted_at"),
                reused=dict(value["reused"]) if isinstance(value.get("reused"), Mapping) else None,
                reused_conn_id=value.get("reused_conn_id")
                if isinstance(value.get("reused_conn_id"), str)
                else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class StoredResult:
    """One stored result and the request that produced it (the ``.runway.json`` record).

    :param name: The object's file name inside its folder: a plain name, no path.
    :param uri: The object's URI (without a connection id), as in the asset event. Written for people
        and lineage; never read back as where the object is (see :func:`find_reusable`).
    :param runway_task_id: The Runway task whose output it is.
    :param sha256: SHA-256 of the stored bytes.
    :param bytes: Size of the stored object.
    :param content_type: The media host's content type.
    :param stored_at: When it was stored, epoch seconds.
    :param route: The create route's path, when the request is known.
    :param route_family: ``reverse`` or ``official``, when known.
    :param model: The request's model, when it names one.
    :param fingerprint: The request fingerprint, when the request is known.
    :param request: What a record keeps of the request (:func:`recordable`), when known.
    :param submitted_at: When the task was submitted, when known.
    :param billed: What the generation was billed for (:func:`billed_for`), when the request is known.
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
    billed: dict[str, Any] | None = None
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
            billed=billed_for(known.route, known.request) if request is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Any) -> StoredResult:
        """Read a record, checking every field's type; raises ValueError for anything that is not one.

        Keys this provider does not know are ignored (a later version may add some).
        """
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        read: dict[str, Any] = {}
        for key, (check, expected) in _FIELD_CHECKS.items():
            if key not in value:
                if key in _REQUIRED:
                    raise ValueError(f"{key!r} is missing")
                continue
            if not check(value[key]):
                raise ValueError(f"{key!r} is not {expected} (got {type(value[key]).__name__})")
            read[key] = value[key]
        # An earlier provider kept data: URIs and signed URLs whole: what is reused is cut like a new record.
        read["request"] = recordable(read.get("request", {}))
        return cls(**read)


def _plain_name(value: Any) -> bool:
    # A file the transfer stored in the folder itself: not outside it, not below it, not hidden (a
    # staging file of a download), not a record.
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_NAME
        and not value.startswith(".")
        and not value.endswith(RECORD_SUFFIX)
        and not any(char in value for char in ("/", "\\", "\0", os.sep))
    )


def _time(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _sha256(value: Any) -> bool:
    return isinstance(value, str) and bool(_SHA256.match(value))


# Each field of a record: how it is checked, and what it should be (for the warning).
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (_plain_name, "a plain file name"),
    "uri": (_text, "a string"),
    "runway_task_id": (lambda value: isinstance(value, str) and bool(value.strip()), "a task id"),
    "sha256": (_sha256, "64 hex digits"),
    "bytes": (lambda value: type(value) is int and value >= 0, "a non-negative integer"),
    "content_type": (_text, "a string"),
    "stored_at": (_time, "a time"),
    "route": (_optional(_text), "a string or null"),
    "route_family": (
        _optional(lambda value: value in {family.value for family in RouteFamily}),
        "a route family or null",
    ),
    "model": (_optional(_text), "a string or null"),
    "fingerprint": (_optional(_sha256), "64 hex digits or null"),
    "request": (lambda value: isinstance(value, dict), "an object"),
    "submitted_at": (_optional(_time), "a time or null"),
    "billed": (_optional(lambda value: isinstance(value, dict)), "an object or null"),
    "record_version": (lambda value: type(value) is int and value == RECORD_VERSION, f"{RECORD_VERSION}"),
}


_REQUIRED = frozenset(
    item.name
    for item in dataclasses.fields(StoredResult)
    if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
)


def billed_for(route: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """What a generation is billed for, read once from its route and request: ``route``, ``model``,
    ``output`` (``video`` or ``image``), ``seconds`` of video or ``images``, and ``ratio``.

    ``seconds`` comes from the request (``duration``, or ``options.seconds`` on the reverse routes);
    None where the request does not say it, as when the output follows an input video's length.
    An image route bills one image per task.

    :param route: The create route's path.
    :param request: The request's fields, as recorded (:func:`recordable`).
    """
    output = output_of(route)
    options = request.get("options")
    seconds = request.get("duration")
    if seconds is None and isinstance(options, Mapping):
        seconds = options.get("seconds")
    model, ratio = request.get("model"), request.get("ratio")
    billed: dict[str, Any] = {
        "route": route,
        "model": model if isinstance(model, str) else None,
        "output": output.value,
        "ratio": ratio if isinstance(ratio, str) else None,
    }
    if output is OutputKind.IMAGE:
        billed["images"] = 1
    else:
        known = isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0
        billed["seconds"] = seconds if known else None
    return billed


def recordable(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a record and XCom keep of a request body: every field but ``callback_url``, with, at any
    depth, http(s) URLs cut to scheme, host and path and ``data:`` URIs summarised
    (:func:`data_uri_summary`).

    The request fingerprint is computed over the body as sent, not over this.
    """
    return {key: _recordable(value) for key, value in payload.items() if key not in _NOT_RECORDED}


def _recordable(value: Any) -> Any:
    if isinstance(value, str):
        return data_uri_summary(value) if value[:5].lower() == "data:" else public_url(value)
    if isinstance(value, Mapping):
        return {key: _recordable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_recordable(item) for item in value]
    return value


def data_uri_summary(uri: str) -> dict[str, Any]:
    """``{"media_type", "length", "sha256"}`` of a ``data:`` URI: its media type and the size and
    SHA-256 of the bytes it carries (base64-decoded, or percent-decoded without ``;base64``), so that
    a record says which image was sent without holding it."""
    header, _, data = uri[5:].partition(",")
    media_type = header.split(";")[0].strip().lower() or "text/plain"
    carried = _data_bytes(data) if header.lower().endswith(";base64") else unquote_to_bytes(data)
    return {"media_type": media_type, "length": len(carried), "sha256": hashlib.sha256(carried).hexdigest()}


def _data_bytes(data: str) -> bytes:
    # Validation accepts the URL-safe alphabet and a missing padding too.
    text = data.strip().translate(str.maketrans("-_", "+/"))
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        return data.encode()  # not base64 after all (an unchecked field): the text is what was sent


def object_uri(target: ObjectStoragePath) -> str:
    """The URI of a stored object without the connection id (asset URIs are stored in clear text)."""
    protocol = target.protocol or "file"
    if protocol in ("file", "local"):
        return f"file://{os.path.abspath(target.path)}"
    return f"{protocol}://{target.path}"


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

    Its ``uri`` is where it is: ``folder`` and the recorded name, whatever the record says. A
    malformed record, one for another request, one the record beside the object contradicts, a
    missing object or a changed checksum gives None with one warning saying which.

    :param folder: Where earlier results were stored (the transfer's destination folder).
    :param fingerprint: The request fingerprint.
    :param log: Where to say why a record was not reused.
    """
    index = index_path(folder, fingerprint)
    if not index.exists():
        return None
    try:
        result = _read(index)
        stored = folder / result.name
        beside = record_path(stored)
        if result.fingerprint != fingerprint:
            why = "the record does not describe this request"
        elif not stored.is_file():
            why = f"{stored} is gone"
        elif not beside.is_file() or _read(beside) != result:
            why = f"the record beside {stored} does not say the same"
        elif _content(stored) != (result.sha256, result.bytes):
            why = f"{stored} no longer has the recorded sha256 and size"
        else:
            return dataclasses.replace(result, uri=object_uri(stored))
    except RecursionError:  # JSON nested deeper than Python reads
        why = "a record cannot be read (nested too deep)"
    except ValueError as err:
        why = f"a record cannot be read ({err})"
    log.warning("Not reusing %s: %s; generating anew.", index, why)
    return None


def _read(path: ObjectStoragePath) -> StoredResult:
    """A record file; ValueError when it is no JSON or no record (storage errors are not caught:
    a retry may read it, where generating anew would pay)."""
    return StoredResult.from_dict(json.loads(path.read_text()))


def sha256_of(path: ObjectStoragePath) -> str:
    """SHA-256 of a stored object, read in chunks."""
    return _content(path)[0]


def _content(path: ObjectStoragePath) -> tuple[str, int]:
    """SHA-256 and size of a stored object, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as existing:  # type: ignore[no-untyped-call]  # untyped in Airflow
        while chunk := existing.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
