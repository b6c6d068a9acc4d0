"""OpenLineage datasets of the submit operators and the transfer (runway_provider.lineage)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from runway_provider import lineage, routes, spend
from runway_provider.lineage import DatasetId, LineageFacts
from runway_provider.models import RouteFamily
from runway_provider.operators import runway as operators
from runway_provider.records import StoredResult
from tests.helpers import TEST_API_KEY

if TYPE_CHECKING:
    # Imported by the tests that use it, not at collection: every xdist worker collects this module.
    from airflow.providers.openlineage.extractors import OperatorLineage

pytestmark = pytest.mark.unit

SIGNED = "https://Media.Example.com:443/frames/boat.jpg?X-Amz-Signature=sig-secret&X-Amz-Credential=cred"
KITE = "http://user:pw-secret@cdn.example.com:8080/kite.png#frag"
DATA_URI = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="
CALLBACK = "https://hooks.example.com/runway?token=callback-secret"
SECRETS = (TEST_API_KEY, "sig-secret", "cred", "pw-secret", "callback-secret", "hooks.example.com", "base64")
COMETAPI = "https://api.cometapi.com"


@pytest.fixture
def comet_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    """``runway_default`` at CometAPI's address (nothing is sent) with a default webhook."""
    conn = {"conn_type": "runway", "password": TEST_API_KEY, "extra": {"callback_url": CALLBACK}}
    monkeypatch.setenv("AIRFLOW_CONN_RUNWAY_DEFAULT", json.dumps(conn))


@pytest.fixture
def enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if OpenLineage were configured: facts are noted."""
    monkeypatch.setattr(lineage, "lineage_wanted", lambda: True)


def event_text(value: OperatorLineage) -> str:
    from openlineage.client.serde import Serde

    return Serde.to_json(value)


# -- naming -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (SIGNED, ("https://media.example.com", "/frames/boat.jpg")),
        (KITE, ("http://cdn.example.com:8080", "/kite.png")),
        ("https://example.com", ("https://example.com", "/")),
        ("http://example.com:80/a%20b.jpg", ("http://example.com", "/a%20b.jpg")),
        ("https://example.com:8443/a.jpg", ("https://example.com:8443", "/a.jpg")),
        ("https://[2001:db8::1]:8443/a.jpg", ("https://[2001:db8::1]:8443", "/a.jpg")),
        (" https://example.com/a.jpg ", ("https://example.com", "/a.jpg")),
    ],
)
def test_a_media_url_is_named_by_its_origin_and_path(url, expected):
    assert lineage.url_dataset(url) == DatasetId(*expected)


@pytest.mark.parametrize(
    "uri", [DATA_URI, "DATA:image/png;base64,AAAA", "ftp://example.com/a.jpg", "example.com/a.jpg", "", None]
)
def test_data_uris_and_non_urls_are_no_dataset(uri):
    assert lineage.url_dataset(uri) is None


@pytest.mark.parametrize(
    ("base_url", "family", "expected"),
    [
        (COMETAPI, RouteFamily.OFFICIAL, ("runway://api.cometapi.com", "official/t-1")),
        ("https://API.cometapi.com:443/", RouteFamily.REVERSE, ("runway://api.cometapi.com", "reverse/t-1")),
        ("http://127.0.0.1:8765", RouteFamily.REVERSE, ("runway://127.0.0.1:8765", "reverse/t-1")),
        (
            "https://proxy.example.com/comet",
            RouteFamily.OFFICIAL,
            ("runway://proxy.example.com", "official/t-1"),
        ),
    ],
)
def test_a_runway_task_is_named_by_the_cometapi_host_its_family_and_id(base_url, family, expected):
    assert lineage.runway_task_dataset(base_url, family, "t-1") == DatasetId(*expected)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///data/videos/t-1.mp4", ("file", "/data/videos/t-1.mp4")),
        ("file://nas.local/data/t-1.mp4", ("file://nas.local", "/data/t-1.mp4")),
        ("s3://bucket/runway/t-1.mp4", ("s3://bucket", "runway/t-1.mp4")),
        ("s3://aws_default@bucket/runway/t-1.mp4", ("s3://bucket", "runway/t-1.mp4")),
        ("gcs://bucket/t-1.png", ("gs://bucket", "t-1.png")),
        ("/data/videos/t-1.mp4", ("file", "/data/videos/t-1.mp4")),
    ],
)
def test_a_stored_object_is_named_in_its_stores_namespace(uri, expected):
    assert lineage.stored_object_dataset(uri) == DatasetId(*expected)


@pytest.mark.parametrize("uri", ["", "relative/t-1.mp4", "s3://bucket", "s3:///key", None])
def test_an_unnamed_object_is_no_dataset(uri):
    assert lineage.stored_object_dataset(uri) is None


def test_stored_objects_are_named_as_openlineage_and_airflow_name_them():
    """The names OpenLineage's client gives, and those Airflow gives the same assets: the graphs join."""
    from airflow.providers.amazon.aws.assets.s3 import convert_asset_to_openlineage as s3_asset
    from airflow.providers.common.io.assets.file import convert_asset_to_openlineage as file_asset
    from airflow.sdk import Asset
    from openlineage.client.naming.dataset import S3, LocalFileSystem, RemoteFileSystem

    cases = [
        ("file:///data/videos/t-1.mp4", LocalFileSystem(path="/data/videos/t-1.mp4"), file_asset),
        (
            "file://nas.local/data/t-1.mp4",
            RemoteFileSystem(host="nas.local", path="/data/t-1.mp4"),
            file_asset,
        ),
        ("s3://bucket/runway/t-1.mp4", S3(bucket_name="bucket", object_key="runway/t-1.mp4"), s3_asset),
    ]
    for uri, naming, convert in cases:
        ours = lineage.stored_object_dataset(uri)
        assert ours == (naming.get_namespace(), naming.get_name()), uri
        theirs = convert(Asset(uri), None)
        assert ours == (theirs.namespace, theirs.name), uri


