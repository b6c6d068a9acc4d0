"""RunwayToObjectStorageOperator against the emulator's CDN, on file:// and on real S3 (moto server)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import AssetAlias, ObjectStoragePath
from airflow.sdk.execution_time.context import OutletEventAccessors

from runway_provider.exceptions import RunwayInputError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily
from runway_provider.testing import EmulatorServer
from runway_provider.transfers.runway_to_object_storage import (
    RunwayToObjectStorageOperator,
    RunwayTransferError,
)
from tests.helpers import TEST_API_KEY, free_port, job_options

pytestmark = pytest.mark.unit

SAMPLE = (Path(__file__).parents[2] / "runway_provider" / "testing" / "media" / "sample.mp4").read_bytes()
SAMPLE_SHA = hashlib.sha256(SAMPLE).hexdigest()
DONE = job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0)


def finished_task(server: EmulatorServer) -> dict[str, Any]:
    hook = RunwayHook()
    runway_task_id = hook.submit_generate(
        prompt="A paper boat", image="https://example.com/a.jpg", options=DONE
    )
    return hook.get_task(runway_task_id, RouteFamily.REVERSE).to_dict()


def task_with_url(server: EmulatorServer, name: str, runway_task_id: str = "made-up-task") -> dict[str, Any]:
    url = f"{server.base_url}/_emulator/media/{name}"
    return {"runway_task_id": runway_task_id, "status": "SUCCEEDED", "output_urls": [url]}


def transfer_context() -> dict[str, Any]:
    return {"outlet_events": OutletEventAccessors()}


def run(context: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return RunwayToObjectStorageOperator(task_id="store", **kwargs).execute(context or transfer_context())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part"))


# -- file:// ---------------------------------------------------------------------------------


def test_stores_the_video_and_announces_the_asset(runway_conn, server, emulator, tmp_path):
    task = finished_task(server)
    context = transfer_context()
    result = run(context, runway_task=task, destination=f"file://{tmp_path}/videos/")
    stored = tmp_path / "videos" / f"{task['runway_task_id']}.mp4"
    assert stored.read_bytes() == SAMPLE
    assert {k: result[k] for k in ("uri", "bytes", "sha256", "content_type", "runway_task_id")} == {
        "uri": f"file://{stored}",
        "bytes": len(SAMPLE),
        "sha256": SAMPLE_SHA,
        "content_type": "video/mp4",
        "runway_task_id": task["runway_task_id"],
    }
    [event] = context["outlet_events"][AssetAlias("runway-videos")].asset_alias_events
    assert event.dest_asset_key.uri == f"file://{stored}"
    assert event.extra == {
        "runway_task_id": task["runway_task_id"],
        "sha256": SAMPLE_SHA,
        "bytes": len(SAMPLE),
    }
    assert all(r["authorization"] is None for r in emulator.media_requests)  # the key stays home
    assert leftovers(tmp_path) == []


def test_asset_extra_never_holds_a_signed_url(runway_conn, server, tmp_path):
    context = transfer_context()
    run(context, runway_task=finished_task(server), destination=str(tmp_path) + "/")
    [event] = context["outlet_events"][AssetAlias("runway-videos")].asset_alias_events
    assert "http" not in json.dumps(event.extra) and TEST_API_KEY not in json.dumps(event.extra)


def test_a_task_id_is_fetched_for_a_fresh_url(runway_conn, server, tmp_path):
    task = finished_task(server)
    result = run(runway_task=task["runway_task_id"], destination=str(tmp_path / "v.mp4"))
    assert result["sha256"] == SAMPLE_SHA and (tmp_path / "v.mp4").exists()


def test_an_expired_url_is_refreshed_once(runway_conn, server, emulator, tmp_path):
    task = finished_task(server)
    expired = task_with_url(server, "expired-url.mp4", task["runway_task_id"])
    assert run(runway_task=expired, destination=str(tmp_path) + "/")["sha256"] == SAMPLE_SHA
    assert [r["name"] for r in emulator.media_requests] == [
        "expired-url.mp4",
        f"{task['runway_task_id']}.mp4",
    ]


def test_a_run_reads_the_runway_connection_once(runway_conn, server, emulator, tmp_path, monkeypatch):
    """The task lookup and the allowed media hosts (loopback here) come from the run's one hook."""
    task = finished_task(server)
    reads: list[str] = []
    read = RunwayHook.get_connection

    def counted(conn_id: str) -> Any:
        reads.append(conn_id)
        return read(conn_id)

    monkeypatch.setattr(RunwayHook, "get_connection", staticmethod(counted))
    assert run(runway_task=task["runway_task_id"], destination=f"{tmp_path}/")["sha256"] == SAMPLE_SHA
    assert len(emulator.media_requests) == 1 and reads == ["runway_default"]


def finished_official_task(emulator) -> str:
    from runway_provider.testing import Scenario

    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    return RunwayHook().submit_upscale_video(video="https://example.com/clip.mp4")


