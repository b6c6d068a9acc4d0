"""The provider on a real Airflow: api-server, scheduler with LocalExecutor, dag-processor, triggerer.

Counts come from the emulator's own record of requests, never from the provider's logs.
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runway_provider.testing import Emulator, Scenario
from tests.cluster import AirflowCluster

pytestmark = pytest.mark.system
BATCH_DAG = "runway_system_deferred_batch"
BLOCKING_DAG = "runway_system_blocking_wait"
OFFICIAL_DAG = "runway_system_official_deferred"
FIGURES_FILE = os.environ.get("RUNWAY_SYSTEM_FIGURES")


@pytest.fixture(scope="module", autouse=True)
def system_dags(cluster: AirflowCluster) -> None:
    cluster.wait_for_dag(BATCH_DAG)
    cluster.wait_for_dag(BLOCKING_DAG)
    cluster.wait_for_dag(OFFICIAL_DAG)


@pytest.fixture(autouse=True)
def quiet_emulator(cluster_emulator: Emulator) -> Iterator[None]:
    cluster_emulator.scenario = Scenario()
    cluster_emulator.fault_rate = 0.0
    yield
    cluster_emulator.fault_rate = 0.0


def jobs_by_prompt(cluster_emulator: Emulator, label: str) -> dict[str, list[str]]:
    # The session's emulator also holds official-format jobs of other tests, whose text is promptText.
    jobs: dict[str, list[str]] = collections.defaultdict(list)
    for job in cluster_emulator.jobs.values():
        if job.body.get("prompt", "").startswith(label):
            jobs[job.body["prompt"]].append(job.runway_task_id)
    return jobs


def test_deferred_tasks_complete_through_the_triggerer(cluster, cluster_emulator):
    cluster_emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=6)
    cluster.trigger(BATCH_DAG, "deferred", {"count": 3, "label": "deferred"})
    assert cluster.wait_for_run(BATCH_DAG, "deferred", timeout=300) == "success"
    tis = cluster.task_instances(BATCH_DAG, "deferred", "generate")
    assert [(ti["state"], ti["try_number"]) for ti in tis] == [("success", 1)] * 3
    jobs = jobs_by_prompt(cluster_emulator, "deferred")
    assert sorted(len(ids) for ids in jobs.values()) == [1, 1, 1]
    for ti in tis:
        log = cluster.task_log(BATCH_DAG, "deferred", "generate", 1, ti["map_index"])
        assert "deferring to the triggerer" in log and "succeeded" in log


def test_killing_the_triggerer_mid_wait_loses_nothing(cluster, cluster_emulator):
    cluster_emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=2, running_seconds=25)
    cluster.trigger(BATCH_DAG, "restart", {"count": 5, "label": "restart"})
    cluster.wait_for_tasks(BATCH_DAG, "restart", "generate", "deferred", 5, timeout=240)
    # The check before deferring is one poll; a second one comes from the triggerer.
    restart_jobs = [
        job for job in cluster_emulator.jobs.values() if job.body.get("prompt", "").startswith("restart")
    ]
    cluster._wait(
        lambda: all(job.feed_requests >= 2 for job in restart_jobs), 120, "the triggerer to poll every task"
    )
    cluster.kill_component("triggerer")
    time.sleep(3)
    cluster.start_component("triggerer")
    assert cluster.wait_for_run(BATCH_DAG, "restart", timeout=300) == "success"
    assert all(ti["try_number"] == 1 for ti in cluster.task_instances(BATCH_DAG, "restart", "generate"))
    assert sorted(len(ids) for ids in jobs_by_prompt(cluster_emulator, "restart").values()) == [1] * 5


def test_killing_the_worker_leads_to_a_retry_that_reconnects(cluster, cluster_emulator):
    cluster_emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=20)
    cluster.trigger(BLOCKING_DAG, "killed")
    cluster.wait_for_tasks(BLOCKING_DAG, "killed", "generate", "running", 1, timeout=120)

    def polled() -> bool:
        return any(
            job.feed_requests >= 2
            for job in cluster_emulator.jobs.values()
            if job.body.get("prompt", "").startswith("A video")
        )

    cluster._wait(polled, 60, "the first try to poll its generation")
    [ti] = cluster.task_instances(BLOCKING_DAG, "killed")
    os.kill(ti["pid"], 9)
    assert cluster.wait_for_run(BLOCKING_DAG, "killed", timeout=300) == "success"
    [ti] = cluster.task_instances(BLOCKING_DAG, "killed")
    assert ti["try_number"] == 2
    [runway_task_id] = jobs_by_prompt(cluster_emulator, "A video")["A video whose worker gets killed"]
    assert f"Reconnecting to Runway task {runway_task_id}" in cluster.task_log(
        BLOCKING_DAG, "killed", "generate", 2
    )


def test_fault_injection_batch_loses_and_duplicates_nothing(cluster, cluster_emulator):
    generations = 50
    cluster_emulator.scenario = Scenario(not_found_seconds=2, queued_seconds=2, running_seconds=6)
    cluster_emulator.fault_rate = 0.10
    cluster_emulator.fault_kinds = ("429", "500", "502", "503", "504", "reset", "html", "garbage")
    cluster_emulator.create_fault_kinds = (
        "429",
        "503",
    )  # a create refused before processing; see docs/reliability.md
    first_record = len(cluster_emulator.requests)
    started = time.monotonic()
    cluster.trigger(BATCH_DAG, "faults", {"count": generations, "label": "faults"})
    state = cluster.wait_for_run(BATCH_DAG, "faults", timeout=1200)
    cluster_emulator.fault_rate = 0.0
    records = cluster_emulator.requests[first_record:]
    jobs = jobs_by_prompt(cluster_emulator, "faults")
    tis = cluster.task_instances(BATCH_DAG, "faults", "generate")
    figures: dict[str, Any] = {
        "generations": generations,
        "api_requests": len(records),
        "faults_injected": sum(1 for r in records if r.get("fault")),
        "faults_by_kind": dict(collections.Counter(r["fault"] for r in records if r.get("fault"))),
        "submissions": sum(len(ids) for ids in jobs.values()),
        "tasks_succeeded": sum(ti["state"] == "success" for ti in tis),
        "tasks_lost": generations - sum(1 for ids in jobs.values() if ids),
        "tasks_duplicated": sum(1 for ids in jobs.values() if len(ids) > 1),
        "airflow_retries": sum(ti["try_number"] - 1 for ti in tis),
        "seconds": round(time.monotonic() - started, 1),
    }
    print("system-test figures:", json.dumps(figures))
    if FIGURES_FILE:
        Path(FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n")
    assert state == "success", figures
    assert figures["tasks_succeeded"] == generations, figures
    assert figures["tasks_lost"] == 0 and figures["tasks_duplicated"] == 0, figures
    assert figures["submissions"] == generations, figures
    assert figures["faults_injected"] >= 10, figures


def test_marking_a_deferred_task_failed_cancels_its_generation(cluster, cluster_emulator, api):
    cluster_emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=300)
    cluster.trigger(OFFICIAL_DAG, "killed_by_user")
    cluster.wait_for_tasks(OFFICIAL_DAG, "killed_by_user", "animate", "deferred", 1, timeout=180)
    [job] = [job for job in cluster_emulator.jobs.values() if job.body.get("promptText") == "Waves roll in"]
    cluster._wait(lambda: job.feed_requests >= 2, 60, "the triggerer to poll the generation")
    answer = api.patch(
        f"{cluster.base_url}/api/v2/dags/{OFFICIAL_DAG}/dagRuns/killed_by_user/taskInstances/animate",
        json={"new_state": "failed"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    cluster._wait(lambda: cluster_emulator.cancels() or None, 60, "the triggerer to cancel the generation")
    assert [r["runway_task_id"] for r in cluster_emulator.cancels()] == [job.runway_task_id]
    assert job.cancelled_at is not None
    assert (
        len([j for j in cluster_emulator.jobs.values() if j.body.get("promptText") == "Waves roll in"]) == 1
    )