# -- the request's media, on every route ---------------------------------------------------------

OPERATOR_ARGUMENTS: dict[type[operators.BaseRunwaySubmitOperator], dict[str, Any]] = {
    operators.RunwayGenerateOperator: {"prompt": "A boat", "image": SIGNED, "last_image": KITE},
    operators.RunwayReverseVideoToVideoOperator: {"video": SIGNED, "prompt": "Ink"},
    operators.RunwayActOneOperator: {"video": SIGNED, "image": DATA_URI},
    operators.RunwayImageToVideoOperator: {
        "prompt_image": [{"uri": SIGNED, "position": "first"}, {"uri": DATA_URI, "position": "last"}]
    },
    operators.RunwayVideoToVideoOperator: {
        "video": SIGNED,
        "prompt_text": "Ink",
        "references": [KITE, DATA_URI],
    },
    operators.RunwayUpscaleVideoOperator: {"video": SIGNED},
    operators.RunwayTextToImageOperator: {
        "prompt_text": "@boat at dusk",
        "reference_images": [{"uri": SIGNED, "tag": "boat"}, {"uri": KITE, "tag": "kite"}],
    },
    operators.RunwayCharacterPerformanceOperator: {"character": SIGNED, "reference_video": KITE},
}


def strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(key, string)`` anywhere in a request body."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from strings(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, key)


def test_every_route_is_covered():
    assert {cls.route for cls in OPERATOR_ARGUMENTS} == set(routes.ROUTES)


@pytest.mark.parametrize("cls", list(OPERATOR_ARGUMENTS), ids=lambda cls: cls.route.name)
def test_every_url_in_a_request_body_is_an_input_and_nothing_else_is(comet_conn, cls):
    payload = cls(task_id="t", **OPERATOR_ARGUMENTS[cls]).build_payload()
    urls = [value for key, value in strings(payload) if key != "callback_url" and value.startswith("http")]
    assert urls, payload
    expected = list(dict.fromkeys(lineage.url_dataset(url) for url in urls))
    assert lineage.media_datasets(payload) == expected
    # data: URIs are in the body and in media_urls, never in the datasets.
    data_uris = [value for _, value in strings(payload) if value.startswith("data:")]
    assert set(data_uris) <= set(lineage.media_urls(payload))
    assert all(lineage.url_dataset(uri) is None for uri in data_uris)