@pytest.mark.parametrize("family_from", ["the argument", "the upstream operator"])
def test_an_official_task_id_is_fetched_from_its_own_route(runway_conn, emulator, tmp_path, family_from):
    runway_task_id = finished_official_task(emulator)
    destination = str(tmp_path) + "/"
    if family_from == "the argument":
        store = RunwayToObjectStorageOperator(
            task_id="store", runway_task=runway_task_id, destination=destination, route_family="official"
        )
    else:
        import pendulum
        from airflow.sdk import DAG

        from runway_provider.operators.runway import RunwayUpscaleVideoOperator

        with DAG("upscale", start_date=pendulum.datetime(2026, 1, 1), schedule=None):
            upscale = RunwayUpscaleVideoOperator(task_id="upscale", video="https://example.com/clip.mp4")
            store = RunwayToObjectStorageOperator(
                task_id="store", runway_task=upscale.output, destination=destination
            )
        store.runway_task = runway_task_id  # what Airflow renders upscale.output to
    from tests.helpers import RecordingTaskInstance

    result = store.execute({"ti": RecordingTaskInstance(), **transfer_context()})
    assert result["runway_task_id"] == runway_task_id and result["sha256"] == SAMPLE_SHA
    assert (tmp_path / f"{runway_task_id}.mp4").read_bytes() == SAMPLE


def test_a_templated_id_is_looked_up_on_the_family_its_operator_recorded(runway_conn, emulator, tmp_path):
    """``"{{ ti.xcom_pull('upscale') }}"`` names no operator when the DAG is parsed: the sensor and
    the transfer read the family from the request the upstream operator pushed, and never ask the
    reverse feed about an official task (the service would answer that it does not exist)."""
    import pendulum
    from airflow.sdk import DAG

    from runway_provider.operators.runway import RunwayUpscaleVideoOperator
    from runway_provider.sensors.runway import RunwayTaskSensor
    from runway_provider.testing import Scenario
    from tests.helpers import MemoryTaskStateStore, RecordingTaskInstance

    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0.3)
    with DAG("upscale", start_date=pendulum.datetime(2026, 1, 1), schedule=None):
        upscale = RunwayUpscaleVideoOperator(task_id="upscale", video="https://example.com/clip.mp4")
        wait = RunwayTaskSensor(
            task_id="wait",
            runway_task_id="{{ ti.xcom_pull('upscale') }}",
            poll_interval=0.1,
            not_found_grace=5,
        )
        store = RunwayToObjectStorageOperator(
            task_id="store",
            runway_task="{{ ti.xcom_pull('wait')['runway_task_id'] }}",
            destination=f"{tmp_path}/",
        )
        upscale >> wait >> store
    upscale_ti, wait_ti, store_ti = RecordingTaskInstance(), RecordingTaskInstance(), RecordingTaskInstance()
    runway_task_id = upscale.execute({"ti": upscale_ti, "task_state_store": MemoryTaskStateStore()})
    wait.runway_task_id = runway_task_id  # what Airflow renders the templates to
    wait_ti.upstream = {("upscale", key): value for key, value in upscale_ti.xcom.items()}
    task = wait.execute({"ti": wait_ti})
    store.runway_task = runway_task_id
    store_ti.upstream = {("wait", key): value for key, value in wait_ti.xcom.items()}
    result = store.execute({"ti": store_ti, **transfer_context()})
    assert (task["status"], task["route_family"]) == ("SUCCEEDED", "official")
    assert result["runway_task_id"] == runway_task_id and result["sha256"] == SAMPLE_SHA
    lookups = {r["path"] for r in emulator.requests if r.get("runway_task_id") == runway_task_id}
    assert lookups == {"/runwayml/v1/video_upscale", f"/runwayml/v1/tasks/{runway_task_id}"}


@pytest.mark.parametrize("family_from", ["the task dict", "the argument"])
def test_an_official_task_dict_with_an_expired_url_is_refreshed_on_its_own_route(
    runway_conn, server, emulator, tmp_path, family_from
):
    runway_task_id = finished_official_task(emulator)
    task = task_with_url(server, "expired-url.mp4", runway_task_id)
    kwargs: dict[str, Any] = {}
    if family_from == "the task dict":
        task["route_family"] = "official"
    else:
        kwargs["route_family"] = "official"
    result = run(runway_task=task, destination=f"{tmp_path}/", **kwargs)
    assert result["sha256"] == SAMPLE_SHA
    lookups = {r["path"] for r in emulator.requests if r.get("runway_task_id") == runway_task_id}
    assert lookups == {"/runwayml/v1/video_upscale", f"/runwayml/v1/tasks/{runway_task_id}"}


@pytest.mark.parametrize(
    ("runway_task", "problem"),
    [
        (42, "expected a task dict or a Runway task id, got 42"),
        ("   ", "expected a task dict or a Runway task id, got '   '"),
        ({"status": "SUCCEEDED"}, "is not a Runway task dict (KeyError('runway_task_id'))"),
    ],
)
def test_a_runway_task_that_is_no_task_is_refused_saying_what_it_got(
    runway_conn, tmp_path, runway_task, problem
):
    with pytest.raises(RunwayInputError) as refused:
        run(runway_task=runway_task, destination=f"{tmp_path}/")
    assert str(refused.value) == f"Invalid `runway_task`: {problem}"
    assert list(tmp_path.iterdir()) == []


def test_a_retry_after_success_is_a_no_op(runway_conn, server, tmp_path, capsys):
    task = finished_task(server)
    first = run(runway_task=task, destination=str(tmp_path) + "/")
    stored = tmp_path / f"{task['runway_task_id']}.mp4"
    before = stored.stat().st_mtime_ns
    second = run(runway_task=task, destination=str(tmp_path) + "/")
    assert (second["sha256"], second["uri"]) == (first["sha256"], first["uri"])
    assert stored.stat().st_mtime_ns == before
    assert "Already stored, unchanged" in capsys.readouterr().out


