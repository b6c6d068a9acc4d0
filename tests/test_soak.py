"""A hostile-service soak: 200 deferred and 20 blocking waits through a share of garbage answers.

Every wait must end with the outcome of its job, none may hang, and memory must stay bounded. The
figures are printed (``-s``) and written to ``$RUNWAY_SOAK_FIGURES`` when it is set.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from runway_provider.exceptions import RunwayTaskFailedError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily
from runway_provider.testing import Emulator, EmulatorServer
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import TEST_API_KEY, set_connection

pytestmark = pytest.mark.soak

DEFERRED, BLOCKING = 200, 20
# Non-UTF-8 bytes, HTML with 502, JSON of the wrong shape, 2 MB bodies, resets, stalls past the timeout.
HOSTILE = ("binary", "html", "garbage", "huge", "reset", "slow")
SCENARIO = {"not_found_seconds": 0.5, "queued_seconds": 0.5, "running_seconds": 1.5}


@pytest.fixture
def hostile_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    emulator = Emulator(api_key=TEST_API_KEY, fault_rate=0.2, fault_kinds=HOSTILE, slow_seconds=3, seed=7)
    with EmulatorServer(emulator) as server:
        # Polls time out after 1 s: a "slow" answer stalls past it.
        set_connection(monkeypatch, server, password=TEST_API_KEY, extra={"timeout": 1})
        yield server


def make_jobs(server: EmulatorServer, count: int, outcome: str) -> list[str]:
    answer = requests.post(
        f"{server.base_url}/_emulator/jobs",
        json={"count": count, "scenario": {**SCENARIO, "outcome": outcome}},
        timeout=30,
    )
    answer.raise_for_status()
    return list(answer.json()["runway_task_ids"])


async def deferred_waits(runway_task_ids: list[str]) -> list[dict[str, Any]]:
    async def wait(runway_task_id: str) -> dict[str, Any]:
        trigger = RunwayTaskTrigger(
            runway_task_id=runway_task_id,
            runway_conn_id="runway_default",
            poll_interval=0.3,
            end_time=time.time() + 90,
            not_found_grace=60,
            submitted_at=time.time(),
            route_family="reverse",
        )
        events = [event.payload async for event in trigger.run()]
        assert len(events) == 1
        return dict(events[0])

    return await asyncio.wait_for(asyncio.gather(*(wait(i) for i in runway_task_ids)), 150)


def test_hostile_answers_end_every_wait_rightly_in_bounded_memory(hostile_server):
    emulator = hostile_server.emulator
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deferred = {**dict.fromkeys(make_jobs(hostile_server, DEFERRED // 2, "succeeded"), "success")}
    deferred |= dict.fromkeys(make_jobs(hostile_server, DEFERRED // 2, "failed"), "failed")
    blocking = {**dict.fromkeys(make_jobs(hostile_server, BLOCKING // 2, "succeeded"), "success")}
    blocking |= dict.fromkeys(make_jobs(hostile_server, BLOCKING // 2, "failed"), "failed")

    blocking_outcomes: dict[str, str] = {}

    def blocking_wait(runway_task_id: str) -> None:
        hook = RunwayHook(poll_retries=1, retry_backoff=0.05, retry_backoff_max=0.2)
        try:
            hook.wait_for_task(
                runway_task_id,
                route_family=RouteFamily.REVERSE,
                poll_interval=0.3,
                timeout=90,
                not_found_grace=60,
            )
            blocking_outcomes[runway_task_id] = "success"
        except RunwayTaskFailedError:
            blocking_outcomes[runway_task_id] = "failed"

    started = time.monotonic()
    threads = [threading.Thread(target=blocking_wait, args=(i,), daemon=True) for i in blocking]
    for thread in threads:
        thread.start()
    events = asyncio.run(deferred_waits(list(deferred)))
    for thread in threads:
        thread.join(150)
    assert not any(thread.is_alive() for thread in threads), "a blocking wait hung"
    seconds = time.monotonic() - started

    deferred_outcomes = {event["runway_task_id"]: event["status"] for event in events}
    records = list(emulator.requests)
    figures = {
        "deferred_waits": DEFERRED,
        "blocking_waits": BLOCKING,
        "polls": sum(1 for r in records if r["path"] == "/runway/feed"),
        "hostile_answers": sum(1 for r in records if r.get("fault")),
        "hostile_by_kind": dict(collections.Counter(r["fault"] for r in records if r.get("fault"))),
        "outcomes": dict(collections.Counter([*deferred_outcomes.values(), *blocking_outcomes.values()])),
        "wrong_outcomes": sum(deferred_outcomes.get(i) != want for i, want in deferred.items())
        + sum(blocking_outcomes.get(i) != want for i, want in blocking.items()),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_growth_mb": round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb) / 1024, 1
        ),
        "seconds": round(seconds, 1),
    }
    print("soak figures:", json.dumps(figures))
    if os.environ.get("RUNWAY_SOAK_FIGURES"):
        Path(os.environ["RUNWAY_SOAK_FIGURES"]).write_text(json.dumps(figures, indent=2) + "\n")
    assert figures["wrong_outcomes"] == 0, figures
    assert figures["hostile_answers"] >= 100 and set(figures["hostile_by_kind"]) == set(HOSTILE), figures
    # 220 waits hold a few KB each; a body is read into memory up to 1 MB, never the 2 MB sent.
    assert figures["peak_rss_growth_mb"] < 400, figures
