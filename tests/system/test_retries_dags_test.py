"""Airflow retries under a real `airflow dags test`: reconnect to the same request, never pay twice.

Every count comes from the emulator's own record of requests.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from runway_provider.testing import Emulator, EmulatorServer, Scenario
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
    # The retry took the first try's generation: still running, or already done when the retry began
    # (Airflow 3.0's `dags test` starts each try seconds later than 3.3's).
    assert (
        f"Reconnecting to Runway task {runway_task_id}" in result.output
        or f"Runway task {runway_task_id} from an earlier try already succeeded" in result.output
    )


def tries(sandbox: AirflowSandbox, dag_id: str) -> list[tuple[str, int]]:
    """``(state, try_number)`` of each task instance of the latest run."""
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        return db.execute(
            "SELECT state, try_number FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (dag_id, dag_id),
        ).fetchall()


def test_a_lost_create_answer_is_paid_once_and_not_retried(sandbox, retry_server):
    retry_server.emulator.reset()
    result = sandbox.dags_test("runway_spend_lost_answer")
    assert result.returncode != 0
    assert len(retry_server.emulator.create_requests()) == 1 and len(retry_server.emulator.jobs) == 1
    assert tries(sandbox, "runway_spend_lost_answer") == [("failed", 1)]
    assert "RunwaySubmissionUncertainError" in result.output


def test_a_refusal_is_sent_once_and_not_retried(sandbox, retry_server):
    retry_server.emulator.reset()
    result = sandbox.dags_test("runway_spend_refusal")
    assert result.returncode != 0
    assert len(retry_server.emulator.create_requests()) == 1 and retry_server.emulator.jobs == {}
    assert tries(sandbox, "runway_spend_refusal") == [("failed", 1)]
    assert "content policy" in result.output


def test_a_spent_balance_is_sent_once_and_not_retried(sandbox, retry_server):
    retry_server.emulator.reset()
    result = sandbox.dags_test("runway_spend_balance")
    assert result.returncode != 0
    creates = retry_server.emulator.create_requests()
    assert [(r["http_status"], r["fault"]) for r in creates] == [(403, "spent_balance")]
    assert retry_server.emulator.jobs == {}
    # retries=2, yet one try: the error is an AirflowFailException.
    assert tries(sandbox, "runway_spend_balance") == [("failed", 1)]
    assert "RunwayBalanceExhaustedError" in result.output and "balance is spent" in result.output
    assert TEST_API_KEY not in result.output


def test_a_retry_with_another_prompt_gets_its_own_video(sandbox, retry_server):
    retry_server.emulator.reset()
    dag_id = "runway_spend_changed_prompt"
    result = sandbox.dags_test(dag_id)
    assert result.returncode == 0, result.output[-4000:]
    jobs = list(retry_server.emulator.jobs.values())
    assert [job.body["prompt"] for job in jobs] == ["A boat, try 1", "A boat, try 2"]
    assert sandbox.xcom(dag_id, "generate") == [jobs[1].runway_task_id]
    assert "was made for a different request" in result.output


def test_an_official_wait_that_times_out_on_its_last_try_is_cancelled(sandbox, retry_server):
    emulator = retry_server.emulator
    emulator.reset()
    emulator.scenario = Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=120)
    try:
        result = sandbox.dags_test("runway_spend_official_timeout_last_try")
    finally:
        emulator.scenario = Scenario()
    assert result.returncode != 0
    assert len(emulator.create_requests()) == 1  # the retries reconnected
    [job] = emulator.jobs.values()
    assert [r["runway_task_id"] for r in emulator.cancels()] == [job.runway_task_id]
    assert tries(sandbox, "runway_spend_official_timeout_last_try") == [("failed", 3)]
    assert "RunwayTaskTimeoutError" in result.output
    assert f"Cancelled Runway task {job.runway_task_id}: the last try's wait timed out" in result.output


def test_an_official_wait_that_times_out_with_a_retry_left_is_reconnected(sandbox, retry_server):
    emulator = retry_server.emulator
    emulator.reset()
    emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=4)
    try:
        result = sandbox.dags_test("runway_spend_official_timeout_retried")
    finally:
        emulator.scenario = Scenario()
    assert result.returncode == 0, result.output[-4000:]
    assert len(emulator.create_requests()) == 1 and emulator.cancels() == []
    assert tries(sandbox, "runway_spend_official_timeout_retried") == [("success", 2)]
    assert "Leaving Runway task" in result.output


def test_a_sensor_in_reschedule_mode_waits_across_reschedules(sandbox, retry_server):
    retry_server.emulator.reset()
    dag_id = "runway_sensor_reschedule"
    result = sandbox.dags_test(dag_id)
    assert result.returncode == 0, result.output[-4000:]
    [task] = sandbox.xcom(dag_id, "wait_for_video")
    [job] = retry_server.emulator.jobs.values()
    assert task["status"] == "SUCCEEDED" and task["runway_task_id"] == job.runway_task_id
    with sqlite3.connect(sandbox.home / "airflow.db") as db:
        [(reschedules,)] = db.execute(
            "SELECT COUNT(*) FROM task_reschedule JOIN task_instance ON task_reschedule.ti_id = task_instance.id "
            "WHERE task_instance.dag_id = ? AND task_instance.task_id = 'wait_for_video'",
            (dag_id,),
        ).fetchall()
    assert reschedules >= 2  # the slot was given back between pokes
    assert job.feed_requests == reschedules + 1  # one poke per try, the first clock kept


def test_a_rescheduled_sensor_keeps_its_first_check_clock(sandbox, retry_server):
    retry_server.emulator.reset()
    result = sandbox.dags_test("runway_sensor_reschedule_lost")
    assert result.returncode != 0
    # The exception lines ("module.Name: message"): Airflow 3.0 prints tracebacks with their source
    # lines, and the sensor's source names AirflowSensorTimeout.
    assert "RunwayTaskLostError:" in result.output and "AirflowSensorTimeout:" not in result.output


def test_every_route_family_chains_operator_sensor_transfer_with_an_expired_url(
    sandbox, retry_server, tmp_path
):
    emulator = retry_server.emulator
    emulator.reset()
    emulator.scenario = Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=1, expired_urls=1)
    try:
        result = sandbox.dags_test("runway_chain_every_family", "-c", json.dumps({"folder": str(tmp_path)}))
    finally:
        emulator.scenario = Scenario()
    assert result.returncode == 0, result.output[-4000:]
    by_route = {r["path"].rsplit("/", 1)[-1]: r["runway_task_id"] for r in emulator.create_requests()}
    chains = (("generate", "generate", "reverse", ".mp4"), ("animate", "image_to_video", "official", ".mp4"))
    for source, route, family, extension in (*chains, ("storyboard", "text_to_image", "official", ".png")):
        runway_task_id = by_route[route]
        [task] = sandbox.xcom("runway_chain_every_family", f"wait_{source}")
        assert (task["runway_task_id"], task["route_family"]) == (runway_task_id, family)
        for folder in (source, f"{source}-by-id"):
            assert (tmp_path / folder / f"{runway_task_id}{extension}").stat().st_size > 0
        # Looked up only on its own family's route; its first, expired URL was refreshed.
        lookups = {r["path"] for r in emulator.requests if r.get("runway_task_id") == runway_task_id} - {
            f"/runway/pro/{route}",
            f"/runwayml/v1/{route}",
        }
        assert lookups == (
            {"/runway/feed"} if family == "reverse" else {f"/runwayml/v1/tasks/{runway_task_id}"}
        )
        assert any(r["name"].startswith(f"expired-{runway_task_id}") for r in emulator.media_requests)


@pytest.mark.parametrize("mode", ["blocking", "deferrable"])
@pytest.mark.parametrize(("retries", "cancels"), [(0, 1), (1, 1)], ids=["last-try", "retried-then-last"])
def test_execution_timeout_cancels_on_the_last_try_only(sandbox, retry_server, mode, retries, cancels):
    """Airflow's own execution_timeout: the generation outlives every try; only the last one cancels,
    after the retry reconnected (one create)."""
    emulator = retry_server.emulator
    emulator.reset()
    emulator.scenario = Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=120)
    dag_id = f"runway_spend_execution_timeout_{mode}_retries_{retries}"
    try:
        result = sandbox.dags_test(dag_id)
    finally:
        emulator.scenario = Scenario()
    assert result.returncode != 0
    assert len(emulator.create_requests()) == 1
    [job] = emulator.jobs.values()
    assert [r["runway_task_id"] for r in emulator.cancels()] == [job.runway_task_id] * cancels
    assert job.cancelled_at is not None and emulator.deleted_results() == []
    assert tries(sandbox, dag_id) == [("failed", retries + 1)]
    if retries:
        assert f"Leaving Runway task {job.runway_task_id} running: Airflow will retry" in result.output
        assert f"Reconnecting to Runway task {job.runway_task_id}" in result.output
    assert f"Cancelled Runway task {job.runway_task_id}: the last try's wait timed out" in result.output


def test_a_try_that_fails_after_its_generation_succeeded_is_not_paid_again(sandbox, retry_server):
    emulator = retry_server.emulator
    emulator.reset()
    emulator.scenario = Scenario(not_found_seconds=0.5, queued_seconds=0.5, running_seconds=1)
    dag_id = "runway_spend_failure_after_success"
    try:
        result = sandbox.dags_test(dag_id)
    finally:
        emulator.scenario = Scenario()
    assert result.returncode == 0, result.output[-4000:]
    assert "the try failed after execute returned" in result.output
    [job] = emulator.jobs.values()
    assert len(emulator.create_requests()) == 1 and emulator.cancels() == []
    assert tries(sandbox, dag_id) == [("success", 2)]
    assert sandbox.xcom(dag_id, "animate") == [job.runway_task_id]
    assert f"Runway task {job.runway_task_id} from an earlier try already succeeded" in result.output