def test_different_content_is_not_overwritten_unless_asked(runway_conn, server, tmp_path):
    target = tmp_path / "v.mp4"
    target.write_bytes(b"someone else's video")
    with pytest.raises(RunwayTransferError, match="overwrite=True"):
        run(runway_task=finished_task(server), destination=str(target))
    assert target.read_bytes() == b"someone else's video"
    run(runway_task=finished_task(server), destination=str(target), overwrite=True)
    assert target.read_bytes() == SAMPLE


def test_a_download_that_breaks_leaves_nothing(runway_conn, server, tmp_path):
    with pytest.raises(RunwayTransferError, match="broke after"):
        run(runway_task=task_with_url(server, "broken-3000000.mp4"), destination=str(tmp_path) + "/")
    assert list(tmp_path.iterdir()) == []


def test_max_bytes_is_refused_from_the_declared_length(runway_conn, server, emulator, tmp_path):
    with pytest.raises(RunwayTransferError, match="over max_bytes=1,000,000"):
        run(
            runway_task=task_with_url(server, "size-3000000.mp4"),
            destination=str(tmp_path) + "/",
            max_bytes=1_000_000,
        )
    assert list(tmp_path.iterdir()) == []


def test_max_bytes_is_enforced_while_streaming(runway_conn, server, tmp_path, monkeypatch):
    import requests

    real_get = requests.Session.get

    def hide_length(self, url, **kwargs):  # a CDN that does not say how long the video is
        response = real_get(self, url, **kwargs)
        del response.headers["Content-Length"]
        return response

    monkeypatch.setattr(requests.Session, "get", hide_length)
    with pytest.raises(RunwayTransferError, match="exceeds max_bytes"):
        run(
            runway_task=task_with_url(server, "size-3000000.mp4"),
            destination=str(tmp_path) + "/",
            max_bytes=1_000_000,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("length", ["declared", "not declared"])
def test_a_video_of_exactly_max_bytes_is_accepted(runway_conn, server, tmp_path, monkeypatch, length):
    if length == "not declared":
        import requests

        real_get = requests.Session.get

        def hide_length(self, url, **kwargs):
            response = real_get(self, url, **kwargs)
            del response.headers["Content-Length"]
            return response

        monkeypatch.setattr(requests.Session, "get", hide_length)
    result = run(
        runway_task=task_with_url(server, "size-1000000.mp4"),
        destination=str(tmp_path) + "/",
        max_bytes=1_000_000,
    )
    assert result["bytes"] == 1_000_000 == (tmp_path / "made-up-task.mp4").stat().st_size


@pytest.mark.parametrize(
    ("name", "problem"), [("page-x", "text/html"), ("notvideo-x.mp4", "does not start like")]
)
def test_what_is_not_a_video_is_refused(runway_conn, server, tmp_path, name, problem):
    with pytest.raises(RunwayTransferError, match=problem):
        run(runway_task=task_with_url(server, name), destination=str(tmp_path) + "/")
    assert list(tmp_path.iterdir()) == []


def test_streams_a_large_video(runway_conn, server, tmp_path):
    result = run(runway_task=task_with_url(server, "size-25000000.mp4"), destination=str(tmp_path) + "/")
    assert result["bytes"] == 25_000_000 == (tmp_path / "made-up-task.mp4").stat().st_size


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"runway_task": 42}, "runway_task"),
        ({"runway_task": {"status": "SUCCEEDED"}}, "runway_task"),
        ({"destination": ""}, "destination"),
    ],
)
def test_bad_arguments_are_named(runway_conn, server, emulator, tmp_path, kwargs, field):
    arguments = {"runway_task": task_with_url(server, "x.mp4"), "destination": str(tmp_path) + "/", **kwargs}
    with pytest.raises(RunwayInputError) as caught:
        run(**arguments)
    assert caught.value.field == field
    assert emulator.media_requests == []


# -- s3:// through a real S3 protocol server -------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        moto.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import boto3

    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_TEST",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing-secret",
                "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
        region_name="us-east-1",
    )
    name = f"videos-{os.urandom(4).hex()}"
    client.create_bucket(Bucket=name)
    # Airflow caches a filesystem per connection: one from an earlier run would reach an old server.
    from airflow.sdk.io import store

    store._STORE_CACHE.clear()
    yield name


def s3_keys(s3_endpoint: str, bucket: str) -> dict[str, bytes]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
        region_name="us-east-1",
    )
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def test_stores_on_s3(runway_conn, server, s3_endpoint, bucket):
    task = finished_task(server)
    result = run(runway_task=task, destination=f"s3://s3_test@{bucket}/runway/")
    key = f"runway/{task['runway_task_id']}.mp4"
    stored = s3_keys(s3_endpoint, bucket)
    assert stored.pop(f"{key}.runway.json")  # the record of the request behind it, beside it
    assert stored == {key: SAMPLE}
    assert result["uri"] == f"s3://{bucket}/{key}"  # no connection id in the asset URI
    assert result["record_uri"] == f"s3://{bucket}/{key}.runway.json" and result["reused"] is False
    second = run(runway_task=task, destination=f"s3://s3_test@{bucket}/runway/")
    assert second["sha256"] == result["sha256"]


def test_the_object_store_connection_may_be_given_apart_from_the_uri(
    runway_conn, server, s3_endpoint, bucket
):
    result = run(
        runway_task=task_with_url(server, "x.mp4"),
        destination=f"s3://{bucket}/clips/",
        destination_conn_id="s3_test",
    )
    assert s3_keys(s3_endpoint, bucket)["clips/made-up-task.mp4"] == SAMPLE
    assert result["uri"] == f"s3://{bucket}/clips/made-up-task.mp4"


