"""One real Airflow (api-server, scheduler, dag-processor, triggerer) shared by the system tests.

Starting it costs about half a minute, so the tests of the triggerer, the retries and the UI share
it, each with its own DAG runs. Users log in as ``admin`` with ``tests.helpers.ADMIN_PASSWORD``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from tests.cluster import AirflowCluster
from tests.helpers import ADMIN_PASSWORD, EXAMPLE_DAG, TEST_API_KEY, free_port
from tests.hitl import wait_for_required_action

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DAG_FILES = (
    ROOT / "tests" / "system" / "cluster_dags" / "runway_system_dags.py",
    ROOT / "example_dags" / "example_runway_generate_and_sense.py",
    ROOT / "example_dags" / "example_runway_review.py",
    ROOT / "example_dags" / "runway_examples_root.py",  # what the review example imports
)
REVIEW_DAG = "example_runway_review"


@pytest.fixture(scope="session")
def cluster_emulator() -> Emulator:
    return Emulator(api_key=TEST_API_KEY)


@pytest.fixture(scope="session")
def cluster_emulator_server(cluster_emulator: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(cluster_emulator) as server:
        yield server


@pytest.fixture(scope="session")
def cluster(
    cluster_emulator_server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowCluster]:
    dags_folder = tmp_path_factory.mktemp("cluster-dags")
    for dag_file in CLUSTER_DAG_FILES:
        (dags_folder / dag_file.name).symlink_to(dag_file)
    cluster = AirflowCluster(
        home=tmp_path_factory.mktemp("airflow-cluster"),
        dags_folder=dags_folder,
        connection=cluster_emulator_server.connection_json(),
        api_port=free_port(),
        admin_password=ADMIN_PASSWORD,
    )
    # The review example takes run conf destinations under this root only (review_library lies in it).
    cluster.env["RUNWAY_EXAMPLES_ROOT"] = f"file://{tmp_path_factory.getbasetemp()}/"
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def finished_example_run(cluster: AirflowCluster, cluster_emulator: Emulator) -> str:
    """The run id of one finished run of the quick-start example DAG, on the real scheduler."""
    # Long enough that the trigger fires well after the deferral's own executor event: Airflow 3.3's
    # scheduler fails a task whose resume is queued before that event arrives ("reported that the
    # task instance finished with state success, but the task instance's state attribute is
    # queued"), seen once when the video was ready 2 s after deferring.
    cluster_emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=2, running_seconds=8)
    cluster.wait_for_dag(EXAMPLE_DAG)
    cluster.trigger(EXAMPLE_DAG, "ui_example")
    assert cluster.wait_for_run(EXAMPLE_DAG, "ui_example", timeout=300) == "success"
    return "ui_example"


@pytest.fixture(scope="session")
def api(cluster: AirflowCluster) -> requests.Session:
    """A REST session logged in as ``admin`` with a token from the api-server's own login route."""
    answer = requests.post(
        f"{cluster.base_url}/auth/token",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        timeout=30,
    )
    answer.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return session


@pytest.fixture(scope="session")
def review_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The review example's ``destination``: drafts/ and published/ land here."""
    return tmp_path_factory.mktemp("review-library")


@pytest.fixture(scope="session")
def await_review(cluster: AirflowCluster, api: requests.Session) -> Callable[..., dict[str, Any]]:
    """Wait until a run of the review example asks its reviewer; return the required action."""

    def wait(run_id: str, timeout: float = 300) -> dict[str, Any]:
        request = wait_for_required_action(
            api, cluster.base_url, REVIEW_DAG, run_id, "review", timeout=timeout, alive=cluster.check_running
        )
        # Answering before the scheduler has seen the parked worker exit fails the task (Airflow 3.3.2).
        try_number = request["task_instance"]["try_number"]
        cluster.wait_for_executor_event(REVIEW_DAG, run_id, "review", try_number)
        return request

    return wait


@pytest.fixture(scope="session")
def start_review(
    cluster: AirflowCluster,
    cluster_emulator: Emulator,
    review_library: Path,
    await_review: Callable[..., dict[str, Any]],
) -> Callable[..., dict[str, Any]]:
    """Trigger a run of the review example; return its required action once the reviewer is asked."""

    def start(run_id: str, prompt_text: str, timeout: float = 300) -> dict[str, Any]:
        # Long enough that each deferred wait outlives its deferral's executor event (see above).
        cluster_emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=2, running_seconds=8)
        cluster.wait_for_dag(REVIEW_DAG)
        conf = {"destination": f"file://{review_library}/", "prompt_text": prompt_text}
        cluster.trigger(REVIEW_DAG, run_id, conf)
        return await_review(run_id, timeout)

    return start
