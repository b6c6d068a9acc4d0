"""A wrong destination is refused before money is spent: when the DAG is parsed if it is not templated,
else when the transfer starts, before any download (``emulator.media_requests`` counts downloads)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.execution_time.context import OutletEventAccessors
from botocore.exceptions import NoCredentialsError

from runway_provider.destinations import check_reachable
from runway_provider.exceptions import RunwayInputError
from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator
from tests.helpers import free_port

pytestmark = pytest.mark.unit


def store(**kwargs: Any) -> RunwayToObjectStorageOperator:
    return RunwayToObjectStorageOperator(task_id="store", **kwargs)


def task_with_url(server: Any) -> dict[str, Any]:
    url = f"{server.base_url}/_emulator/media/x.mp4"
    return {"runway_task_id": "made-up-task", "status": "SUCCEEDED", "output_urls": [url]}


def rendered(operator: RunwayToObjectStorageOperator, destination: str) -> dict[str, Any]:
    """Run ``operator`` as if its templated destination had rendered to ``destination``."""
    operator.destination = destination
    return operator.execute({"outlet_events": OutletEventAccessors()})


def no_extension(path: str) -> str:
    return (
        f"Invalid `destination`: {path} has no trailing / and no extension. A folder? Add a trailing / "
        f"({path}/). A file? Add an extension such as .mp4 ({path}.mp4)."
    )


# -- when the DAG is parsed -------------------------------------------------------------------


def test_a_new_folder_without_a_slash_is_refused_with_the_fix(tmp_path):
    with pytest.raises(RunwayInputError) as caught:
        store(runway_task="id", destination=f"{tmp_path}/videos")
    assert str(caught.value) == no_extension(f"{tmp_path}/videos")
    assert not (tmp_path / "videos").exists()


def test_an_existing_folder_without_a_slash_is_refused_with_the_fix(tmp_path):
    (tmp_path / "videos.v2").mkdir()
    with pytest.raises(RunwayInputError) as caught:
        store(runway_task="id", destination=f"file://{tmp_path}/videos.v2")
    assert str(caught.value) == (
        f"Invalid `destination`: file://{tmp_path}/videos.v2 is an existing folder: add a trailing / "
        f"(file://{tmp_path}/videos.v2/) to store into it, each result named after its Runway task."
    )


@pytest.mark.parametrize(
    "destination", ["{path}/videos/", "{path}/take.mp4", "file://{path}/v/", "s3://b/x/"]
)
def test_a_folder_with_a_slash_or_a_file_with_an_extension_is_accepted(tmp_path, destination):
    store(runway_task="id", destination=destination.format(path=tmp_path))


def test_an_explicit_destination_folder_needs_no_slash(tmp_path):
    store(runway_task="id", destination=f"{tmp_path}/videos", destination_folder=True)


def test_a_scheme_whose_packages_are_missing_names_what_to_install():
    # gcsfs and the Google provider are not installed in the test environment.
    with pytest.raises(RunwayInputError) as caught:
        store(runway_task="id", destination="gs://google_cloud_default@bucket/videos/")
    assert str(caught.value) == (
        "Invalid `destination`: gs://google_cloud_default@bucket/videos/ needs airflow.providers.google, "
        "gcsfs, which is not installed. On every worker: pip install apache-airflow-providers-google gcsfs; "
        "give the store's connection in the URI, gs://<conn_id>@<bucket>/<prefix>/, or as "
        "destination_conn_id, with credentials in it."
    )


def test_an_unknown_scheme_is_refused():
    with pytest.raises(RunwayInputError, match=r"no filesystem is known for nope://"):
        store(runway_task="id", destination="nope://bucket/videos/")


def test_a_dag_file_with_a_wrong_destination_does_not_import(tmp_path):
    """What the DAG processor sees: an import error naming the field, so no run is ever created."""
    from tests.helpers import dag_bag

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "bad_destination.py").write_text(
        textwrap.dedent(
            f"""
            from airflow.sdk import DAG
            from runway_provider.operators.runway import RunwayGenerateOperator
            from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator

            with DAG("bad_destination", schedule=None):
                generate = RunwayGenerateOperator(task_id="generate", prompt="a boat", image="https://e.com/a.jpg")
                RunwayToObjectStorageOperator(task_id="store", runway_task=generate.output,
                                              destination="{tmp_path}/videos")
            """
        )
    )
    bag = dag_bag(dags)
    assert bag.dags == {}
    [error] = bag.import_errors.values()
    assert no_extension(f"{tmp_path}/videos") in error


# -- a templated destination, when the transfer starts ----------------------------------------


@pytest.mark.parametrize("suffix", ["videos", "videos.v2"])
def test_a_rendered_destination_is_checked_before_any_download(
    runway_conn, server, emulator, tmp_path, suffix
):
    (tmp_path / "videos.v2").mkdir()
    operator = store(runway_task=task_with_url(server), destination="{{ params.folder }}")
    with pytest.raises(RunwayInputError) as caught:
        rendered(operator, f"{tmp_path}/{suffix}")
    assert caught.value.field == "destination"
    assert emulator.media_requests == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos.v2"]


def test_a_rendered_destination_that_is_right_is_stored(runway_conn, server, emulator, tmp_path):
    operator = store(runway_task=task_with_url(server), destination="{{ params.folder }}")
    assert rendered(operator, f"{tmp_path}/videos/")["uri"] == f"file://{tmp_path}/videos/made-up-task.mp4"
    assert len(emulator.media_requests) == 1


def test_a_rendered_scheme_without_its_packages_is_refused_before_any_download(runway_conn, server, emulator):
    operator = store(runway_task=task_with_url(server), destination="{{ params.folder }}")
    with pytest.raises(RunwayInputError, match=r"pip install apache-airflow-providers-google gcsfs"):
        rendered(operator, "gs://bucket/videos/")
    assert emulator.media_requests == []


@pytest.fixture
def s3_refusing_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A real S3 protocol server that checks credentials, as S3 does, and an AWS connection whose
    key it does not know, in an environment that holds no other credentials."""
    from moto.server import ThreadedMotoServer

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # The server checks credentials: an unknown access key is denied.
    monkeypatch.setattr("moto.settings.INITIAL_NO_AUTH_ACTION_COUNT", 0)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_NO_KEYS",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "AKIAUNKNOWNKEY000000",
                "password": "not-a-secret-the-server-knows",
                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    from airflow.sdk.io import store as io_store

    io_store._STORE_CACHE.clear()
    yield "s3_no_keys"
    io_store._STORE_CACHE.clear()
    moto.stop()


