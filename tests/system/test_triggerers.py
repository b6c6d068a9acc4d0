"""Waits spread across two triggerers, and moved to the survivor when one is killed (issue 16).

The session's triggerer makes way for two ``airflow triggerer`` processes, as a deployment that
outgrows one triggerer adds another. 40 official-format generations (one mapped task) defer; the
first triggerer takes what its capacity allows (20), the second one, started then, the rest. The
first is SIGKILLed mid-wait, and Airflow hands its triggers to the second (whose capacity, 40, is
sized for the peak) once the dead one's last heartbeat is older than ``[triggerer]
triggerer_health_check_threshold``. Every generation must then complete through the survivor with
one submission each, no retry, and no cancel: a move is not a user stopping the task, so
``cancel_on_kill`` (on by default) must not fire.

Left to themselves (both at the default capacity, both running before the DAG run) two
triggerers got 30/10, 25/15, 21/19 and 6/34 of these 40 waits in four runs, and once, with
``max_trigger_to_select_per_loop`` lowered to 5, 40/0: a triggerer waits up to a second for its
trigger runner's messages between two claims, so one whose triggers are busy claims more often
than an idle one. The capacities make the spread certain.

Who runs a trigger is Airflow's own record: ``trigger.triggerer_id`` is the ``job`` row of a
``TriggererJob``. Requests are counted in the emulator's own record, never from the provider's logs.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
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
# Long enough that all 40 defer, spread and are polled well before any of them ends, so that the
# move happens mid-wait: that took 30 to 60 s on a loaded 2-core machine (load average 9).
RUNNING_SECONDS = 90
# The first triggerer holds half the waits; the second can hold them all: with N triggerers,
# (N - 1) x capacity >= the peak number of waits, or a dead one's waits have nowhere to go.
FIRST, FIRST_CAPACITY = "triggerer-a", GENERATIONS // 2
SECOND, SECOND_CAPACITY = "triggerer-b", GENERATIONS
FIGURES_FILE = os.environ.get("RUNWAY_TRIGGERER_FIGURES")


@pytest.fixture
def start_triggerer(cluster: AirflowCluster) -> Iterator[Callable[[str, int], int]]:
    """Stop the session's triggerer; yield a function that starts one with a capacity and returns
    its job id. Afterwards the session's single triggerer is back."""
    started: list[str] = []
    if "triggerer" in cluster.processes:
        cluster.kill_component("triggerer", signal.SIGTERM)  # ends its job: no longer alive

    def start(name: str, capacity: int) -> int:
        started.append(name)
        # Two triggerers on one host each serve their trigger logs on a port of their own.
        env = {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
        return cluster.start_triggerer(name, "--capacity", str(capacity), env=env)

    try:
        yield start
    finally:
        for name in started:
            if name in cluster.processes:
                cluster.kill_component(name, signal.SIGTERM)
        cluster.start_component("triggerer")


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
    5 s (default 30) and ``job_heartbeat_sec`` to 1 s (default 5), so that a move takes seconds.
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
    start_triggerer: Callable[[str, int], int],
    long_generations: None,
) -> None:
    cluster.wait_for_dag(SPREAD_DAG)
    victim = start_triggerer(FIRST, FIRST_CAPACITY)
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

    # The first triggerer fills up to its capacity; the second one, started then, takes the rest.
    def first_is_full() -> bool:
        return sum(triggerer == victim for _, _, triggerer in assignments(cluster)) >= FIRST_CAPACITY

    cluster._wait(first_is_full, 240, f"{FIRST} to hold {FIRST_CAPACITY} triggers", step=0.5)
    survivor = start_triggerer(SECOND, SECOND_CAPACITY)
    names = {victim: FIRST, survivor: SECOND}

    # Every wait deferred, run by one of the two triggerers, and polled at least once after the
    # operator's own check before it deferred.
    def spread() -> list[tuple[int, int, int]]:
        rows = [(m, t, triggerer) for m, t, triggerer in assignments(cluster) if triggerer in names]
        polled = len(jobs()) == GENERATIONS and all(job.feed_requests >= 2 for job in jobs().values())
        return rows if len(rows) == GENERATIONS and polled else []

    rows = cluster._wait(spread, 240, "every trigger to be assigned and polled", step=0.5)
    deferred_after = time.monotonic() - started
    share = collections.Counter(triggerer for _, _, triggerer in rows)
    assert share == {victim: FIRST_CAPACITY, survivor: GENERATIONS - FIRST_CAPACITY}, dict(share)
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
    # Moved waits whose event the survivor's trigger log shows (see the last assertion).
    completed_by_survivor = sum(
        "Trigger fired event" in logs[map_index].get(survivor, "")
        and "'status': 'success'" in logs[map_index][survivor]
        for map_index in moved.values()
    )
    figures: dict[str, Any] = {
        "generations": GENERATIONS,
        "capacity": {FIRST: FIRST_CAPACITY, SECOND: SECOND_CAPACITY},
        "triggers_per_triggerer_before_kill": {
            f"{names[job_id]} (job {job_id})": share[job_id] for job_id in sorted(share)
        },
        "killed": f"{names[victim]} (job {victim})",
        "triggers_moved": len(moved),
        "seconds_all_deferred_and_polled": round(deferred_after, 1),
        "seconds_since_last_heartbeat_at_kill": round(heartbeat_age, 1),
        "seconds_until_reassigned": round(seconds_to_reassign, 1),
        "seconds_until_all_moved_polled_again": round(seconds_to_poll_again, 1),
        "moved_events_in_survivor_log": completed_by_survivor,
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
    # Every moved wait ended through the survivor: the victim was SIGKILLed before any moved
    # generation ended, each was polled again after the kill, and each task succeeded. The survivor's
    # trigger logs usually say so too, but not always: in one CI run Airflow 3.3 left one moved
    # trigger's log at its "starting" line, though the trigger fired and its task succeeded. So the
    # log count is a figure, not the proof.
    assert min(job.finishes_at for job in moved_jobs) > killed_at, figures
    assert set(first_polls) == moved_ids, figures
    assert completed_by_survivor > 0, figures