def test_s3_with_an_object_storage_path_and_a_large_video(runway_conn, server, s3_endpoint, bucket):
    destination = ObjectStoragePath(f"s3://{bucket}/big.mp4", conn_id="s3_test")
    result = run(runway_task=task_with_url(server, "size-12000000.mp4"), destination=destination)
    stored = s3_keys(s3_endpoint, bucket)["big.mp4"]
    assert len(stored) == 12_000_000 == result["bytes"]
    assert hashlib.sha256(stored).hexdigest() == result["sha256"]


def test_a_broken_download_leaves_no_s3_object(runway_conn, server, s3_endpoint, bucket):
    with pytest.raises(RunwayTransferError):
        run(
            runway_task=task_with_url(server, "broken-8000000.mp4"),
            destination=f"s3://s3_test@{bucket}/runway/",
        )
    assert s3_keys(s3_endpoint, bucket) == {}


def test_different_content_on_s3_is_kept(runway_conn, server, s3_endpoint, bucket):
    ObjectStoragePath(f"s3://{bucket}/v.mp4", conn_id="s3_test").write_bytes(b"older video")
    with pytest.raises(RunwayTransferError, match="overwrite=True"):
        run(runway_task=finished_task(server), destination=f"s3://s3_test@{bucket}/v.mp4")
    assert s3_keys(s3_endpoint, bucket) == {"v.mp4": b"older video"}


def test_asset_alias_name_is_configurable(runway_conn, server, tmp_path):
    context = transfer_context()
    run(
        context,
        runway_task=task_with_url(server, "x.mp4"),
        destination=str(tmp_path) + "/",
        asset_alias="reviews",
    )
    [event] = context["outlet_events"][AssetAlias("reviews")].asset_alias_events
    assert event.dest_asset_key.uri == f"file://{tmp_path}/made-up-task.mp4"
    operator = RunwayToObjectStorageOperator(
        task_id="store", runway_task="t", destination="/tmp/", asset_alias="reviews"
    )
    assert operator.outlets == [AssetAlias("reviews")]


# -- hostile names, hosts and streams --------------------------------------------------------


@pytest.mark.parametrize("runway_task_id", ["../../escaped", ".hidden", "a/b", "a\\b", "x" * 200, ""])
def test_a_hostile_task_id_never_names_a_file(runway_conn, server, emulator, tmp_path, runway_task_id):
    folder = tmp_path / "videos"
    folder.mkdir()
    with pytest.raises((RunwayTransferError, RunwayInputError)):
        run(runway_task=task_with_url(server, "x.mp4", runway_task_id), destination=f"{folder}/")
    assert list(tmp_path.rglob("*")) == [folder]
    assert emulator.media_requests == []  # refused before downloading


def test_a_hostile_task_id_is_fine_with_a_file_destination(runway_conn, server, tmp_path):
    target = tmp_path / "chosen.mp4"
    run(runway_task=task_with_url(server, "x.mp4", "../../escaped"), destination=str(target))
    assert target.read_bytes() == SAMPLE


def test_redirects_are_followed_three_times_at_most(runway_conn, server, emulator, tmp_path):
    result = run(runway_task=task_with_url(server, "redirect-3-x.mp4"), destination=str(tmp_path) + "/")
    assert result["sha256"] == SAMPLE_SHA and len(emulator.media_requests) == 4
    with pytest.raises(RunwayTransferError) as caught:
        run(runway_task=task_with_url(server, "redirect-4-x.mp4"), destination=str(tmp_path / "b.mp4"))
    assert str(caught.value) == "The media host of Runway task made-up-task redirected more than 3 times."
    assert caught.value.runway_task_id == "made-up-task"
    assert not (tmp_path / "b.mp4").exists()


def test_a_redirect_with_no_location_is_refused_naming_the_task(runway_conn, server, tmp_path):
    error = _refused(server, tmp_path, "nowhere-x.mp4")
    assert str(error) == "The media host of Runway task made-up-task redirected without a Location."
    assert error.runway_task_id == "made-up-task"


def test_a_redirect_to_a_loopback_host_not_allowed_is_refused(runway_conn, server, emulator, tmp_path):
    with pytest.raises(RunwayTransferError, match="allowed_media_hosts") as caught:
        run(runway_task=task_with_url(server, "goto-127.0.0.2-x.mp4"), destination=str(tmp_path) + "/")
    assert caught.value.runway_task_id == "made-up-task"
    assert [r["name"] for r in emulator.media_requests] == ["goto-127.0.0.2-x.mp4"]
    assert list(tmp_path.iterdir()) == []


def test_a_loopback_media_host_needs_the_connection_to_allow_it(monkeypatch, server, emulator, tmp_path):
    conn = json.loads(server.connection_json())
    conn["extra"].pop("allowed_media_hosts")
    monkeypatch.setenv("AIRFLOW_CONN_RUNWAY_DEFAULT", json.dumps(conn))
    with pytest.raises(RunwayTransferError, match=r"127\.0\.0\.1.*allowed_media_hosts"):
        run(runway_task=task_with_url(server, "x.mp4"), destination=str(tmp_path) + "/")
    assert emulator.media_requests == []
    conn["extra"]["allowed_media_hosts"] = "127.0.0.0/8"  # a CIDR, as a comma-separated string
    monkeypatch.setenv("AIRFLOW_CONN_RUNWAY_DEFAULT", json.dumps(conn))
    assert run(runway_task=task_with_url(server, "x.mp4"), destination=str(tmp_path) + "/")["bytes"] == len(
        SAMPLE
    )