# -- submit operators ----------------------------------------------------------------------------


def test_a_submission_reads_its_media_and_makes_the_runway_task():
    payload = routes.generate(prompt="A boat", image=SIGNED, last_image=DATA_URI, callback_url=CALLBACK)
    facts = lineage.submission_facts(
        base_url=COMETAPI, route=routes.GENERATE, payload=payload, runway_task_id="t-1"
    )
    assert facts.inputs == (("https://media.example.com", "/frames/boat.jpg"),)
    assert facts.outputs == (("runway://api.cometapi.com", "reverse/t-1"),)
    # Nothing derived from the request alone: an unsalted hash of it would confirm a guessed prompt.
    assert dict(facts.run_tags) == {"runway.route": "/runway/pro/generate", "runway.model": "gen4"}
    fingerprint = spend.request_fingerprint(routes.GENERATE, payload)
    assert fingerprint not in repr(facts) and fingerprint[:12] not in repr(facts)


def test_a_submission_without_its_body_still_makes_the_runway_task():
    facts = lineage.submission_facts(
        base_url=COMETAPI, route=routes.UPSCALE_VIDEO, payload=None, runway_task_id="t-1"
    )
    assert facts.inputs == () and facts.outputs == (("runway://api.cometapi.com", "official/t-1"),)
    assert facts.run_tags == (("runway.route", "/runwayml/v1/video_upscale"),)


def test_the_lineage_carries_no_secret_and_no_data_uri(comet_conn, enabled):
    op = operators.RunwayGenerateOperator(task_id="t", prompt="A boat", image=SIGNED, last_image=DATA_URI)
    op._lineage_payload = op.build_payload()  # as execute keeps it; the webhook comes from the connection
    assert op._lineage_payload["callback_url"] == CALLBACK
    op._lineage_facts = lineage.note_submission(op, "t-1")
    result = op.get_openlineage_facets_on_complete(None)
    text = event_text(result)
    assert [(d.namespace, d.name) for d in result.inputs] == [
        ("https://media.example.com", "/frames/boat.jpg")
    ]
    assert [(d.namespace, d.name) for d in result.outputs] == [("runway://api.cometapi.com", "reverse/t-1")]
    for secret in SECRETS:
        assert secret not in text, secret
    assert "A boat" not in text  # nor the prompt


def test_after_a_deferral_the_body_is_rebuilt_from_the_rendered_arguments(comet_conn, enabled, context):
    """execute_complete runs in a new process: the facts are the same as those execute would note."""
    arguments = {"task_id": "t", "prompt": "A boat", "image": SIGNED, "wait_for_completion": True}
    resumed = operators.RunwayGenerateOperator(**arguments)
    resumed.execute_complete(
        context,
        {
            "status": "success",
            "runway_task_id": "t-1",
            "task": {
                "runway_task_id": "t-1",
                "status": "SUCCEEDED",
                "output_urls": ["https://cdn/v.mp4"],
                "route_family": "reverse",
            },
            "message": "done",
        },
    )
    first = operators.RunwayGenerateOperator(**arguments)
    first._lineage_payload = first.build_payload()
    assert resumed._lineage_facts == lineage.note_submission(first, "t-1")
    assert resumed._lineage_facts is not None and len(resumed._lineage_facts.run_tags) == 2  # the model too


def test_a_submit_that_noted_nothing_reports_nothing():
    op = operators.RunwayUpscaleVideoOperator(task_id="t", video=SIGNED)
    result = op.get_openlineage_facets_on_complete(None)
    assert (result.inputs, result.outputs, result.run_facets) == ([], [], {})


def test_the_operator_notes_its_lineage_when_it_submits(runway_conn, server, enabled, context):
    op = operators.RunwayImageToVideoOperator(task_id="t", prompt_image=SIGNED)
    runway_task_id = op.execute(context)
    result = op.get_openlineage_facets_on_complete(context["ti"])
    assert [(d.namespace, d.name) for d in result.inputs] == [
        ("https://media.example.com", "/frames/boat.jpg")
    ]
    host = server.base_url.split("://")[1]
    assert [(d.namespace, d.name) for d in result.outputs] == [
        (f"runway://{host}", f"official/{runway_task_id}")
    ]
    tags = {tag.key: tag.value for tag in result.run_facets["tags"].tags}
    assert tags["runway.model"] == "gen4_turbo" and tags["runway.route"] == "/runwayml/v1/image_to_video"


