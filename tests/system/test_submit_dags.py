"""RunwaySubmitOperator in real Airflow (`airflow dags test`): any path, the table operators' spend safety."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.testing.sandbox import AirflowSandbox
from tests.helpers import TEST_API_KEY

pytestmark = pytest.mark.dags


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(api_key=TEST_API_KEY)) as running:
        yield running


@pytest.fixture(scope="module")
def sandbox(server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> AirflowSandbox:
    return AirflowSandbox(
        home=tmp_path_factory.mktemp("airflow-home"),
        dags_folder=Path(__file__).parent / "dags",
        connection=server.connection_json(),
    )


@pytest.fixture
def emulator(server: EmulatorServer) -> Iterator[Emulator]:
    server.emulator.reset()
    yield server.emulator
    server.emulator.scenario = Scenario()


def test_raw_bodies_reach_both_families_and_are_sensed_and_stored(sandbox, emulator, tmp_path):
    emulator.scenario = Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=1)
    result = sandbox.dags_test("runway_submit_chain", "-c", json.dumps({"folder": str(tmp_path)}))
    assert result.returncode == 0, result.output[-4000:]
    creates = emulator.create_requests()
    assert sorted(r["path"] for r in creates) == [
        "/runway/pro/generate",
        *["/runwayml/v1/image_to_video"] * 3,
    ]
    assert len(emulator.submissions()) == 4
    for folder, count in (("animate", 1), ("generate", 1), ("many", 2)):
        assert len(list((tmp_path / folder).glob("*.mp4"))) == count
    # Each task looked up on its own family's route only, with no route_family written anywhere.
    for job in emulator.jobs.values():
        lookups = {r["path"] for r in emulator.requests if r.get("runway_task_id") == job.runway_task_id}
        official = "promptImage" in job.body
        assert ("/runway/feed" in lookups) is not official
        assert any(path.startswith("/runwayml/v1/tasks/") for path in lookups) is official
    [generated] = [job for job in emulator.jobs.values() if "prompt" in job.body]
    assert generated.body["callback_url"].endswith("/_emulator/callback")  # the connection's webhook
    [record] = [json.loads(path.read_text()) for path in (tmp_path / "generate").glob("*.runway.json")]
    assert record["billed"]["seconds"] == 5 and record["route_family"] == "reverse"


def test_a_retry_reconnects_instead_of_paying_again(sandbox, emulator):
    emulator.scenario = Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=5)
    result = sandbox.dags_test("runway_submit_retry")
    assert result.returncode == 0, result.output[-4000:]
    [submission] = emulator.submissions()
    assert "RunwayTaskTimeoutError" in result.output  # the first try did time out
    assert f"Reconnecting to Runway task {submission['runway_task_id']}" in result.output
    assert emulator.cancels() == []


def test_the_last_tries_timeout_cancels(sandbox, emulator):
    emulator.scenario = Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=120)
    result = sandbox.dags_test("runway_submit_timeout")
    assert result.returncode != 0
    [job] = emulator.jobs.values()
    assert [r["runway_task_id"] for r in emulator.cancels()] == [job.runway_task_id]
    assert job.cancelled_at is not None and emulator.deleted_results() == []
