"""Replay a workload's timelines through the pacer offline: polls per generation and detection latency.

    python benchmarks/polling_replay.py [--workload short_videos] [--generations 1000] [--seed 1]
        [--override '{"queued_seconds": [0, 10], "throttled_share": 0}']

No emulator, no HTTP, no clock: each job's :class:`~runway_provider.testing.workload.Timeline` is
read at the simulated time of each poll and fed to a :class:`~runway_provider.pacing.PollPacer`,
as :class:`~runway_provider.waiting.TaskWatch` feeds it, so a rule or a constant can be tried on
thousands of generations in seconds. It leaves out what ``benchmarks/polling.py`` measures: the
event loop, the network, the compression of time. That benchmark is the one the targets are judged
on; this replay is for tuning, and it is what ``runway_provider/pacing.py`` cites as "offline".

Same policies and the same JSON lines as ``benchmarks/polling.py`` (the figures it has no way to
measure left out), then the targets as ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from typing import Any

from polling import POLICIES, targets
from triggerer import _percentile

from runway_provider.models import RunwayTask, RunwayTaskStatus
from runway_provider.pacing import PollSchedule
from runway_provider.testing.workload import DONE, NOT_FOUND, PRESETS, QUEUED, THROTTLED, Timeline, Workload

_STATUS = {THROTTLED: RunwayTaskStatus.THROTTLED, QUEUED: RunwayTaskStatus.PENDING}


def schedules(workload: str) -> dict[str, PollSchedule]:
    """Each policy's schedule, as ``benchmarks/polling.py`` gives it to the trigger (uncompressed)."""
    return {
        "fixed-5s": PollSchedule.fixed(5),
        "fixed-10s": PollSchedule.fixed(10),
        "sdk-6s": PollSchedule(fixed_interval=6, jitter=0.25),
        "adaptive": PollSchedule.from_options(output="image" if workload == "images" else "video"),
    }


def replay(schedule: PollSchedule, timeline: Timeline, seed: int) -> tuple[int, float]:
    """``(polls, seconds from the end to the poll that saw it)`` of one wait begun at submission."""
    pacer = schedule.pacer(submitted_at=0.0, rng=random.Random(seed))
    now, polls = pacer.first_delay(0.0), 0
    while True:
        polls += 1
        phase, progress = timeline.phase(now)
        if phase == DONE:
            return polls, now - timeline.total_seconds
        if phase == NOT_FOUND:
            task = RunwayTask("replay", RunwayTaskStatus.PENDING, visible=False)
        else:
            # Progress only while running, as both route families report it (two decimals).
            task = RunwayTask("replay", _STATUS.get(phase, RunwayTaskStatus.RUNNING), progress=progress)
        pacer.observe(task, now)
        now += pacer.next_delay(now)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="project", choices=sorted(PRESETS))
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--override", default="{}", help="workload keys to change, as JSON")
    args = parser.parse_args(argv)
    workload = Workload.from_dict({**PRESETS[args.workload].to_dict(), **json.loads(args.override)})
    workload = Workload.from_dict({**workload.to_dict(), "seed": args.seed})
    timelines = [workload.draw(index) for index in range(args.generations)]
    rows = []
    for policy, schedule in schedules(args.workload).items():
        results = [replay(schedule, timeline, index) for index, timeline in enumerate(timelines)]
        polls = sorted(polls for polls, _ in results)
        latencies = sorted(latency for _, latency in results)
        row = {
            "policy": policy,
            "generations": args.generations,
            "requests_per_generation_mean": round(statistics.mean(polls), 2),
            "requests_per_generation_p99": _percentile(polls, 0.99),
            "detect_p50_s": round(_percentile(latencies, 0.50), 2),
            "detect_p99_s": round(_percentile(latencies, 0.99), 2),
            "detect_max_s": round(latencies[-1], 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    assert [row["policy"] for row in rows] == list(POLICIES)
    result = {"workload": args.workload, "override": json.loads(args.override), "targets": targets(rows)}
    print(json.dumps({"targets": result["targets"]}), flush=True)
    return {**result, "policies": rows}


if __name__ == "__main__":
    main()
