"""Airflow retries under a real `airflow dags test` reconnect to the generation of the first try."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runway_provider.testing import Emulator, EmulatorServer
from runway_provider.testing.sandbox import AirflowSandbox
from tests.helpers import TEST_API_KEY

pytestmark = pytest.mark.dags


@pytest.fixture(scope="module")
def retry_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(api_key=TEST_API_KEY)) as server:
        yield server


@pytest.fixture(scope="module")
def sandbox(retry_server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> AirflowSandbox:
    return AirflowSandbox(
        home=tmp_path_factory.mktemp("airflow-home"),
        dags_folder=Path(__file__).parent / "dags",
        connection=retry_server.connection_json(),
    )


@pytest.mark.parametrize("mode", ["blocking", "deferrable"])
def test_retry_reconnects_instead_of_paying_again(sandbox, retry_server, mode):
    retry_server.emulator.reset()
    dag_id = f"runway_retry_reconnect_{mode}"
    result = sandbox.dags_test(dag_id)
    assert result.returncode == 0, result.output[-4000:]
    [submission] = retry_server.emulator.submissions()
    [runway_task_id] = sandbox.xcom(dag_id, "generate")
    assert runway_task_id == submission["runway_task_id"]
    [runway_task] = sandbox.xcom(dag_id, "generate", "runway_task")
    assert runway_task["status"] == "SUCCEEDED"
    assert "RunwayTaskTimeoutError" in result.output  # the first try did time out
    assert f"Reconnecting to Runway task {runway_task_id}" in result.output