@pytest.mark.parametrize("allowed", ["127.0.0.1/8", "127.0.0.1", "localhost, 127.0.0.0/30"])
def test_a_loopback_media_host_may_be_allowed_by_address_or_by_any_address_of_its_network(
    monkeypatch, server, tmp_path, allowed
):
    # A network written from one of its own addresses ("127.0.0.1/8") means that network.
    conn = json.loads(server.connection_json())
    conn["extra"]["allowed_media_hosts"] = allowed
    monkeypatch.setenv("AIRFLOW_CONN_RUNWAY_DEFAULT", json.dumps(conn))
    result = run(runway_task=task_with_url(server, "x.mp4"), destination=str(tmp_path) + "/")
    assert result["sha256"] == SAMPLE_SHA


def test_the_signature_check_does_not_depend_on_chunking(runway_conn, server, tmp_path):
    result = run(runway_task=task_with_url(server, "tiny-first-chunk.mp4"), destination=str(tmp_path) + "/")
    assert result["sha256"] == SAMPLE_SHA


def test_a_download_past_its_deadline_leaves_nothing(runway_conn, server, tmp_path):
    with pytest.raises(RunwayTransferError, match="download_timeout"):
        run(
            runway_task=task_with_url(server, "size-25000000.mp4"),
            destination=str(tmp_path) + "/",
            download_timeout=0.000001,
        )
    assert list(tmp_path.iterdir()) == []


def test_a_host_that_drips_is_cut_at_the_deadline_and_leaves_nothing(runway_conn, server, tmp_path, temp_dir):
    """A valid MP4 signature, then one byte every 0.2 s: 300 bytes would take a minute. Every read
    returns a byte well within any read timeout, so only a deadline on the whole download stops it:
    it ends at download_timeout, with no file, no record and no temporary file left."""
    deadline = 2.0
    started = time.monotonic()
    with pytest.raises(RunwayTransferError) as caught:
        run(
            runway_task=task_with_url(server, "drip-300.mp4"),
            destination=f"{tmp_path}/videos/",
            download_timeout=deadline,
        )
    ended = time.monotonic() - started
    print(f"drip: the transfer ended {ended:.2f} s after it started; download_timeout={deadline:g} s")
    assert (
        str(caught.value) == "The download of Runway task made-up-task took longer than download_timeout=2s."
    )
    # Generous for a busy machine, and far before the drip itself would end (about 58 s).
    assert ended < deadline + 5
    assert list(tmp_path.iterdir()) == [temp_dir] and list(temp_dir.iterdir()) == []


def test_an_object_storage_path_folder_keeps_each_video_apart(
    runway_conn, server, s3_endpoint, bucket, tmp_path
):
    # ObjectStoragePath drops the trailing slash: destination_folder says what it names.
    first, second = finished_task(server), finished_task(server)
    for task in (first, second):
        run(
            runway_task=task,
            destination=ObjectStoragePath(f"s3://{bucket}/videos/", conn_id="s3_test"),
            destination_folder=True,
        )
    assert sorted(s3_keys(s3_endpoint, bucket)) == sorted(
        f"videos/{task['runway_task_id']}.mp4{record}"
        for task in (first, second)
        for record in ("", ".runway.json")
    )
    local = tmp_path / "local-videos"
    local.mkdir()  # an existing folder needs no flag
    run(runway_task=first, destination=ObjectStoragePath(f"file://{local}/"))
    assert sorted(p.name for p in local.iterdir()) == [
        f"{first['runway_task_id']}.mp4",
        f"{first['runway_task_id']}.mp4.runway.json",
    ]


# -- staging: never a partial object, never a leftover ----------------------------------------


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the download's local temporary file goes, to look for leftovers."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_broken_download_leaves_no_temporary_file(runway_conn, server, tmp_path, temp_dir):
    with pytest.raises(RunwayTransferError):
        run(runway_task=task_with_url(server, "broken-3000000.mp4"), destination=str(tmp_path / "out") + "/")
    assert list(temp_dir.iterdir()) == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("scheme", ["", "file://", "local://"])
def test_a_local_store_stages_beside_the_target_then_renames(
    runway_conn, server, tmp_path, temp_dir, monkeypatch, scheme
):
    moves: list[tuple[str, str]] = []
    replace = os.replace

    def recording_replace(source: str, target: str) -> None:
        assert not os.path.exists(target)  # nothing at the final path before the rename
        moves.append((source, target))
        replace(source, target)

    monkeypatch.setattr(os, "replace", recording_replace)
    target = tmp_path / "videos" / "boat.mp4"
    run(runway_task=task_with_url(server, "x.mp4"), destination=f"{scheme}{target}")
    [(staged, final)] = moves
    assert final == str(target) and os.path.dirname(staged) == str(target.parent)
    assert os.path.basename(staged).startswith(".boat.mp4.") and staged.endswith(".part")
    assert target.read_bytes() == SAMPLE and list(temp_dir.iterdir()) == []


def test_a_local_store_that_breaks_leaves_nothing(runway_conn, server, tmp_path, temp_dir, monkeypatch):
    def broken_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    folder = tmp_path / "videos"
    with pytest.raises(OSError, match="disk full"):
        run(runway_task=task_with_url(server, "x.mp4"), destination=f"{folder}/")
    assert list(folder.iterdir()) == [] and list(temp_dir.iterdir()) == []