def test_s3_refusing_credentials_is_refused_before_any_download(
    runway_conn, server, emulator, s3_refusing_credentials
):
    operator = store(runway_task=task_with_url(server), destination="{{ params.folder }}")
    with pytest.raises(RunwayInputError) as caught:
        rendered(operator, f"s3://{s3_refusing_credentials}@bucket/videos/")
    assert str(caught.value) == (
        f"Invalid `destination`: s3://{s3_refusing_credentials}@bucket/videos/ cannot be reached (access "
        "denied: are the connection's credentials missing or wrong?). On every worker: pip install apache-airflow-providers-amazon "
        "s3fs; give the store's connection in the URI, s3://<conn_id>@<bucket>/<prefix>/, or as "
        "destination_conn_id, with credentials in it."
    )
    assert emulator.media_requests == []


class _Unreachable:
    """A destination whose store raises ``error`` on the first call, as a filesystem does when its
    package or its credentials are missing."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def exists(self) -> bool:
        raise self.error


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as cause:
            raise outer from cause
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        # What an s3:// path gives without the Amazon provider: an ImportError behind an AttributeError.
        (
            _chained(AttributeError("'NoneType' object has no attribute 'fs'"), ImportError(name="s3fs")),
            "missing package: s3fs",
        ),
        (
            _chained(OSError("listing failed"), NoCredentialsError()),
            "no credentials: NoCredentialsError",
        ),
    ],
    ids=["import-error-chain", "no-credentials"],
)
def test_a_missing_package_or_credentials_deep_in_the_chain_is_named(error, cause):
    with pytest.raises(RunwayInputError) as caught:
        check_reachable(_Unreachable(error), "s3://bucket/videos/")  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        f"Invalid `destination`: s3://bucket/videos/ cannot be reached ({cause}). "
    )
    assert "pip install apache-airflow-providers-amazon s3fs" in str(caught.value)


def test_another_store_error_is_not_disguised():
    with pytest.raises(TimeoutError):
        check_reachable(_Unreachable(TimeoutError("slow")), "s3://bucket/videos/")  # type: ignore[arg-type]