# -- the transfer --------------------------------------------------------------------------------


def test_a_transfer_reads_the_runway_task_and_makes_the_stored_object():
    facts = lineage.transfer_facts(
        base_url=COMETAPI,
        route_family=RouteFamily.OFFICIAL,
        runway_task_id="t-1",
        uri="s3://bucket/runway/t-1.mp4",
        sha256="ab" * 32,
        size=2912,
    )
    assert facts == LineageFacts(
        inputs=(("runway://api.cometapi.com", "official/t-1"),),
        outputs=(("s3://bucket", "runway/t-1.mp4"),),
        output_version="ab" * 32,
        output_bytes=2912,
    )
    result = lineage.operator_lineage(facts)
    [output] = result.outputs
    assert output.facets["version"].datasetVersion == "ab" * 32
    statistics = output.outputFacets["outputStatistics"]
    assert (statistics.size, statistics.fileCount) == (2912, 1)
    assert result.run_facets == {}


def test_a_transfer_whose_connection_cannot_be_read_reports_only_what_it_stored(monkeypatch, enabled):
    from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator

    monkeypatch.delenv("AIRFLOW_CONN_RUNWAY_DEFAULT", raising=False)
    op = RunwayToObjectStorageOperator(task_id="store", runway_task="t-1", destination="/tmp/x.mp4")
    facts = lineage.note_transfer(op, stored_result(), "reverse")
    assert facts is not None and facts.inputs == () and facts.outputs == (("file", "/tmp/x.mp4"),)


def stored_result(**fields: Any) -> StoredResult:
    defaults: dict[str, Any] = {
        "name": "x.mp4",
        "uri": "file:///tmp/x.mp4",
        "runway_task_id": "t-1",
        "sha256": "cd" * 32,
        "bytes": 1,
        "content_type": "video/mp4",
        "stored_at": 0.0,
    }
    return StoredResult(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("family", "expected"), [(RouteFamily.OFFICIAL, "official/t-1"), (RouteFamily.REVERSE, "reverse/t-1")]
)
def test_a_transfer_names_the_task_by_its_family(comet_conn, enabled, family, expected):
    from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator

    op = RunwayToObjectStorageOperator(task_id="store", runway_task="t-1", destination="/tmp/x.mp4")
    facts = lineage.note_transfer(op, stored_result(), family)
    assert facts is not None and facts.inputs == (("runway://api.cometapi.com", expected),)


def test_the_transfer_notes_its_lineage_when_it_stores(runway_conn, server, enabled, tmp_path):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from runway_provider.hooks.runway import RunwayHook
    from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator
    from tests.helpers import job_options

    hook = RunwayHook()
    runway_task_id = hook.submit_generate(
        prompt="A boat",
        image=SIGNED,
        options=job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0),
    )
    task = hook.get_task(runway_task_id, RouteFamily.REVERSE).to_dict()
    op = RunwayToObjectStorageOperator(task_id="store", runway_task=task, destination=f"file://{tmp_path}/")
    stored = op.execute({"outlet_events": OutletEventAccessors()})
    result = op.get_openlineage_facets_on_complete(None)
    host = server.base_url.split("://")[1]
    assert [(d.namespace, d.name) for d in result.inputs] == [
        (f"runway://{host}", f"reverse/{runway_task_id}")
    ]
    assert [(d.namespace, d.name) for d in result.outputs] == [("file", f"{tmp_path}/{runway_task_id}.mp4")]
    assert result.outputs[0].facets["version"].datasetVersion == stored["sha256"]
    text = event_text(result)
    assert TEST_API_KEY not in text and "_emulator/callback" not in text