def test_an_s3_store_that_breaks_leaves_no_object(
    runway_conn, server, s3_endpoint, bucket, temp_dir, monkeypatch
):
    destination = f"s3://s3_test@{bucket}/runway/"

    def broken_put(*args: Any, **kwargs: Any) -> None:
        raise OSError("upload interrupted")

    # The filesystem Airflow caches for this connection is the one the transfer uploads with.
    monkeypatch.setattr(ObjectStoragePath(destination).fs, "put_file", broken_put)
    with pytest.raises(OSError, match="upload interrupted"):
        run(runway_task=finished_task(server), destination=destination)
    assert s3_keys(s3_endpoint, bucket) == {} and list(temp_dir.iterdir()) == []


def test_an_image_is_stored_with_the_extension_of_its_content(runway_conn, server, tmp_path):
    result = run(runway_task=task_with_url(server, "x.png"), destination=str(tmp_path) + "/")
    stored = tmp_path / "made-up-task.png"
    assert stored.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["content_type"] == "image/png" and result["uri"] == f"file://{stored}"


# -- a task the Runway operator reused from storage --------------------------------------------


def generate_then_store(
    reuse_from: Path,
    destination: str,
    *,
    also_after: bool = False,
    task_dict: bool = False,
    reuse_uri: str | None = None,
    before_store: Callable[[], object] = lambda: None,
    **store_kwargs: Any,
) -> tuple[str, dict[str, Any]]:
    """generate (reusing from ``reuse_from``, or ``reuse_uri`` when given) then store to
    ``destination``, as a DAG wires them; returns the Runway task id and the stored result.
    ``also_after``: the transfer also waits on another Runway operator, whose output it does not
    store. ``task_dict``: the transfer is given the operator's ``runway_task`` XCom rather than its
    id. ``before_store`` runs between the two."""
    import pendulum
    from airflow.sdk import DAG

    from runway_provider.operators.runway import RunwayGenerateOperator
    from tests.helpers import MemoryTaskStateStore, RecordingTaskInstance

    with DAG("batch", start_date=pendulum.datetime(2026, 1, 1), schedule=None):
        generate = RunwayGenerateOperator(
            task_id="generate",
            prompt="A paper boat",
            image="https://example.com/boat.jpg",
            options=DONE,
            wait_for_completion=True,
            poll_interval=0.1,
            reuse_from=reuse_uri or f"file://{reuse_from}/",
        )
        store = RunwayToObjectStorageOperator(
            task_id="store", runway_task=generate.output, destination=destination, **store_kwargs
        )
        if also_after:
            (
                RunwayGenerateOperator(task_id="other", prompt="A raft", image="https://example.com/raft.jpg")
                >> store
            )
    generate_ti = RecordingTaskInstance()
    runway_task_id = generate.execute({"ti": generate_ti, "task_state_store": MemoryTaskStateStore()})
    before_store()
    store_ti = RecordingTaskInstance()
    store_ti.upstream = {("generate", key): value for key, value in generate_ti.xcom.items()}
    # What Airflow renders generate.output (or the runway_task XCom) to.
    store.runway_task = generate_ti.xcom["runway_task"] if task_dict else runway_task_id
    result = store.execute({"ti": store_ti, "outlet_events": transfer_context()["outlet_events"]})
    return runway_task_id, result


@pytest.mark.parametrize("upstream", ["one Runway operator", "two, storing one's output"])
def test_a_reused_task_already_at_a_named_file_is_not_stored_again(runway_conn, emulator, tmp_path, upstream):
    library = tmp_path / "library"
    target = library / "boat.mp4"
    also_after = upstream != "one Runway operator"
    runway_task_id, first = generate_then_store(library, str(target), also_after=also_after)
    before = target.stat().st_mtime_ns
    downloads = len(emulator.media_requests)
    again_id, second = generate_then_store(library, str(target), also_after=also_after)
    assert again_id == runway_task_id and second == {**first, "reused": True}
    assert len(emulator.media_requests) == downloads and target.stat().st_mtime_ns == before


@pytest.mark.parametrize("there", ["nothing", "other content"])
def test_a_reused_task_is_stored_where_it_is_not_yet(runway_conn, emulator, tmp_path, there):
    library, elsewhere = tmp_path / "library", tmp_path / "elsewhere"
    runway_task_id, _ = generate_then_store(library, f"{library}/")
    if there == "other content":
        elsewhere.mkdir()
        (elsewhere / f"{runway_task_id}.mp4").write_bytes(b"someone else's video")
    again_id, result = generate_then_store(library, f"{elsewhere}/", overwrite=True)
    assert again_id == runway_task_id and len(emulator.submissions()) == 1
    assert (elsewhere / f"{runway_task_id}.mp4").read_bytes() == SAMPLE
    assert result["reused"] is False and result["uri"] == f"file://{elsewhere}/{runway_task_id}.mp4"
    # The same generation: its record there names the same request, so a rerun there pays nothing too.
    first, copy = (
        json.loads((place / f"{runway_task_id}.mp4.runway.json").read_text())
        for place in (library, elsewhere)
    )
    same = ("fingerprint", "submitted_at", "route", "route_family", "request", "sha256")
    assert {key: copy[key] for key in same} == {key: first[key] for key in same}
    assert first["fingerprint"] and first["submitted_at"]
    index_names = [
        sorted(p.name for p in (place / "_runway_index").iterdir()) for place in (library, elsewhere)
    ]
    assert index_names[0] == index_names[1] == [f"{first['fingerprint']}.json"]


