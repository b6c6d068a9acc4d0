"""A realistic workload for the emulator: every job its own generation time, throttling and progress.

A :class:`Workload` (the ``workload`` key of an emulator scenario) is a seeded distribution; each job
created under it draws a :class:`Timeline`: how long its id answers ``task_not_exist``, whether it is
THROTTLED first and for how long, how long it is queued, how long it runs, and how its progress rises
while it runs (a per-job curve, a stall, noise, and updates only every few seconds, as Runway says not
to expect updates more often than every five seconds). The n-th job drawn under a seed always gets
the same timeline, so two runs with the same seed compare.

A plain scenario (no workload) gives every job the scenario's fixed phases and a linear progress, as
the emulator always did. All durations are service seconds; the scenario's ``time_scale`` compresses
them into fewer wall-clock seconds (see ``docs/emulator.md``).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

# Phases of a timeline, in order.
NOT_FOUND, THROTTLED, QUEUED, RUNNING, DONE = "not_found", "throttled", "queued", "running", "done"
# Reported progress stays below this while a job runs: only the terminal answer says 100%.
_MAX_RUNNING_PROGRESS = 0.99


@dataclass(frozen=True)
class Timeline:
    """One job's course, in service seconds from its creation.

    :param not_found_seconds: The id answers ``task_not_exist`` this long.
    :param throttled_seconds: Then THROTTLED this long (0: never throttled).
    :param queued_seconds: Then PENDING this long.
    :param running_seconds: Then RUNNING this long; then terminal.
    :param curve: Progress is ``work ** curve``: below 1 it rises fast then slows, above 1 the reverse.
    :param stall_start: Where the stall begins, as a fraction of the running time.
    :param stall_length: How long progress stands still, as a fraction of the running time; the rest
        of the run goes faster so that the job still ends on time.
    :param noise: Standard deviation of the noise on reported progress (0..1 units).
    :param progress_tick_seconds: Reported progress changes only this often (0: continuously).
    :param reports_progress: False for a job whose progress is never reported.
    :param noise_seed: Seeds the noise of each tick, so that answers repeat within a tick.
    :param exact: A plain scenario's job: progress is the elapsed fraction, as before workloads.
    """

    not_found_seconds: float
    throttled_seconds: float
    queued_seconds: float
    running_seconds: float
    curve: float = 1.0
    stall_start: float = 0.0
    stall_length: float = 0.0
    noise: float = 0.0
    progress_tick_seconds: float = 0.0
    reports_progress: bool = True
    noise_seed: int = 0
    exact: bool = False

    @classmethod
    def plain(cls, not_found_seconds: float, queued_seconds: float, running_seconds: float) -> Timeline:
        """A fixed course with linear progress: a scenario without workload."""
        return cls(not_found_seconds, 0.0, queued_seconds, running_seconds, exact=True)

    @property
    def total_seconds(self) -> float:
        """Service seconds from creation to the terminal state."""
        return self.not_found_seconds + self.throttled_seconds + self.queued_seconds + self.running_seconds

    def phase(self, elapsed: float) -> tuple[str, float | None]:
        """``(phase, progress)`` after ``elapsed`` service seconds; progress only while RUNNING."""
        for name, length in (
            (NOT_FOUND, self.not_found_seconds),
            (THROTTLED, self.throttled_seconds),
            (QUEUED, self.queued_seconds),
        ):
            if elapsed < length:
                return name, None
            elapsed -= length
        if elapsed < self.running_seconds:
            return RUNNING, self.progress(elapsed)
        return DONE, 1.0

    def progress(self, running: float) -> float | None:
        """The progress reported ``running`` service seconds into the run (two decimals)."""
        if not self.reports_progress:
            return None
        if self.exact:
            return round(running / self.running_seconds, 2)
        tick = 0
        if self.progress_tick_seconds > 0:
            tick = math.floor(running / self.progress_tick_seconds)
            running = tick * self.progress_tick_seconds
        fraction = running / self.running_seconds
        value = math.pow(self._work(fraction), self.curve)
        if self.noise > 0:
            value += random.Random(f"{self.noise_seed}:{tick}").gauss(0.0, self.noise)
        return round(min(max(value, 0.0), _MAX_RUNNING_PROGRESS), 2)

    def _work(self, fraction: float) -> float:
        """The share of the work done at ``fraction`` of the run, with the stall taken out."""
        if self.stall_length <= 0:
            return fraction
        pace = 1.0 - self.stall_length
        if fraction < self.stall_start:
            return fraction / pace
        if fraction < self.stall_start + self.stall_length:
            return self.stall_start / pace
        return min(1.0, (fraction - self.stall_length) / pace)


Range = tuple[float, float]


@dataclass(frozen=True)
class Workload:
    """A seeded distribution of job timelines; ranges are ``[low, high]`` service seconds, uniform.

    :param seed: The n-th job drawn under one seed always gets the same timeline.
    :param not_found_seconds: How long a new id answers ``task_not_exist``.
    :param throttled_share: Share of jobs that are THROTTLED first (over the concurrency limit).
    :param throttled_seconds: How long a throttled job stays THROTTLED before it is queued.
    :param queued_seconds: How long a job is PENDING.
    :param running_seconds: How long a job is RUNNING.
    :param curve: Range of the progress curve's exponent (``work ** curve``); 1 is linear.
    :param stall_share: Share of jobs whose progress stands still once during the run.
    :param stall_length: Range of a stall's length, as a fraction of the running time.
    :param noise: Standard deviation of the noise on reported progress.
    :param progress_tick_seconds: Reported progress changes only this often.
    :param no_progress_share: Share of jobs that never report progress.
    """

    seed: int = 0
    not_found_seconds: Range = (0.0, 3.0)
    throttled_share: float = 0.15
    throttled_seconds: Range = (10.0, 120.0)
    queued_seconds: Range = (0.0, 60.0)
    running_seconds: Range = (30.0, 240.0)
    curve: Range = (0.7, 1.4)
    stall_share: float = 0.2
    stall_length: Range = (0.05, 0.25)
    noise: float = 0.02
    progress_tick_seconds: float = 5.0
    no_progress_share: float = 0.0

    @classmethod
    def from_dict(cls, value: Any) -> Workload:
        """The workload a scenario's ``workload`` object describes; raises ValueError naming any bad key."""
        if not isinstance(value, dict):
            raise ValueError("workload must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown workload keys {unknown}; known keys: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, item in value.items():
            default = getattr(cls, name)
            if isinstance(default, tuple):
                values[name] = _range(name, item)
            elif name == "seed":
                if isinstance(item, bool) or not isinstance(item, int):
                    raise ValueError(f"workload seed must be an integer, got {item!r}")
                values[name] = item
            else:
                values[name] = _number(name, item)
        workload = cls(**values)
        for name in ("throttled_share", "stall_share", "no_progress_share"):
            if not 0.0 <= getattr(workload, name) <= 1.0:
                raise ValueError(f"workload {name} must be within [0, 1]")
        if workload.running_seconds[0] <= 0:
            raise ValueError("workload running_seconds must be positive")
        if workload.curve[0] <= 0:
            raise ValueError("workload curve must be positive")
        if workload.stall_length[1] >= 1:
            raise ValueError("workload stall_length must stay below 1 (a fraction of the run)")
        return workload

    def to_dict(self) -> dict[str, Any]:
        return {name: list(item) if isinstance(item, tuple) else item for name, item in asdict(self).items()}

    def draw(self, index: int) -> Timeline:
        """The timeline of the ``index``-th job drawn under this workload's seed."""
        rng = random.Random(f"runway-emulator-workload:{self.seed}:{index}")
        throttled = rng.random() < self.throttled_share
        stalled = rng.random() < self.stall_share
        silent = rng.random() < self.no_progress_share
        stall_length = rng.uniform(*self.stall_length) if stalled else 0.0
        return Timeline(
            not_found_seconds=rng.uniform(*self.not_found_seconds),
            throttled_seconds=rng.uniform(*self.throttled_seconds) if throttled else 0.0,
            queued_seconds=rng.uniform(*self.queued_seconds),
            running_seconds=rng.uniform(*self.running_seconds),
            curve=rng.uniform(*self.curve),
            stall_start=rng.uniform(0.05, 0.95 - stall_length) if stalled else 0.0,
            stall_length=stall_length,
            noise=self.noise,
            progress_tick_seconds=self.progress_tick_seconds,
            reports_progress=not silent,
            noise_seed=rng.getrandbits(32),
        )


def _number(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"workload {name} must be a non-negative number, got {value!r}")
    return float(value)


def _range(name: str, value: Any) -> Range:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"workload {name} must be [low, high], got {value!r}")
    low, high = _number(name, value[0]), _number(name, value[1])
    if low > high:
        raise ValueError(f"workload {name} must be [low, high] with low <= high, got {value!r}")
    return low, high


#: Named workloads of the benchmarks (``benchmarks/polling.py --workload``) and tests: ``project`` is
#: the model above; ``short_videos`` the same with 60-120 s runs, where a schedule's fixed costs
#: (first polls, calibration, the last polls at the minimum interval) weigh most; ``images`` runs
#: of a few seconds, as text-to-image's, never throttled.
PRESETS: dict[str, Workload] = {
    "project": Workload(),
    "short_videos": Workload(running_seconds=(60.0, 120.0)),
    "images": Workload(
        not_found_seconds=(0.0, 1.0),
        throttled_share=0.0,
        queued_seconds=(0.0, 5.0),
        running_seconds=(3.0, 15.0),
        stall_share=0.0,
        progress_tick_seconds=1.0,
    ),
}