def test_a_transfer_of_an_official_task_names_it_under_its_family(runway_conn, emulator, enabled, tmp_path):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from runway_provider.hooks.runway import RunwayHook
    from runway_provider.testing import Scenario
    from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator

    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    hook = RunwayHook()
    runway_task_id = hook.submit_image_to_video(prompt_image=SIGNED)
    task = hook.get_task(runway_task_id, RouteFamily.OFFICIAL).to_dict()
    op = RunwayToObjectStorageOperator(task_id="store", runway_task=task, destination=f"file://{tmp_path}/")
    op.execute({"outlet_events": OutletEventAccessors()})
    [runway_input] = op.get_openlineage_facets_on_complete(None).inputs
    assert runway_input.name == f"official/{runway_task_id}"


def test_a_transfer_of_a_reused_result_reports_what_was_stored_under_its_own_family(
    runway_conn, server, emulator, enabled, tmp_path
):
    """A rerun that reuses a stored video still tells the lineage backend where it came from: the
    official task that made it (the record's family, though the transfer is given only an id) and
    the object, stored once by the first run."""
    import pendulum
    from airflow.sdk import DAG
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from runway_provider.operators.runway import RunwayImageToVideoOperator
    from runway_provider.testing import Scenario
    from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator
    from tests.helpers import MemoryTaskStateStore, RecordingTaskInstance

    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    library = tmp_path / "library"

    def animate_then_store() -> tuple[dict[str, Any], RunwayToObjectStorageOperator]:
        with DAG("reuse", start_date=pendulum.datetime(2026, 1, 1), schedule=None):
            animate = RunwayImageToVideoOperator(
                task_id="animate",
                prompt_image="https://example.com/boat.jpg",
                wait_for_completion=True,
                poll_interval=0.1,
                reuse_from=f"file://{library}/",
            )
            # An id rendered from a template: the transfer is not told the family.
            store = RunwayToObjectStorageOperator(
                task_id="store", runway_task="{{ ti.xcom_pull('animate') }}", destination=f"{library}/"
            )
            animate >> store
        animate_ti = RecordingTaskInstance()
        store.runway_task = animate.execute({"ti": animate_ti, "task_state_store": MemoryTaskStateStore()})
        store_ti = RecordingTaskInstance()
        store_ti.upstream = {("animate", key): value for key, value in animate_ti.xcom.items()}
        return store.execute({"ti": store_ti, "outlet_events": OutletEventAccessors()}), store

    first, _ = animate_then_store()
    second, store = animate_then_store()
    assert (first["reused"], second["reused"]) == (False, True) and len(emulator.submissions()) == 1
    result = store.get_openlineage_facets_on_complete(None)
    host = server.base_url.split("://")[1]
    runway_task_id = first["runway_task_id"]
    assert [(d.namespace, d.name) for d in result.inputs] == [
        (f"runway://{host}", f"official/{runway_task_id}")
    ]
    assert [(d.namespace, d.name) for d in result.outputs] == [("file", f"{library}/{runway_task_id}.mp4")]
    assert result.outputs[0].facets["version"].datasetVersion == first["sha256"]


# -- off unless installed and configured ---------------------------------------------------------


def test_nothing_is_noted_without_openlineage(monkeypatch, comet_conn):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name.startswith("airflow.providers.openlineage") else real(name, *args),
    )
    assert lineage.lineage_wanted() is False
    op = operators.RunwayUpscaleVideoOperator(task_id="t", video=SIGNED)
    assert lineage.note_submission(op, "t-1") is None


def test_nothing_is_noted_unless_openlineage_is_configured(monkeypatch):
    from airflow.providers.openlineage import conf

    def clear() -> None:
        for value in vars(conf).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()

    for name in ("AIRFLOW__OPENLINEAGE__TRANSPORT", "OPENLINEAGE_URL", "AIRFLOW__OPENLINEAGE__CONFIG_PATH"):
        monkeypatch.delenv(name, raising=False)
    clear()
    try:
        assert lineage.lineage_wanted() is False
        monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "console"}))
        clear()
        assert lineage.lineage_wanted() is True
    finally:
        monkeypatch.delenv("AIRFLOW__OPENLINEAGE__TRANSPORT")
        clear()