def test_the_result_says_what_was_stored_where_and_when(runway_conn, server, tmp_path):
    """The transfer's XCom, every key: what the next task (a manifest, a publisher) reads."""
    task = finished_task(server)
    runway_task_id = task["runway_task_id"]
    before = time.time()
    result = run(runway_task=task, destination=f"{tmp_path}/")
    assert before <= result.pop("stored_at") <= time.time()
    assert result == {
        "uri": f"file://{tmp_path}/{runway_task_id}.mp4",
        "bytes": len(SAMPLE),
        "sha256": SAMPLE_SHA,
        "content_type": "video/mp4",
        "runway_task_id": runway_task_id,
        "record_uri": f"file://{tmp_path}/{runway_task_id}.mp4.runway.json",
        "reused": False,
        "billed": None,  # a task given alone: the request behind it is not known
    }


def test_a_local_destination_is_announced_as_a_file_and_keeps_its_reuse_index(
    runway_conn, emulator, tmp_path
):
    """``local://`` is fsspec's other name for the disk: the asset URI says ``file://`` (the one
    Airflow knows), and the reuse index is written, its folder made first, so a rerun pays nothing."""
    library = tmp_path / "library"
    runway_task_id, first = generate_then_store(library, f"local://{library}/")
    assert first["uri"] == f"file://{library}/{runway_task_id}.mp4"
    assert first["record_uri"] == f"file://{library}/{runway_task_id}.mp4.runway.json"
    [index] = (library / "_runway_index").iterdir()
    assert json.loads(index.read_text())["runway_task_id"] == runway_task_id
    again_id, second = generate_then_store(library, f"local://{library}/")
    assert again_id == runway_task_id and second == {**first, "reused": True}
    assert len(emulator.submissions()) == 1


def expire_media(emulator: Any, runway_task_id: str) -> None:
    """From now on the service answers for the task with URLs that have expired (the CDN says 403)."""
    emulator.jobs[runway_task_id].expired_left = 1000


@pytest.mark.parametrize("given", ["the task id", "the task dict"])
def test_a_reused_task_is_copied_from_where_it_was_reused_not_fetched_from_the_service(
    runway_conn, emulator, tmp_path, given
):
    """A reused task's service URL may have expired long ago: storing it in a second place copies
    the stored object, checked against its sha256, and asks the service nothing."""
    library, elsewhere = tmp_path / "library", tmp_path / "elsewhere"
    runway_task_id, first = generate_then_store(library, f"{library}/")
    expire_media(emulator, runway_task_id)
    requests, downloads = len(emulator.requests), len(emulator.media_requests)
    again_id, result = generate_then_store(library, f"{elsewhere}/", task_dict=given == "the task dict")
    assert again_id == runway_task_id
    assert len(emulator.requests) == requests and len(emulator.media_requests) == downloads  # nothing asked
    assert (elsewhere / f"{runway_task_id}.mp4").read_bytes() == SAMPLE
    assert result == {
        **first,
        "uri": f"file://{elsewhere}/{runway_task_id}.mp4",
        "record_uri": f"file://{elsewhere}/{runway_task_id}.mp4.runway.json",
        "stored_at": result["stored_at"],
        "reused": False,
    }
    # The service's URL has expired indeed: fetching the task's media from it now fails.
    with pytest.raises(RunwayTransferError, match="HTTP 403"):
        run(runway_task=runway_task_id, destination=f"{tmp_path}/third/")


@pytest.mark.parametrize("damage", ["changed", "gone"])
def test_a_reused_object_damaged_after_its_check_is_not_copied(runway_conn, emulator, tmp_path, damage):
    library, elsewhere = tmp_path / "library", tmp_path / "elsewhere"
    runway_task_id, _ = generate_then_store(library, f"{library}/")
    video = library / f"{runway_task_id}.mp4"

    def damage_it() -> None:
        if damage == "changed":
            video.write_bytes(SAMPLE[:-1] + b"!")
        else:
            video.unlink()

    requests = len(emulator.requests)
    with pytest.raises(RunwayTransferError, match="gone or changed since the Runway operator checked it"):
        generate_then_store(library, f"{elsewhere}/", before_store=damage_it)
    assert len(emulator.requests) == requests  # the check passed: nothing generated, nothing fetched
    assert not elsewhere.exists() or not list(elsewhere.iterdir())  # nothing stored


def test_a_reused_object_is_copied_from_s3_with_the_connection_of_reuse_from(
    runway_conn, emulator, tmp_path, s3_endpoint, bucket
):
    """``reuse_from`` names its connection in the URI: the transfer reads the object with it."""
    library = f"s3://s3_test@{bucket}/library/"
    runway_task_id, first = generate_then_store(tmp_path, library, reuse_uri=library)
    expire_media(emulator, runway_task_id)
    downloads = len(emulator.media_requests)
    again_id, result = generate_then_store(tmp_path, f"{tmp_path}/copy/", reuse_uri=library)
    assert again_id == runway_task_id and len(emulator.submissions()) == 1
    assert len(emulator.media_requests) == downloads
    assert (tmp_path / "copy" / f"{runway_task_id}.mp4").read_bytes() == SAMPLE
    assert first["uri"] == f"s3://{bucket}/library/{runway_task_id}.mp4" and result["sha256"] == SAMPLE_SHA


