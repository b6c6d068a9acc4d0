"""OpenLineage for the Runway operators and the transfer: which media a run read and what it made.

Used only with ``apache-airflow-providers-openlineage`` installed (the provider's ``openlineage``
extra) and configured; without it nothing here runs and nothing from OpenLineage is imported. The
operators and the transfer import this module inside their methods, so DAG parsing never pays for
it.

Datasets, following OpenLineage's naming conventions (``namespace`` = ``scheme://authority`` of the
data source, ``name`` = the dataset's path in it):

=================================  ===================================  ==============================
dataset                            namespace                            name
=================================  ===================================  ==============================
a source image or video URL        ``https://media.example.com``        ``/frames/boat.jpg``
                                   (scheme, host, a non-default port)   (the path; query dropped)
the Runway task                    ``runway://api.cometapi.com``        ``official/<runway_task_id>``
                                   (host of the connection's base URL)  (route family / task id)
a stored object, local file        ``file`` (``file://<host>`` with a   ``/abs/path/to/video.mp4``
                                   host)
a stored object, S3 (GCS...)       ``s3://<bucket>``                    ``runway/<key>.mp4``
=================================  ===================================  ==============================

A submit operator reads its source media and outputs the Runway task; the transfer reads the
Runway task and outputs the stored object, so a lineage graph joins them on the task. The task is
named by its route family because each family looks tasks up by its own ids.

Never sent: the API key, the webhook (``callback_url``), a URL's query string (signed URLs carry
their signature there), user name or password, or fragment, the prompt and the ``options``, and
``data:`` URIs. A ``data:`` URI is the media itself, not a place: it has no host to make a
namespace of, nothing else can read or produce it by name, and sending it would copy up to 16 MB
of base64 media into every event and the lineage store. The submit run carries one ``tags`` run
facet: the route's path and the model. Not the request fingerprint: it is an unsalted hash of the
request, so whoever reads the events could confirm a guessed prompt by hashing it. The stored
object carries its sha256 as its dataset version and its size.

Facts are noted on the worker, in the task's own process, at the moment the task succeeds (a
deferred task resumes in a new process: the facts are noted there). The OpenLineage listener then
builds its event in a forked child, where this module only converts the noted facts: no
connection, XCom or network is read there.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from runway_provider.models import RouteFamily
from runway_provider.urls import authority, public_parts

if TYPE_CHECKING:
    from typing import TypeAlias

    from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

    from runway_provider.records import StoredResult
    from runway_provider.routes import Route

    # What the operators' get_openlineage_facets_on_complete return.
    RunwayOperatorLineage: TypeAlias = OperatorLineage[Dataset, RunFacet]

log = logging.getLogger(__name__)

RUNWAY_SCHEME = "runway"
TAG_SOURCE = "airflow-provider-runway"
# Body keys of the create routes that hold source media: a URL string, a {"uri"} dict, or a list of either.
_MEDIA_KEYS = (
    "image",
    "last_image",
    "promptImage",
    "video",
    "videoUri",
    "references",
    "referenceImages",
    "character",
    "reference",
)
# Object store schemes that name the same store differently (fsspec, Airflow) -> OpenLineage's.
_STORE_SCHEMES = {"gcs": "gs", "local": "file", "": "file"}


class DatasetId(NamedTuple):
    """An OpenLineage dataset's identity."""

    namespace: str
    name: str


@dataclass(frozen=True)
class LineageFacts:
    """What one successful run read and made, noted on the worker; converted to ``OperatorLineage``.

    :param inputs: The datasets read.
    :param outputs: The datasets written.
    :param run_tags: ``(key, value)`` pairs for the run's ``tags`` facet.
    :param output_version: The version of the (single) output, e.g. the stored object's sha256.
    :param output_bytes: The size of the (single) output, in bytes.
    """

    inputs: tuple[DatasetId, ...] = ()
    outputs: tuple[DatasetId, ...] = ()
    run_tags: tuple[tuple[str, str], ...] = ()
    output_version: str | None = None
    output_bytes: int | None = None


# -- naming ---------------------------------------------------------------------------------------


