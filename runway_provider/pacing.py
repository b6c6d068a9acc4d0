"""When to poll a Runway task next: a fixed interval, or a pace that follows what the service says.

:class:`PollSchedule` holds the parameters (JSON numbers only, so that a trigger carries them in its
kwargs and any triggerer rebuilds the same schedule); :meth:`PollSchedule.pacer` makes the
:class:`PollPacer` of one wait. The pacer does no I/O and never sleeps: it is fed each poll's
:class:`~runway_provider.models.RunwayTask` with the time it was seen, and answers how many seconds
to wait. Time and randomness are injected (``now``, a :class:`random.Random`), so every decision can
be tested without a clock. :class:`~runway_provider.wait_decision.TaskWatch` owns the pacer and keeps the two
rules that are not about pace: a ``Retry-After`` wins over the pacer's delay, and no delay passes the
wait's deadline.

Fixed schedule (``fixed_interval`` set: the user gave a number as ``poll_interval``)
    Exactly the behaviour before adaptive pacing: the first poll is spread uniformly over one
    interval (tasks deferred together must not poll in lockstep), every later one comes after the
    interval ±10%.

Adaptive schedule (``fixed_interval`` None: ``poll_interval`` not given, the default)
    Each poll costs a request against the user's CometAPI rate limit, and the only poll that matters
    is the first one after the task ends: the others buy information. So the pacer polls rarely while
    the task cannot end, and densely only around the end it expects. The rules, in order:

    1. *Bounds.* Every delay is within ``[min_interval, max_interval]``, after jitter.
       ``min_interval`` (4 s) protects the rate limit, and Runway says not to expect updates more
       often than every 5 s; ``max_interval`` (60 s) bounds how late a task that ends without
       warning is seen. The user sets both.
    2. *Jitter.* Every delay is multiplied by ``1 ± jitter`` (10%): thousands of waits deferred
       together must not poll in lockstep, whatever rule paced them. For the same reason the first
       poll of a task submitted less than a fallback interval ago is spread over half to one queued
       pace (it is not visible or queued anyway); a wait resumed later (another triggerer, a
       restart) first polls within one fallback interval, as it knows nothing yet.
    3. *Not visible yet, PENDING: slow.* A task cannot end before it has run, and nothing it
       reports says when it will start: ``queued_factor`` × the fallback interval (30 s).
       *THROTTLED: slower* (``throttled_factor``, 60 s): Runway holds the task until one of the
       account's running generations ends, which takes at least a generation. The cost of this
       rule: a task that starts and ends between two such polls is seen up to one queued pace
       late, which is why an image route's schedule has paces of its own (*Route output*, below).
    4. *RUNNING with progress: aim short of the estimated end.* Progress per second gives the
       remaining time, ``(1 - progress) / rate``, and the next poll comes after ``aim`` (55%) of
       it: far from the end this nearly halves the distance at each poll (few requests), near the
       end it reaches ``min_interval`` (quick detection). Aiming short of the end rather than at it
       is what keeps a wrong estimate from making detection late: an estimate up to 80% too long
       still lands the poll before the end, and the next estimate, from more progress, is better.
       The rate is measured between the latest poll and the most recent earlier one that is both
       ``rate_window`` (25%) of the remaining time back and ``least_rise`` (10 points) lower:
       recent, because progress curves bend and the recent pace predicts the end best; far enough,
       because over a short stretch the rate measures the noise and the 5 s reporting steps. The
       pacer keeps the *fastest* rate measured in the run, and counts the remaining work from the
       *highest* progress seen in it: a stall, a slow stretch or noise that goes back must not make
       the end look further than it can be (a late poll), while an end that looks too near costs
       only a poll.
    5. *Early in a run, trust grows with time.* An estimate made after little progress can be far
       off (a curve that starts slowly, a stall, then a faster stretch), so while RUNNING no delay
       exceeds ``growth`` (1.5) × the time since the first poll that saw the task running. Until a
       rate can be measured (calibrating), the first RUNNING poll is followed by one after the time
       the task may have been running (it began after the last time it was known not to run: the
       last poll that saw it queued, else its submission; about midway), at least the fallback
       interval, sooner if the task is far along for that time; then by polls that grow the time
       observed by ``growth``.

       Why: on runs of 60-120 s (``short_videos`` in ``benchmarks/polling.py``) the schedule's
       fixed costs weigh most. With ``growth`` 2 and the first calibrating poll after the fallback
       interval, it sent 0.59× the requests of fixed 10 s polling there (0.69× with queues of
       0-10 s and no throttling; issue 23 reports 0.83× on a workload kept outside the project),
       and saw completion at p99 1.36× as late as fixed 5 s (offline replays of the same
       workload). Requests: the poll after the first RUNNING one came after the fallback interval,
       too soon for a rise the rate trusts (``least_rise``), so a third calibrating poll followed
       in most waits; waiting the time the task may have run lets the second one measure the rate.
       Detection: with ``growth`` 2, an early estimate from a slow start or a stall let a poll jump
       up to 60 s, past the end by up to 20 s; 1.5 bounds that jump, for a fraction of a poll.
       Both were tried against their neighbours (a higher ``aim``, an aim that grows with
       progress, the fastest of the last few rates rather than of the run, a wider
       ``rate_window``): each saved requests only by seeing ends later at p99. Still, with queues
       of 0-10 s and no throttling these rules send 0.70× the requests of fixed 10 s (offline):
       a wait that is running from its first poll pays the first, the calibrating and the last
       polls out of fewer seconds.
    6. *Fallbacks.* Without progress (none reported, or only 0), after progress went back by more
       than ``noise_tolerance`` (10 points: the estimate restarts from that poll), or with a status
       the provider does not know, the pacer knows nothing better than the fallback interval (10 s,
       the provider's fixed interval before pacing). A *stall* (progress did not rise since the last
       poll) is different: the task is behind its estimate, not ahead, so the pacer keeps the pace
       of its estimate, backs off as the stall lasts (half the time stalled), and never waits longer
       than the fallback interval. *Past the estimated end* while still running (progress at 100%
       with the output not ready yet, or an answer that came late), the next poll comes at
       ``min_interval``, then polls back off as above if nothing changes: polling at the minimum for as
       long as the estimate is wrong would spend what the schedule saved.

    ``Retry-After`` (429/503) and the deadline are applied by the watch, after the pacer. The
    constants were tuned against the emulator's realistic workloads (``docs/emulator.md``,
    :data:`runway_provider.testing.workload.PRESETS`) and measured by ``benchmarks/polling.py``
    (``docs/performance.md``).

Route output (:meth:`PollSchedule.from_options`, ``output``)
    A video's task runs for minutes, an image's (text-to-image) for seconds: the rules above are
    paced for videos, and an image route's adaptive schedule changes three constants
    (:data:`IMAGE_PACES`), so that a task that runs for seconds is seen within one minimum
    interval of its end: the fallback interval is the minimum (4 s), the queued pace one fallback
    interval (so the first poll of a fresh task comes after 2-4 s), and the throttled pace 2.5
    fallback intervals (10 s: a THROTTLED task waits for another generation, perhaps a video).
    These are ordinary parameters, so the trigger carries them in its JSON like any others. The
    operators know their route; a sensor learns it from the operator whose output it waits on, or
    from the request recorded upstream, and assumes a video otherwise (``output_kind`` tells it).

The pacer keeps nothing tied to a process: its state is rebuilt from the polls of the wait that
owns it, so a wait resumed in another triggerer starts with the fallback interval and recovers its
estimate within two polls.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Any

from runway_provider.exceptions import RunwayInputError
from runway_provider.models import OutputKind, RunwayTask, RunwayTaskStatus
from runway_provider.validation import require_positive_seconds

# Progress samples kept per wait: a few are enough, and thousands of waits may be in flight.
_KEPT_SAMPLES = 8

# The provider's fixed interval before adaptive pacing; also the adaptive schedule's fallback.
DEFAULT_FALLBACK_INTERVAL = 10.0
DEFAULT_MIN_INTERVAL = 4.0
DEFAULT_MAX_INTERVAL = 60.0
DEFAULT_JITTER = 0.1
# An image's task (text-to-image) runs for seconds: polled at the minimum interval while it is not
# visible, queued or without progress (rules 3 and 6), so that it is seen within one minimum interval
# of its end; THROTTLED waits for another generation (a video, perhaps), so it stays slower.
IMAGE_PACES = {"fallback_interval": DEFAULT_MIN_INTERVAL, "queued_factor": 1.0, "throttled_factor": 2.5}

# Decisions, as reported by PollPacer.reason (for logs and tests).
FIXED = "fixed"
FIRST = "first"
UNSEEN = "unseen"
NOT_VISIBLE = "not_visible"
QUEUED = "queued"
THROTTLED = "throttled"
UNKNOWN = "unknown"
NO_PROGRESS = "no_progress"
ERRATIC = "erratic"
CALIBRATING = "calibrating"
ESTIMATE = "estimate"
STALLED = "stalled"
OVERDUE = "overdue"


@dataclass(frozen=True)
class PollSchedule:
    """The parameters of a polling schedule; every field is a JSON number (or None).

    Users set the first three (through ``poll_interval``, ``min_poll_interval`` and
    ``max_poll_interval``); the others are the rules' constants, explained in the module's docstring.

    :param fixed_interval: Poll every this many seconds (±``jitter``), ignoring what the task
        reports: the behaviour of ``poll_interval``. None for the adaptive schedule.
    :param min_interval: Adaptive: never poll sooner than this after the last poll.
    :param max_interval: Adaptive: never wait longer than this between polls.
    :param fallback_interval: Adaptive: the pace when the task reports nothing useful (clamped into
        the bounds).
    :param jitter: Each delay is multiplied by a uniform factor in ``[1 - jitter, 1 + jitter]``.
    :param queued_factor: Adaptive: × the fallback interval while the task is not visible or PENDING.
    :param throttled_factor: Adaptive: × the fallback interval while the task is THROTTLED.
    :param aim: Adaptive: the share of the estimated remaining time to wait while RUNNING.
    :param rate_window: Adaptive: the progress rate is measured over at least this share of the
        remaining estimate (between the latest poll and the most recent one that far back).
    :param noise_tolerance: Adaptive: progress may go back by this much before it counts as erratic.
    :param least_rise: Adaptive: the progress rate is measured over a rise of at least this much.
    :param growth: Adaptive: while RUNNING, no delay exceeds this × the time since the first poll
        that saw the task running.
    """

    fixed_interval: float | None = None
    min_interval: float = DEFAULT_MIN_INTERVAL
    max_interval: float = DEFAULT_MAX_INTERVAL
    fallback_interval: float = DEFAULT_FALLBACK_INTERVAL
    jitter: float = DEFAULT_JITTER
    queued_factor: float = 3.0
    throttled_factor: float = 6.0
    aim: float = 0.55
    rate_window: float = 0.25
    noise_tolerance: float = 0.1
    least_rise: float = 0.1
    growth: float = 1.5

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and item.name == "fixed_interval":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{item.name} must be a finite number, got {value!r}")
            object.__setattr__(self, item.name, float(value))
        positive = (
            *("min_interval", "max_interval", "fallback_interval"),
            *("queued_factor", "throttled_factor", "least_rise", "growth"),
        )
        for name in (*positive, *(("fixed_interval",) if self.fixed_interval is not None else ())):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.min_interval > self.max_interval:
            raise ValueError(
                f"min_interval ({self.min_interval}) must not exceed max_interval ({self.max_interval})"
            )
        for name in ("jitter", "aim", "rate_window", "noise_tolerance"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be within [0, 1), got {getattr(self, name)!r}")
        if self.aim == 0:
            raise ValueError("aim must be positive")

    @classmethod
    def fixed(cls, interval: float) -> PollSchedule:
        """Poll every ``interval`` seconds ±10%: the schedule of an explicit ``poll_interval``."""
        return cls(fixed_interval=interval)

    @classmethod
    def from_options(
        cls,
        *,
        poll_interval: float | None = None,
        min_poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        output: OutputKind | str = OutputKind.VIDEO,
    ) -> PollSchedule:
        """The schedule of a wait's user-facing options: fixed when ``poll_interval`` is set,
        otherwise adaptive within the bounds given (the defaults for those not given), paced for
        the route's ``output`` (an image's task ends in seconds, a video's in minutes).

        Raises :class:`~runway_provider.exceptions.RunwayInputError` naming the option at fault.
        """
        given = {"poll_interval": poll_interval, "min_poll_interval": min_poll_interval}
        given["max_poll_interval"] = max_poll_interval
        for name, value in given.items():
            if value is not None:
                require_positive_seconds(value, name)
        if poll_interval is not None:
            return cls.fixed(float(poll_interval))
        bounds = {"min_interval": min_poll_interval, "max_interval": max_poll_interval}
        low = float(min_poll_interval if min_poll_interval is not None else cls.min_interval)
        high = float(max_poll_interval if max_poll_interval is not None else cls.max_interval)
        if low > high:
            field = "min_poll_interval" if min_poll_interval is not None else "max_poll_interval"
            raise RunwayInputError(
                field,
                f"the bounds must satisfy min_poll_interval <= max_poll_interval, got {low:g} > {high:g}",
            )
        try:
            kind = OutputKind(output)
        except ValueError:
            known = ", ".join(item.value for item in OutputKind)
            raise RunwayInputError("output_kind", f"expected one of {known}, got {output!r}") from None
        paces = IMAGE_PACES if kind is OutputKind.IMAGE else {}
        return cls(**paces, **{name: float(value) for name, value in bounds.items() if value is not None})

    @property
    def adaptive(self) -> bool:
        return self.fixed_interval is None

    @property
    def fallback(self) -> float:
        """The adaptive fallback interval, within the bounds."""
        return self.bounded(self.fallback_interval)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as JSON, without those left at their default."""
        return {
            item.name: getattr(self, item.name)
            for item in dataclasses.fields(self)
            if getattr(self, item.name) != item.default
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> PollSchedule:
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown poll schedule keys {unknown}; known keys: {sorted(known)}")
        return cls(**value)

    def pacer(self, *, submitted_at: float, rng: random.Random | None = None) -> PollPacer:
        """The pacer of one wait on a task submitted at ``submitted_at`` (epoch seconds)."""
        return PollPacer(self, submitted_at=submitted_at, rng=rng or random.Random())

    @property
    def queued_pace(self) -> float:
        return self.fallback * self.queued_factor

    @property
    def throttled_pace(self) -> float:
        return self.fallback * self.throttled_factor

    def bounded(self, delay: float) -> float:
        """``delay`` within ``[min_interval, max_interval]``."""
        return min(max(delay, self.min_interval), self.max_interval)


@dataclass
class _Sample:
    time: float
    progress: float


@dataclass
class PollPacer:
    """The pace of one wait: fed every poll's task by :meth:`observe`, asked :meth:`next_delay`.

    :param schedule: The parameters.
    :param submitted_at: When the task was submitted, epoch seconds.
    :param rng: Source of jitter; a fresh unseeded one when omitted.
    """

    schedule: PollSchedule
    submitted_at: float
    rng: random.Random = field(default_factory=random.Random)
    #: The rule behind the last delay (one of the module's decision names).
    reason: str = UNSEEN
    last_task: RunwayTask | None = field(default=None, repr=False)
    last_seen: float | None = None
    # Last time the task was seen not yet running (None: never).
    queued_seen: float | None = None
    # Progress of the current run, oldest first (restarted when progress goes back).
    samples: list[_Sample] = field(default_factory=list)
    # The fastest progress per second measured in this run, and the end it gives.
    best_rate: float | None = None
    estimated_end: float | None = None
    # When progress last rose; whether the last progress went back.
    rose_at: float | None = None
    went_back: bool = False

    def observe(self, task: RunwayTask, now: float) -> None:
        """Record a poll's answer, seen at ``now`` (epoch seconds)."""
        self.last_task, self.last_seen = task, now
        if not task.visible or task.status in (RunwayTaskStatus.PENDING, RunwayTaskStatus.THROTTLED):
            self.queued_seen = now
            self._restart()
            return
        if task.status is not RunwayTaskStatus.RUNNING or task.progress is None:
            return
        progress = float(task.progress)
        self.went_back = bool(self.samples) and progress < self._highest() - self.schedule.noise_tolerance
        if self.went_back:
            # The run restarted, or its numbers are not to be trusted: estimate afresh from here.
            self._restart()
        if not self.samples or progress > self.samples[-1].progress:
            self.rose_at = now
        self.samples.append(_Sample(now, progress))
        del self.samples[:-_KEPT_SAMPLES]
        rate = self._rate()
        if rate is not None:
            # The fastest pace seen in this run: a stall or a slow stretch must not make the end look
            # further than it can be (a late poll); an end that looks too near costs only a poll.
            self.best_rate = max(rate, self.best_rate or 0.0)
        if self.best_rate:
            # From the highest progress of the run: noise that goes back must not push the end later.
            self.estimated_end = now + (1.0 - self._highest()) / self.best_rate

    def first_delay(self, now: float) -> float:
        """Seconds before the first poll of a wait, spread so that waits begun together do not poll
        together: over one interval (fixed), or over the pace of the task's likely state (adaptive)."""
        self.reason = FIRST
        schedule = self.schedule
        if schedule.fixed_interval is not None:
            return self.rng.uniform(0, schedule.fixed_interval)
        # Just submitted, the task is queued or not visible yet: it gets the queued pace.
        fresh = now - self.submitted_at < schedule.fallback
        if fresh:
            return min(self.rng.uniform(0.5, 1) * schedule.queued_pace, schedule.max_interval)
        return self.rng.uniform(0, schedule.fallback)

    def next_delay(self, now: float) -> float:
        """Seconds before the next poll: within the bounds, jittered (fixed: the interval ±jitter)."""
        schedule = self.schedule
        if schedule.fixed_interval is not None:
            self.reason = FIXED
            return schedule.fixed_interval * self._jitter()
        self.reason, delay = self._decide(now)
        return schedule.bounded(delay * self._jitter())

    # -- the adaptive rules, in the order of the module's docstring ------------------------------

    def _decide(self, now: float) -> tuple[str, float]:
        schedule, task = self.schedule, self.last_task
        fallback = schedule.fallback
        if task is None:
            return UNSEEN, fallback
        if not task.visible:
            return NOT_VISIBLE, schedule.queued_pace
        if task.status is RunwayTaskStatus.THROTTLED:
            return THROTTLED, schedule.throttled_pace
        if task.status is RunwayTaskStatus.PENDING:
            return QUEUED, schedule.queued_pace
        if task.status is not RunwayTaskStatus.RUNNING:
            return UNKNOWN, fallback
        if task.progress is None or self._highest() <= 0:
            return NO_PROGRESS, fallback
        if self.went_back:
            return ERRATIC, fallback
        # Delays count from now, not from the poll: the answer may have taken a while.
        since = now - (self.last_seen if self.last_seen is not None else now)
        cap = self._running_for(now) * schedule.growth
        if len(self.samples) == 1:
            return CALIBRATING, self._first_running_delay() - since
        if self.estimated_end is None:
            return CALIBRATING, max(min(fallback, self._first_guess()) - since, cap)
        remaining = self.estimated_end - now
        if self.rose_at is not None and self.rose_at < self.samples[-1].time:
            stalled_for = now - self.rose_at
            return STALLED, min(fallback, cap, max(self._aimed(now), stalled_for / 2))
        if remaining <= 0:
            return OVERDUE, min(fallback, -remaining / 2)
        return ESTIMATE, min(self._aimed(now), cap)

    def _aimed(self, now: float) -> float:
        """``aim`` × the estimated time until the run ends."""
        assert self.estimated_end is not None and self.best_rate
        return max(self.estimated_end - now, 0.0) * self.schedule.aim

    def _restart(self) -> None:
        self.samples.clear()
        self.best_rate = self.estimated_end = self.rose_at = None

    def _highest(self) -> float:
        return max((s.progress for s in self.samples), default=0.0)

    def _rate(self) -> float | None:
        """Progress per second between the latest sample and one far enough back; None if none rose.

        Far enough back in time (``rate_window`` × the remaining time last estimated) and in progress
        (``least_rise``): a rate over a short stretch measures the noise and the reporting steps.
        """
        latest = self.samples[-1]
        remaining = self.estimated_end - latest.time if self.estimated_end is not None else 0.0
        window = max(remaining, 0.0) * self.schedule.rate_window
        for sample in reversed(self.samples[:-1]):
            rose, elapsed = latest.progress - sample.progress, latest.time - sample.time
            if elapsed >= window and rose >= self.schedule.least_rise:
                return rose / elapsed
        return None

    def _began(self) -> float | None:
        """About when the run began: midway between the last time the task is known not to have
        been running (the last poll that saw it queued, else its submission) and the first poll that
        saw it running; None when that poll came no later than either."""
        first = self.samples[0].time
        known = self.queued_seen if self.queued_seen is not None else self.submitted_at
        if known >= first:
            return None
        return (known + first) / 2

    def _first_running_delay(self) -> float:
        """The delay after the first poll that saw the task running (calibrating, rule 5).

        Its first guess, but no longer than the time the task may have been running (at least the
        fallback interval): by then the next poll measures a rate over a rise the rules trust.
        """
        began, guess = self._began(), self._first_guess()
        if began is None:
            return min(self.schedule.fallback, guess)
        return min(guess, max(self.schedule.fallback, self.samples[0].time - began))

    def _running_for(self, now: float) -> float:
        """How long the task has surely been running: since the first poll that saw it running."""
        return max(now - self.samples[0].time, 0.0)

    def _first_guess(self) -> float:
        """``aim`` × the remaining time, if the run went at one pace since it began (about)."""
        latest, began = self.samples[-1], self._began()
        if latest.progress <= 0 or began is None or latest.time <= began:
            return self.schedule.fallback
        rate = latest.progress / (latest.time - began)
        return (1.0 - latest.progress) / rate * self.schedule.aim

    def _jitter(self) -> float:
        jitter = self.schedule.jitter
        return self.rng.uniform(1 - jitter, 1 + jitter)
