"""Waits spread across two triggerers, and moved to the survivor when one is killed (issue 16).

The session's real Airflow gets a second ``airflow triggerer`` process. 40 official-format
generations (one mapped task) defer and spread over both; the one holding more of them is
SIGKILLed mid-wait. Airflow hands its triggers to the survivor once the dead one's heartbeat is
older than ``[triggerer] triggerer_health_check_threshold``. Every generation must then complete
through the survivor with one submission each, no retry, and no cancel: a move is not a user
stopping the task, so ``cancel_on_kill`` (on by default) must not fire.

Who runs a trigger is Airflow's own record: ``trigger.triggerer_id`` is the ``job`` row of a
``TriggererJob``. Requests are counted in the emulator's own record, never from the provider's logs.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runway_provider.testing import Emulator, Scenario
from tests.cluster import AirflowCluster, parse_utc
from tests.helpers import free_port

pytestmark = pytest.mark.system
SPREAD_DAG = "runway_system_spread_waits"
TASK = "animate"
RUN_ID = "spread"
GENERATIONS = 40
# Long enough that all 40 defer, spread and are polled before any of them ends (a few tens of
# seconds on a loaded 2-core machine), and that the move happens mid-wait.
RUNNING_SECONDS = 75
SECOND = "triggerer-2"
FIGURES_FILE = os.environ.get("RUNWAY_TRIGGERER_FIGURES")


@pytest.fixture
def second_triggerer(cluster: AirflowCluster) -> Iterator[dict[int, str]]:
    """Start a second triggerer beside the session's; yield ``{job id: process name}`` of both.

    Afterwards the cluster is left as it was: one triggerer, named ``triggerer``.
    """

    def only_the_sessions() -> list[int]:
        alive = cluster.triggerer_jobs(alive_within=health_check_threshold(cluster))
        return alive if len(alive) == 1 else []

    [first] = cluster._wait(only_the_sessions, 120, "the session's triggerer to heartbeat")
    # Two triggerers on one host each serve their trigger logs on a port of their own.
    second = cluster.start_triggerer(
        SECOND, env={"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
    )
    try:
        yield {first: "triggerer", second: SECOND}
    finally:
        if "triggerer" not in cluster.processes:
            cluster.start_component("triggerer")
        if SECOND in cluster.processes:
            cluster.kill_component(SECOND, signal.SIGTERM)


@pytest.fixture
def long_generations(cluster_emulator: Emulator) -> Iterator[None]:
    cluster_emulator.fault_rate = 0.0
    cluster_emulator.scenario = Scenario(
        not_found_seconds=1, queued_seconds=2, running_seconds=RUNNING_SECONDS
    )
    yield
    cluster_emulator.scenario = Scenario()


def health_check_threshold(cluster: AirflowCluster) -> float:
    """Seconds after its last heartbeat at which a triggerer counts as dead for the others.

    The session cluster (tests/cluster.py) sets ``[triggerer] triggerer_health_check_threshold`` to
    5 s and ``job_heartbeat_sec`` to 1 s; ``capacity`` stays at Airflow's default (1000).
    """
    return float(cluster.env["AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"])


def assignments(cluster: AirflowCluster) -> list[tuple[int, int, int | None]]:
    """``(map_index, trigger id, triggerer job id or None)`` of every deferred task instance of the run."""
    rows = cluster.query(
        "SELECT ti.map_index, t.id, t.triggerer_id FROM task_instance ti JOIN trigger t ON ti.trigger_id = t.id"
        " WHERE ti.dag_id = ? AND ti.run_id = ? AND ti.task_id = ? AND ti.state = 'deferred'",
        SPREAD_DAG,
        RUN_ID,
        TASK,
    )
    return [(row[0], row[1], row[2]) for row in rows]


def trigger_logs(cluster: AirflowCluster, map_index: int) -> dict[int, str]:
    """The trigger's log of one map index per triggerer that ran it, by job id.

    Airflow 3.3 writes it beside the task's log, as ``attempt=1.log.trigger.<job id>.log``.
    """
    folder = cluster.home / "logs" / f"dag_id={SPREAD_DAG}" / f"run_id={RUN_ID}" / f"task_id={TASK}"
    paths = (folder / f"map_index={map_index}").glob("attempt=1.log.trigger.*.log")
    return {int(path.name.split(".")[-2]): path.read_text(errors="replace") for path in paths}


def test_waits_spread_over_two_triggerers_and_move_when_one_is_killed(
    cluster: AirflowCluster,
    cluster_emulator: Emulator,
    second_triggerer: dict[int, str],
    long_generations: None,
) -> None:
    names = second_triggerer
    cluster.wait_for_dag(SPREAD_DAG)
    first_record = len(cluster_emulator.requests)
    started = time.monotonic()
    cluster.trigger(SPREAD_DAG, RUN_ID, {"count": GENERATIONS, "label": RUN_ID})

    def jobs() -> dict[int, Any]:
        """The emulator's job of each map index (its prompt text ends with the index)."""
        found: dict[int, Any] = {}
        for job in list(cluster_emulator.jobs.values()):
            text = job.body.get("promptText") or ""
            if text.startswith(f"{RUN_ID} video #"):
                found[int(text.rsplit("#", 1)[1])] = job
        return found

    # Every wait deferred, run by one of the two triggerers, and polled from there at least once
    # (the first poll is the operator's own check before it defers).
    cluster.wait_for_tasks(SPREAD_DAG, RUN_ID, TASK, "deferred", GENERATIONS, timeout=240)

    def spread() -> list[tuple[int, int, int]]:
        rows = [(m, t, triggerer) for m, t, triggerer in assignments(cluster) if triggerer in names]
        polled = len(jobs()) == GENERATIONS and all(job.feed_requests >= 2 for job in jobs().values())
        return rows if len(rows) == GENERATIONS and polled else []

    rows = cluster._wait(spread, 120, "every trigger to be assigned and polled", step=0.5)
    deferred_after = time.monotonic() - started
    share = collections.Counter(triggerer for _, _, triggerer in rows)
    assert len(share) == 2, f"one triggerer took every trigger: {dict(share)}"
    victim = max(share, key=lambda job_id: (share[job_id], job_id))
    [survivor] = set(names) - {victim}
    moved = {trigger_id: map_index for map_index, trigger_id, triggerer in rows if triggerer == victim}
    moved_jobs = [jobs()[map_index] for map_index in moved.values()]
    # Mid-wait: none of the generations to be moved may have ended yet.
    left = min(job.finishes_at for job in moved_jobs) - time.time()
    assert left > health_check_threshold(cluster) + 5, (
        f"the generations end {left:.1f} s after the kill: too late"
    )

    cluster.kill_component(names[victim], signal.SIGKILL)
    killed, killed_at = time.monotonic(), time.time()
    # How long before the kill the victim last heartbeat: the survivor waits for the threshold
    # counted from that moment, not from the kill.
    [(last_heartbeat,)] = cluster.query("SELECT latest_heartbeat FROM job WHERE id = ?", victim)
    heartbeat_age = killed_at - parse_utc(last_heartbeat).timestamp()

    def reassigned() -> bool:
        marks = ",".join("?" * len(moved))
        now = cluster.query(f"SELECT triggerer_id FROM trigger WHERE id IN ({marks})", *moved)
        return all(triggerer == survivor for (triggerer,) in now)

    cluster._wait(reassigned, 120, "the survivor to take the dead triggerer's triggers", step=0.2)
    seconds_to_reassign = time.monotonic() - killed

    moved_ids = {job.runway_task_id for job in moved_jobs}

    def polled_again() -> dict[str, float]:
        first: dict[str, float] = {}
        for record in list(cluster_emulator.requests[first_record:]):
            moved_poll = record["method"] == "GET" and record.get("runway_task_id") in moved_ids
            if moved_poll and record["time"] > killed_at:
                first.setdefault(record["runway_task_id"], record["time"])
        return first if len(first) == len(moved_ids) else {}

    first_polls = cluster._wait(polled_again, 120, "the survivor to poll every moved generation", step=0.2)
    seconds_to_poll_again = max(first_polls.values()) - killed_at

    state = cluster.wait_for_run(SPREAD_DAG, RUN_ID, timeout=300)
    records = list(cluster_emulator.requests[first_record:])
    tis = cluster.task_instances(SPREAD_DAG, RUN_ID, TASK)
    creates = [r for r in records if r["method"] == "POST" and r["path"] == "/runwayml/v1/image_to_video"]
    cancels = [r for r in records if r["method"] == "DELETE"]
    logs = {map_index: trigger_logs(cluster, map_index) for map_index in range(GENERATIONS)}
    # The event of every moved wait came from the survivor (the victim was dead by then).
    completed_by_survivor = sum(
        "Trigger fired event" in logs[map_index].get(survivor, "")
        and "'status': 'success'" in logs[map_index][survivor]
        for map_index in moved.values()
    )
    figures: dict[str, Any] = {
        "generations": GENERATIONS,
        "triggers_per_triggerer_before_kill": {
            f"{names[job_id]} (job {job_id})": share[job_id] for job_id in sorted(share)
        },
        "killed": f"{names[victim]} (job {victim})",
        "triggers_moved": len(moved),
        "seconds_all_deferred_and_polled": round(deferred_after, 1),
        "seconds_since_last_heartbeat_at_kill": round(heartbeat_age, 1),
        "seconds_until_reassigned": round(seconds_to_reassign, 1),
        "seconds_until_all_moved_polled_again": round(seconds_to_poll_again, 1),
        "moved_completed_by_survivor": completed_by_survivor,
        # Airflow 3.3 also calls on_kill when a trigger leaves a live triggerer (two triggerers
        # on SQLite can both claim one); the trigger then declines to cancel, its task being
        # still deferred. A SIGKILLed triggerer calls nothing.
        "on_kill_calls": sum(log.count("invoking on_kill") for by in logs.values() for log in by.values()),
        "submissions": len(creates),
        "cancels": len(cancels),
        "tasks_succeeded": sum(ti["state"] == "success" for ti in tis),
        "airflow_retries": sum(ti["try_number"] - 1 for ti in tis),
        "seconds": round(time.monotonic() - started, 1),
    }
    print("triggerer figures:", json.dumps(figures))
    if FIGURES_FILE:
        Path(FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n")

    assert state == "success", figures
    assert sorted(ti["map_index"] for ti in tis if ti["state"] == "success") == list(range(GENERATIONS)), (
        figures
    )
    assert figures["airflow_retries"] == 0, figures
    # One submission per map index, and each generation is the one its map index submitted.
    assert len(creates) == GENERATIONS, figures
    assert sorted(jobs()) == list(range(GENERATIONS)), figures
    assert not cancels, figures
    assert all(job.cancelled_at is None for job in jobs().values()), figures
    assert completed_by_survivor == len(moved), figures