def url_dataset(url: str) -> DatasetId | None:
    """An http(s) media URL as a dataset: ``scheme://host[:port]`` and the path (:func:`runway_provider.urls.public_parts`).

    The query (where signed URLs keep their signature), the fragment and any user name or password
    are dropped. ``data:`` URIs, and anything that is not an http(s) URL with a host, give None.
    """
    parts = public_parts(url)
    return DatasetId(*parts) if parts is not None else None


def runway_namespace(base_url: str) -> str:
    """The namespace of the Runway tasks made through one CometAPI base URL: ``runway://<host[:port]>``."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    return f"{RUNWAY_SCHEME}://{authority(parts.hostname or '', parts.port, scheme)}"


def runway_task_dataset(base_url: str, family: RouteFamily, runway_task_id: str) -> DatasetId:
    """The Runway task as a dataset: ``runway://<CometAPI host>`` and ``<route family>/<task id>``."""
    return DatasetId(runway_namespace(base_url), f"{family.value}/{runway_task_id}")


def stored_object_dataset(uri: str) -> DatasetId | None:
    """A stored object's URI (as the transfer returns it) as a dataset, in its store's namespace.

    ``file:///abs/path`` gives ``file`` and ``/abs/path`` (``file://<host>`` when the URI names a
    host), ``s3://bucket/key`` gives ``s3://bucket`` and ``key``: the names OpenLineage's own
    client and Airflow's asset conversion give the same objects, so the graphs join.
    """
    if not isinstance(uri, str) or not uri.strip():
        return None
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    scheme = _STORE_SCHEMES.get(scheme, scheme)
    # A connection id in the URI (s3://aws_default@bucket/key) names no part of the store.
    authority = parts.netloc.rpartition("@")[2]
    if scheme == "file":
        if not parts.path.startswith("/"):
            return None
        return DatasetId(f"file://{authority}" if authority else "file", parts.path)
    key = parts.path.lstrip("/")
    if not authority or not key:
        return None
    return DatasetId(f"{scheme}://{authority}", key)


def media_urls(payload: Mapping[str, Any]) -> list[str]:
    """The source media of a create request body, in body order, each once (``data:`` URIs included)."""
    found: list[str] = []
    for key in _MEDIA_KEYS:
        for uri in _uris(payload.get(key)):
            if uri not in found:
                found.append(uri)
    return found


def media_datasets(payload: Mapping[str, Any]) -> list[DatasetId]:
    """The request's source media that are URLs, as datasets; ``data:`` URIs are skipped (see the module)."""
    datasets: list[DatasetId] = []
    for url in media_urls(payload):
        dataset = url_dataset(url)
        if dataset is not None and dataset not in datasets:
            datasets.append(dataset)
    return datasets