# -- what a refused download tells the user ----------------------------------------------------


def _refused(server: EmulatorServer, tmp_path: Path, name: str, **kwargs: Any) -> RunwayTransferError:
    with pytest.raises(RunwayTransferError) as caught:
        run(runway_task=task_with_url(server, name), destination=str(tmp_path) + "/", **kwargs)
    assert list(tmp_path.iterdir()) == []
    return caught.value


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "page-x",
            {},
            "The media host answered text/html for Runway task made-up-task, not a video or an image.",
        ),
        (
            "size-3000000.mp4",
            {"max_bytes": 1_000_000},
            "The video of Runway task made-up-task is 3,000,000 bytes, over max_bytes=1,000,000.",
        ),
        ("size-0.mp4", {}, "The video of Runway task made-up-task is empty."),
        (
            "size-3.mp4",
            {},
            "The download for Runway task made-up-task does not start like a video (MP4, MOV, WebM) or an "
            "image (PNG, JPEG, WebP).",
        ),
        (
            "size-25000000.mp4",
            {"download_timeout": 0.000001},
            "The download of Runway task made-up-task took longer than download_timeout=1e-06s.",
        ),
    ],
    ids=["not a video", "too large", "empty", "too short to be a video", "too slow"],
)
def test_a_refused_download_says_why_and_names_its_task(runway_conn, server, tmp_path, name, kwargs, message):
    error = _refused(server, tmp_path, name, **kwargs)
    assert str(error) == message and error.runway_task_id == "made-up-task"


def test_a_broken_or_oversized_stream_names_its_task(runway_conn, server, tmp_path, monkeypatch):
    error = _refused(server, tmp_path, "broken-3000000.mp4")
    assert str(error).startswith("The download of Runway task made-up-task broke after ")
    assert error.runway_task_id == "made-up-task"
    import requests

    real_get = requests.Session.get

    def hide_length(self, url, **kwargs):
        response = real_get(self, url, **kwargs)
        del response.headers["Content-Length"]
        return response

    monkeypatch.setattr(requests.Session, "get", hide_length)
    error = _refused(server, tmp_path, "size-3000000.mp4", max_bytes=1_000_000)
    assert str(error) == "The video of Runway task made-up-task exceeds max_bytes=1,000,000."
    assert error.runway_task_id == "made-up-task"


def test_what_is_not_media_is_refused_on_its_first_bytes(runway_conn, server, tmp_path, monkeypatch):
    """Text labelled video/mp4 and longer than max_bytes, with no length announced: the user is told
    it is not a video (judged on its first bytes), not that it is too large (found only by reading on)."""
    import requests

    real_get = requests.Session.get

    def hide_length(self, url, **kwargs):
        response = real_get(self, url, **kwargs)
        del response.headers["Content-Length"]
        return response

    monkeypatch.setattr(requests.Session, "get", hide_length)
    error = _refused(server, tmp_path, "notvideo-x.mp4", max_bytes=20)
    assert str(error) == (
        "The download for Runway task made-up-task does not start like a video (MP4, MOV, WebM) or an "
        "image (PNG, JPEG, WebP)."
    )


def test_a_media_answer_without_a_content_type_is_refused(runway_conn, server, tmp_path, monkeypatch):
    """aiohttp always labels a body, so the header is taken off on the way in, as a bare CDN would send it."""
    import requests

    real_get = requests.Session.get

    def hide_type(self, url, **kwargs):
        response = real_get(self, url, **kwargs)
        del response.headers["Content-Type"]
        return response

    monkeypatch.setattr(requests.Session, "get", hide_type)
    error = _refused(server, tmp_path, "x.mp4")
    assert str(error) == (
        "The media host answered no content type for Runway task made-up-task, not a video or an image."
    )
    assert error.runway_task_id == "made-up-task"


def test_a_file_shorter_than_the_signature_window_is_judged_on_what_it_has(runway_conn, server, tmp_path):
    # The first 8 bytes of an MP4 already say "ftyp": short, but it starts like a video.
    result = run(runway_task=task_with_url(server, "size-8.mp4"), destination=str(tmp_path) + "/")
    assert result["bytes"] == 8 and (tmp_path / "made-up-task.mp4").read_bytes() == SAMPLE[:8]


def test_a_refused_task_id_or_destination_says_what_to_do(runway_conn, server, emulator, tmp_path):
    with pytest.raises(RunwayTransferError) as caught:
        run(runway_task=task_with_url(server, "x.mp4", ".hidden"), destination=f"{tmp_path}/")
    assert str(caught.value) == (
        "Runway task id '.hidden' cannot name a file: expected letters, digits, '.', '_' and '-', not "
        "starting with a dot. Give destination a file name instead of a folder."
    )
    assert caught.value.runway_task_id == ".hidden"
    with pytest.raises(RunwayInputError) as refused:
        run(runway_task=task_with_url(server, "x.mp4"), destination="  ")
    assert (
        str(refused.value)
        == "Invalid `destination`: expected a path, a URI or an ObjectStoragePath, got '  '"
    )
    assert emulator.media_requests == []


def test_a_folder_is_named_by_its_path_whatever_its_last_letter(runway_conn, server, tmp_path):
    result = run(runway_task=task_with_url(server, "x.mp4"), destination=f"{tmp_path}/take-X/")
    assert (tmp_path / "take-X" / "made-up-task.mp4").read_bytes() == SAMPLE
    assert result["uri"] == f"file://{tmp_path}/take-X/made-up-task.mp4"
