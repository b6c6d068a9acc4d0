"""What the Airflow UI shows of the provider, read through a real api-server's REST API.

The same endpoints feed the UI's connection form, its "Test" action and a task's extra links.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from runway_provider.testing import Emulator, EmulatorServer
from tests.cluster import AirflowCluster
from tests.helpers import EXAMPLE_DAG, TEST_API_KEY, free_port

pytestmark = pytest.mark.system


def test_the_api_refuses_a_wrong_password(cluster: AirflowCluster) -> None:
    answer = requests.post(
        f"{cluster.base_url}/auth/token",
        json={"username": "admin", "password": "not-the-password"},
        timeout=30,
    )
    assert answer.status_code == 401


def runway_hook_meta(cluster: AirflowCluster, api: requests.Session) -> dict[str, Any]:
    answer = api.get(f"{cluster.base_url}/ui/connections/hook_meta", timeout=30)
    answer.raise_for_status()
    [runway] = [meta for meta in answer.json() if meta["connection_type"] == "runway"]
    return dict(runway)


def test_the_runway_connection_type_is_offered_with_relabelled_fields(
    cluster: AirflowCluster, api: requests.Session
) -> None:
    meta = runway_hook_meta(cluster, api)
    assert meta["hook_name"] == "Runway (CometAPI)"
    assert meta["hook_class_name"] == "runway_provider.hooks.runway.RunwayHook"
    standard = meta["standard_fields"]
    assert standard["host"] == {
        "hidden": False,
        "title": "Base URL",
        "placeholder": "https://api.cometapi.com",
    }
    assert standard["password"] == {"hidden": False, "title": "API key", "placeholder": "Your CometAPI key"}
    assert {name for name, field in standard.items() if field and field["hidden"]} == {
        "login",
        "port",
        "url_schema",
    }
    extra = meta["extra_fields"]
    assert {name: field["schema"]["title"] for name, field in extra.items()} == {
        "runway_version": "X-Runway-Version",
        "callback_url": "Default callback URL",
        "timeout": "Request timeout (seconds)",
    }
    assert extra["runway_version"]["value"] == "2024-11-06"
    assert extra["timeout"]["value"] == 60


def post_connection_test(cluster: AirflowCluster, api: requests.Session, **fields: Any) -> dict[str, Any]:
    body = {"connection_id": "runway_rest_check", "conn_type": "runway", **fields}
    answer = api.post(f"{cluster.base_url}/api/v2/connections/test", json=body, timeout=60)
    answer.raise_for_status()
    return dict(answer.json())


def test_testing_the_connection_succeeds_with_the_emulator_key(
    cluster: AirflowCluster, api: requests.Session, cluster_emulator_server: EmulatorServer
) -> None:
    result = post_connection_test(cluster, api, host=cluster_emulator_server.base_url, password=TEST_API_KEY)
    assert result == {
        "status": True,
        "message": f"Connected to CometAPI at {cluster_emulator_server.base_url}; the API key was accepted.",
    }


def test_testing_the_connection_fails_clearly_with_a_wrong_key(
    cluster: AirflowCluster, api: requests.Session, cluster_emulator_server: EmulatorServer
) -> None:
    wrong_key = "sk-wrong-0123456789abcdef"
    result = post_connection_test(cluster, api, host=cluster_emulator_server.base_url, password=wrong_key)
    assert result == {
        "status": False,
        "message": f"CometAPI at {cluster_emulator_server.base_url} refused the API key (HTTP 401). "
        "Enter a valid CometAPI key in the API key field.",
    }


def test_testing_the_connection_names_a_host_it_cannot_reach(
    cluster: AirflowCluster, api: requests.Session
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = post_connection_test(cluster, api, host=unreachable, password=TEST_API_KEY)
    assert result["status"] is False
    assert result["message"].startswith(f"Could not reach CometAPI at {unreachable}/runway/feed")
    assert TEST_API_KEY not in result["message"]


def test_the_cli_tests_the_connection_too(cluster: AirflowCluster) -> None:
    """The workaround for Airflow 3.3.x's list "Test" button (see docs/troubleshooting.md)."""
    done = cluster.airflow("connections", "test", "runway_default")
    assert done.returncode == 0, done.stderr
    assert "Connection success!" in done.stdout


def task_links(cluster: AirflowCluster, api: requests.Session, run_id: str, task_id: str) -> dict[str, Any]:
    answer = api.get(
        f"{cluster.base_url}/api/v2/dags/{EXAMPLE_DAG}/dagRuns/{run_id}/taskInstances/{task_id}/links",
        timeout=30,
    )
    answer.raise_for_status()
    return dict(answer.json()["extra_links"])


def test_the_extra_link_of_a_finished_task_resolves_to_its_video(
    cluster: AirflowCluster,
    api: requests.Session,
    cluster_emulator: Emulator,
    cluster_emulator_server: EmulatorServer,
    finished_example_run: str,
) -> None:
    [(runway_task_id,)] = cluster.query(
        "SELECT json_extract(value, '$.runway_task_id') FROM xcom "
        "WHERE dag_id = ? AND run_id = ? AND task_id = 'wait_for_video' AND key = 'return_value'",
        EXAMPLE_DAG,
        finished_example_run,
    )
    links = task_links(cluster, api, finished_example_run, "wait_for_video")
    assert list(links) == ["Runway video"]
    video_url = links["Runway video"]
    assert cluster_emulator.jobs[runway_task_id].body["prompt"] == "A paper boat gently rocks on calm water."
    assert video_url == f"{cluster_emulator_server.base_url}/_emulator/media/{runway_task_id}.mp4"
    video = requests.get(video_url, timeout=30)
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"


def test_a_submit_only_task_offers_the_link_without_a_target(
    cluster: AirflowCluster, api: requests.Session, finished_example_run: str
) -> None:
    # The generate task only submits: no video exists when it finishes, so the UI greys the button.
    assert task_links(cluster, api, finished_example_run, "generate") == {"Runway video": None}


def test_the_api_key_is_not_in_what_the_api_serves(
    cluster: AirflowCluster, api: requests.Session, finished_example_run: str
) -> None:
    run = f"{cluster.base_url}/api/v2/dags/{EXAMPLE_DAG}/dagRuns/{finished_example_run}"
    pages = [
        f"{cluster.base_url}/api/v2/connections",
        f"{cluster.base_url}/ui/connections/hook_meta",
        f"{run}/taskInstances",
        f"{run}/taskInstances/generate/logs/1",
        f"{run}/taskInstances/wait_for_video/logs/1",
        f"{run}/taskInstances/generate",  # with its rendered template fields
    ]
    for page in pages:
        answer = api.get(page, headers={"Accept": "application/json"}, timeout=30)
        assert answer.status_code == 200, (page, answer.text)
        assert TEST_API_KEY not in answer.text, page
    # The logs really are the generation's, not an empty page.
    assert "deferring to the triggerer" in api.get(pages[4], timeout=30).text