def _uris(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        yield from _uris(value.get("uri"))
    elif isinstance(value, Sequence):
        for item in value:
            yield from _uris(item)


# -- noting facts on the worker -------------------------------------------------------------------


def submission_facts(
    *,
    base_url: str,
    route: Route[...],
    payload: Mapping[str, Any] | None,
    runway_task_id: str,
) -> LineageFacts:
    """What a submit operator's successful run read and made.

    :param base_url: The connection's CometAPI base URL.
    :param route: The create route.
    :param payload: The request body, or None when it could not be rebuilt (the inputs and the
        model are then left out).
    :param runway_task_id: The Runway task the run submitted, or reconnected to.
    """
    tags = [("runway.route", route.path)]
    if payload is not None and isinstance(payload.get("model"), str):
        tags.append(("runway.model", payload["model"]))
    return LineageFacts(
        inputs=tuple(media_datasets(payload or {})),
        outputs=(runway_task_dataset(base_url, route.family, runway_task_id),),
        run_tags=tuple(tags),
    )


def transfer_facts(
    *,
    base_url: str | None,
    route_family: RouteFamily,
    runway_task_id: str,
    uri: str,
    sha256: str | None,
    size: int | None,
) -> LineageFacts:
    """What a transfer's successful run read (the Runway task) and made (the stored object).

    :param base_url: The Runway connection's CometAPI base URL; None when it cannot be read, in
        which case the input is left out rather than guessed.
    :param route_family: The Runway task's route family.
    :param runway_task_id: The Runway task whose media was stored.
    :param uri: The stored object's URI, without a connection id.
    :param sha256: The stored bytes' SHA-256.
    :param size: The stored object's size in bytes.
    """
    inputs: tuple[DatasetId, ...] = ()
    if base_url is not None:
        inputs = (runway_task_dataset(base_url, route_family, runway_task_id),)
    output = stored_object_dataset(uri)
    return LineageFacts(
        inputs=inputs,
        outputs=(output,) if output is not None else (),
        output_version=sha256 or None,
        output_bytes=size,
    )


def note_submission(operator: Any, runway_task_id: str) -> LineageFacts | None:
    """The facts of a submit operator's successful run, noted on the worker; None when lineage is off.

    The request body is the one ``execute`` built (``operator._lineage_payload``), or is rebuilt
    from the rendered arguments after a deferral. Never raises: lineage must not fail the task.
    """
    if not lineage_wanted():
        return None
    try:
        payload = getattr(operator, "_lineage_payload", None)
        if payload is None:
            try:
                payload = operator.build_payload()
            except Exception as err:
                log.info("OpenLineage: the request could not be rebuilt (%s); inputs not reported.", err)
        return submission_facts(
            base_url=operator.hook.settings.base_url,
            route=operator.route,
            payload=payload,
            runway_task_id=runway_task_id,
        )
    except Exception as err:
        log.warning("OpenLineage: no lineage for Runway task %s: %s", runway_task_id, err)
        return None


def note_transfer(operator: Any, stored: StoredResult, route_family: RouteFamily) -> LineageFacts | None:
    """The facts of a transfer's successful run, noted on the worker; None when lineage is off.

    :param operator: The transfer (its ``hook``, the run's one Runway hook, names the CometAPI host).
    :param stored: The record of the stored object: stored now, or found intact from an earlier run.
    :param route_family: The Runway task's route family, as the transfer resolved it.

    Never raises: lineage must not fail the task.
    """
    if not lineage_wanted():
        return None
    try:
        base_url: str | None = operator.hook.settings.base_url
    except Exception as err:
        log.info(
            "OpenLineage: connection %r cannot be read (%s); the Runway task input is not reported.",
            operator.runway_conn_id,
            err,
        )
        base_url = None
    try:
        return transfer_facts(
            base_url=base_url,
            route_family=route_family,
            runway_task_id=stored.runway_task_id,
            uri=stored.uri,
            sha256=stored.sha256,
            size=stored.bytes,
        )
    except Exception as err:
        log.warning("OpenLineage: no lineage for the stored object %s: %s", stored.uri, err)
        return None


def lineage_wanted() -> bool:
    """Whether the OpenLineage provider is installed and configured to emit (else nothing is noted)."""
    if importlib.util.find_spec("airflow.providers.openlineage") is None:
        return False
    try:
        from airflow.providers.openlineage.conf import is_disabled
    except ImportError:
        return False
    return not is_disabled()


# -- conversion, in the listener --------------------------------------------------------------------


def operator_lineage(facts: LineageFacts | None) -> RunwayOperatorLineage:
    """``OperatorLineage`` of the noted facts; empty when nothing was noted (a failed or skipped run)."""
    from airflow.providers.common.compat.openlineage.facet import (
        Dataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
    from openlineage.client.generated.tags_run import TagsRunFacet, TagsRunFacetFields

    if facts is None:
        return OperatorLineage()
    output_facets: dict[str, Any] = {}
    if facts.output_bytes is not None:
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
            size=facts.output_bytes, fileCount=1
        )
    dataset_facets: dict[str, Any] = {}
    if facts.output_version is not None:
        dataset_facets["version"] = DatasetVersionDatasetFacet(datasetVersion=facts.output_version)
    run_facets: dict[str, Any] = {}
    if facts.run_tags:
        run_facets["tags"] = TagsRunFacet(
            tags=[
                TagsRunFacetFields(key=key, value=value, source=TAG_SOURCE) for key, value in facts.run_tags
            ]
        )
    return OperatorLineage(
        inputs=[Dataset(namespace=d.namespace, name=d.name) for d in facts.inputs],
        outputs=[
            OutputDataset(
                namespace=d.namespace, name=d.name, facets=dataset_facets, outputFacets=output_facets
            )
            for d in facts.outputs
        ],
        run_facets=run_facets,
    )
