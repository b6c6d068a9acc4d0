"""Tests of runway_provider.pacing: every decision of the polling schedule, with injected time.

No clock and no sleep: each pacer is fed tasks with the times they were seen and a seeded
random.Random, and the tests check the delays it answers. TaskWatch's own rules on top of the pacer
(Retry-After, deadline) are checked at the end.
"""

from __future__ import annotations

import json
import logging
import random
import time

import pytest

from runway_provider import pacing
from runway_provider.exceptions import RunwayInputError, RunwayTransientError
from runway_provider.models import RouteFamily, RunwayTask, RunwayTaskStatus
from runway_provider.pacing import PollPacer, PollSchedule
from runway_provider.wait_decision import TaskWatch

pytestmark = pytest.mark.unit

S = RunwayTaskStatus
T0 = 1_800_000_000.0  # submission time of every task below
ADAPTIVE = PollSchedule()  # min 4, max 60, fallback 10, jitter 10%


def task(
    status: RunwayTaskStatus = S.RUNNING, progress: float | None = None, *, visible: bool = True
) -> RunwayTask:
    return RunwayTask("task-1", status, visible=visible, progress=progress, route_family=RouteFamily.OFFICIAL)


def make_pacer(schedule: PollSchedule = ADAPTIVE, *, seed: int = 1) -> PollPacer:
    return schedule.pacer(submitted_at=T0, rng=random.Random(seed))


def unjittered(schedule: PollSchedule = ADAPTIVE, **overrides: float) -> PollSchedule:
    """The same rules without jitter, so that a delay can be compared with a number."""
    return PollSchedule.from_dict({**schedule.to_dict(), "jitter": 0.0, **overrides})


def feed(pacer: PollPacer, *observations: tuple[float, RunwayTask]) -> float:
    """Observe each ``(seconds after submission, task)``; return the delay after the last one."""
    for after, seen in observations:
        pacer.observe(seen, T0 + after)
    return pacer.next_delay(T0 + observations[-1][0])


def linear_run(start: float, length: float, times: list[float]) -> list[tuple[float, RunwayTask]]:
    """Queued until ``start``, then a run of ``length`` seconds whose progress rises steadily."""
    return [
        (t, task(S.PENDING) if t < start else task(S.RUNNING, round((t - start) / length, 2))) for t in times
    ]


# --- the parameters -------------------------------------------------------------------------------


def test_schedule_is_json_and_rebuilds_the_same():
    schedule = PollSchedule(min_interval=2, max_interval=30, fallback_interval=8)
    text = json.dumps(schedule.to_dict())
    assert json.loads(text) == {"min_interval": 2.0, "max_interval": 30.0, "fallback_interval": 8.0}
    assert PollSchedule.from_dict(json.loads(text)) == schedule
    assert PollSchedule().to_dict() == {}
    assert PollSchedule.fixed(7).to_dict() == {"fixed_interval": 7.0}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"min_interval": 0}, "min_interval"),
        ({"max_interval": -1}, "max_interval"),
        ({"min_interval": 30, "max_interval": 10}, "min_interval"),
        ({"fixed_interval": 0}, "fixed_interval"),
        ({"jitter": 1.5}, "jitter"),
        ({"aim": 0}, "aim"),
        ({"fallback_interval": float("nan")}, "fallback_interval"),
        ({"min_interval": "4"}, "min_interval"),
        ({"growth": True}, "growth"),
    ],
)
def test_schedule_refuses_bad_values_by_name(values, named):
    with pytest.raises(ValueError, match=named):
        PollSchedule(**values)


def test_schedule_refuses_unknown_keys():
    with pytest.raises(ValueError, match="min_intervall"):
        PollSchedule.from_dict({"min_intervall": 3})


def test_from_options_fixed_when_poll_interval_is_set():
    assert PollSchedule.from_options(poll_interval=15, min_poll_interval=2) == PollSchedule.fixed(15)
    assert PollSchedule.from_options() == PollSchedule()
    assert PollSchedule.from_options(min_poll_interval=2, max_poll_interval=20) == PollSchedule(
        min_interval=2, max_interval=20
    )


def test_fallback_stays_within_the_bounds():
    assert PollSchedule(min_interval=15, max_interval=60).fallback == 15
    assert PollSchedule(min_interval=1, max_interval=5).fallback == 5


# --- fixed schedule: the behaviour before pacing ------------------------------------------------------


def test_fixed_first_delay_is_spread_over_one_interval():
    pacer = make_pacer(PollSchedule.fixed(10))
    delays = [pacer.first_delay(T0) for _ in range(300)]
    assert all(0 <= d <= 10 for d in delays)
    assert min(delays) < 1 and max(delays) > 9


def test_fixed_next_delay_is_the_interval_with_ten_percent_jitter_whatever_the_task_says():
    pacer = make_pacer(PollSchedule.fixed(10))
    seen = [task(S.PENDING, visible=False), task(S.THROTTLED), task(S.RUNNING, 0.97), task(S.RUNNING, 0.1)]
    delays = []
    for i, observed in enumerate(seen * 50):
        pacer.observe(observed, T0 + i)
        delays.append(pacer.next_delay(T0 + i))
        assert pacer.reason == pacing.FIXED
    assert all(9 <= d <= 11 for d in delays)
    assert len(set(delays)) > 100


def test_fixed_ignores_the_adaptive_bounds():
    pacer = make_pacer(PollSchedule(fixed_interval=1, min_interval=4))
    assert 0.9 <= feed(pacer, (0, task(S.RUNNING, 0.5))) <= 1.1


# --- adaptive: before the run ---------------------------------------------------------------------


def test_slow_while_not_visible_or_queued_slower_while_throttled():
    schedule = unjittered()
    assert feed(make_pacer(schedule), (1, task(S.PENDING, visible=False))) == 30
    pacer = make_pacer(schedule)
    assert feed(pacer, (5, task(S.PENDING))) == 30
    assert pacer.reason == pacing.QUEUED
    pacer = make_pacer(schedule)
    assert feed(pacer, (5, task(S.THROTTLED))) == 60
    assert pacer.reason == pacing.THROTTLED
    # Never beyond the user's bound.
    assert feed(make_pacer(unjittered(max_interval=20)), (5, task(S.THROTTLED))) == 20


def test_queued_pace_is_slower_than_the_fixed_default_it_replaces():
    pacer = make_pacer()
    assert all(feed(pacer, (t, task(S.PENDING))) >= 27 for t in range(0, 600, 30))


def test_first_delay_of_a_fresh_task_is_spread_over_half_to_one_queued_pace():
    pacer = make_pacer()
    delays = [pacer.first_delay(T0 + 1) for _ in range(300)]
    assert all(15 <= d <= 30 for d in delays)
    assert min(delays) < 16 and max(delays) > 29


def test_first_delay_of_a_resumed_wait_is_within_one_fallback_interval():
    pacer = make_pacer()
    delays = [pacer.first_delay(T0 + 600) for _ in range(300)]
    assert all(0 <= d <= 10 for d in delays)
    assert max(delays) > 9
    assert make_pacer(PollSchedule(max_interval=12)).first_delay(T0) <= 12


# --- adaptive: while running ---------------------------------------------------------------------


def test_faster_near_the_end_down_to_the_minimum():
    # A 200 s run that ends at 250 s, seen every 20 s then closer to its end.
    pacer = make_pacer(unjittered())
    times = [*range(10, 250, 20), 240, 246]
    delays = dict(zip(times, (feed(pacer, seen) for seen in linear_run(50, 200, times)), strict=True))
    assert delays[150] == pytest.approx(0.55 * 100)
    late = [delays[t] for t in (150, 170, 190, 210, 230, 240, 246)]
    assert late == sorted(late, reverse=True)
    assert delays[240] == pytest.approx(0.55 * 10)
    assert delays[246] == 4  # min_interval, 4 s from the end


def test_estimate_aims_short_of_the_end():
    # Steady progress: 0.2 at 70 s, 0.5 at 130 s; the run ends at 230 s.
    pacer = make_pacer(unjittered())
    delay = feed(pacer, (30, task(S.PENDING)), (70, task(S.RUNNING, 0.2)), (130, task(S.RUNNING, 0.5)))
    assert pacer.reason == pacing.ESTIMATE
    assert pacer.estimated_end == pytest.approx(T0 + 230)
    assert delay == pytest.approx(0.55 * 100)  # aim × the 100 s left
    assert 130 + delay < 230


def test_steady_run_is_never_polled_after_its_end():
    # Whatever the run's length, polls that follow the estimate land before the end, or at the
    # minimum interval after it.
    for length in (30, 60, 120, 240, 600):
        pacer = make_pacer(unjittered(), seed=length)
        now, end = 12.0, 20.0 + length
        while True:
            seen = task(S.PENDING) if now < 20 else task(S.RUNNING, min(round((now - 20) / length, 2), 0.99))
            delay = feed(pacer, (now, seen))
            if now + delay >= end:
                assert now + delay - end <= 4, (length, now, delay)
                break
            now += delay


def test_rate_is_measured_over_a_rise_above_the_noise():
    # 0.30 then 0.32: a rise that small says little, the estimate comes from further back.
    pacer = make_pacer(unjittered())
    feed(pacer, (0, task(S.PENDING)), (20, task(S.RUNNING, 0.1)), (60, task(S.RUNNING, 0.3)))
    assert pacer.best_rate == pytest.approx(0.2 / 40)
    feed(pacer, (64, task(S.RUNNING, 0.32)))
    assert pacer.best_rate == pytest.approx(0.2 / 40)  # not 0.02 / 4 = 0.005: that is noise


def test_rate_is_measured_far_enough_back_for_the_time_left():
    # After 0.1 at 20 s and 0.3 at 60 s the end looks 140 s away: a rate over the last 10 s (0.3 to
    # 0.42) is too short a stretch for that, so it is measured from 20 s: 0.32 in 50 s.
    pacer = make_pacer(unjittered(max_interval=600))
    feed(pacer, (20, task(S.RUNNING, 0.1)), (60, task(S.RUNNING, 0.3)))
    assert pacer.estimated_end == pytest.approx(T0 + 200)
    feed(pacer, (70, task(S.RUNNING, 0.42)))
    assert pacer.best_rate == pytest.approx(0.32 / 50)


def test_rate_is_measured_from_the_most_recent_poll_far_enough_back():
    # Speeding up: 0.1 at 20 s, 0.3 at 60 s, 0.6 at 100 s. The recent pace (0.3 in 40 s) predicts
    # the end, not the pace since the first poll (0.5 in 80 s).
    pacer = make_pacer(unjittered(max_interval=600))
    feed(pacer, (20, task(S.RUNNING, 0.1)), (60, task(S.RUNNING, 0.3)), (100, task(S.RUNNING, 0.6)))
    assert pacer.best_rate == pytest.approx(0.3 / 40)
    assert pacer.estimated_end == pytest.approx(T0 + 100 + 0.4 / (0.3 / 40))


def test_early_estimates_are_capped_by_the_time_seen_running():
    # A slow start (0.01 to 0.11 in 40 s) says 356 s are left: too early to believe it.
    pacer = make_pacer(unjittered(max_interval=600))
    delay = feed(pacer, (0, task(S.PENDING)), (30, task(S.RUNNING, 0.01)), (70, task(S.RUNNING, 0.11)))
    assert pacer.reason == pacing.ESTIMATE
    assert pacer.estimated_end - (T0 + 70) == pytest.approx(356, abs=1)
    assert delay == 1.5 * 40  # growth × the 40 s since the first poll that saw it running


def test_calibrating_after_the_first_running_poll():
    schedule = unjittered()
    # Just started (began about 45 s, midway since it was seen queued): poll again after the time
    # it may have run, 15 s, so that the next poll measures a rate over a real rise.
    pacer = make_pacer(schedule)
    assert feed(pacer, (30, task(S.PENDING)), (60, task(S.RUNNING, 0.05))) == 15
    assert pacer.reason == pacing.CALIBRATING
    # Seen running 2 s after it was seen queued: at least the fallback interval.
    pacer = make_pacer(schedule)
    assert feed(pacer, (30, task(S.PENDING)), (32, task(S.RUNNING, 0.01))) == 10
    # Far along for the time it can have run (began after 30 s): poll sooner.
    pacer = make_pacer(schedule)
    assert feed(pacer, (30, task(S.PENDING)), (60, task(S.RUNNING, 0.6))) == pytest.approx(
        max(4, 0.55 * 0.4 / (0.6 / 15))
    )
    # Nearly done at its first running poll, with a low minimum: polled again within a second.
    pacer = make_pacer(unjittered(min_interval=0.5))
    assert feed(pacer, (30, task(S.PENDING)), (60, task(S.RUNNING, 0.9))) == pytest.approx(
        0.55 * 0.1 / (0.9 / 15)
    )
    # No rate yet after a second poll: wait up to growth × the time seen running.
    pacer = make_pacer(schedule)
    assert feed(pacer, (30, task(S.PENDING)), (60, task(S.RUNNING, 0.05)), (75, task(S.RUNNING, 0.1))) == 22.5
    assert pacer.reason == pacing.CALIBRATING


def test_absent_progress_falls_back_to_the_default_interval():
    schedule = unjittered()
    # The official route without progress, and the feed's "0%" that never moves.
    for progress in (None, 0.0):
        pacer = make_pacer(schedule)
        assert feed(pacer, (0, task(S.RUNNING, progress)), (10, task(S.RUNNING, progress))) == 10
        assert pacer.reason == pacing.NO_PROGRESS
    # Progress that was there and went missing.
    pacer = make_pacer(schedule)
    assert feed(pacer, (0, task(S.RUNNING, 0.2)), (30, task(S.RUNNING, 0.5)), (60, task(S.RUNNING))) == 10


def test_progress_going_back_is_erratic_and_restarts_the_estimate():
    pacer = make_pacer(unjittered())
    feed(pacer, (0, task(S.PENDING)), (20, task(S.RUNNING, 0.3)), (60, task(S.RUNNING, 0.7)))
    assert pacer.estimated_end is not None
    assert feed(pacer, (80, task(S.RUNNING, 0.2))) == 10
    assert pacer.reason == pacing.ERRATIC
    assert pacer.estimated_end is None and len(pacer.samples) == 1
    # Small steps back are noise, not a restart.
    pacer = make_pacer(unjittered())
    feed(pacer, (0, task(S.PENDING)), (20, task(S.RUNNING, 0.3)), (60, task(S.RUNNING, 0.7)))
    feed(pacer, (64, task(S.RUNNING, 0.65)))
    assert pacer.reason != pacing.ERRATIC and pacer.estimated_end is not None


def test_noise_that_goes_back_does_not_push_the_end_later():
    # 0.1 at 20 s, 0.5 at 60 s (0.01 a second): the end is 50 s after 60 s. At 64 s the progress
    # reads 0.47, noise within the tolerance: the work left still counts from 0.5, so the end does
    # not move to 64 + 53 s.
    pacer = make_pacer(unjittered())
    feed(pacer, (0, task(S.PENDING)), (20, task(S.RUNNING, 0.1)), (60, task(S.RUNNING, 0.5)))
    assert pacer.estimated_end == pytest.approx(T0 + 110)
    feed(pacer, (64, task(S.RUNNING, 0.47)))
    assert pacer.estimated_end == pytest.approx(T0 + 64 + 50)


def test_a_stall_keeps_the_pace_backs_off_and_never_exceeds_the_fallback():
    pacer = make_pacer(unjittered())
    feed(pacer, (0, task(S.PENDING)), (20, task(S.RUNNING, 0.1)), (60, task(S.RUNNING, 0.5)))
    rate = pacer.best_rate
    delays = [feed(pacer, (t, task(S.RUNNING, 0.5))) for t in (70, 80, 100, 140)]
    assert {pacer.reason} == {pacing.STALLED}
    assert all(d <= 10 for d in delays)
    assert delays == sorted(delays)
    # Once it moves again, the pace before the stall is kept: the end is not pushed out by it.
    feed(pacer, (150, task(S.RUNNING, 0.52)))
    assert pacer.best_rate == rate


def test_a_stall_early_in_a_run_is_still_capped_by_the_time_seen_running():
    # 0.1 at 20 s, 0.25 at 30 s: the end looks 50 s away; stalled at 31 s. Aiming short of that end
    # would wait 27 s, but the task has been seen running for 11 s only: at most 1.5 x 11 s.
    pacer = make_pacer(unjittered(fallback_interval=60, max_interval=600))
    delay = feed(pacer, (20, task(S.RUNNING, 0.1)), (30, task(S.RUNNING, 0.25)), (31, task(S.RUNNING, 0.25)))
    assert pacer.reason == pacing.STALLED
    assert pacer.estimated_end == pytest.approx(T0 + 80)
    assert delay == pytest.approx(16.5)


def test_asked_after_the_estimated_end_the_next_poll_comes_in_half_the_time_overdue():
    # Estimated to end at 66 s (100% then); asked at 76 s, 10 s overdue: poll in 5 s.
    pacer = make_pacer(unjittered())
    feed(pacer, (0, task(S.PENDING)), (20, task(S.RUNNING, 0.1)), (60, task(S.RUNNING, 0.9)))
    pacer.observe(task(S.RUNNING, 1.0), T0 + 66)
    assert pacer.estimated_end == pytest.approx(T0 + 66)
    assert pacer.next_delay(T0 + 76) == pytest.approx(5)
    assert pacer.reason == pacing.OVERDUE


def test_past_the_estimated_end_polls_back_off_to_the_fallback():
    # "100%" while still RUNNING (the output is being stored, say): due now, then less and less so.
    pacer = make_pacer(unjittered())
    feed(pacer, (0, task(S.PENDING)), (20, task(S.RUNNING, 0.1)), (60, task(S.RUNNING, 0.9)))
    assert feed(pacer, (66, task(S.RUNNING, 1.0))) == 4
    assert pacer.reason == pacing.OVERDUE
    delays = [feed(pacer, (t, task(S.RUNNING, 1.0))) for t in (70, 80, 100, 160)]
    assert pacer.reason == pacing.STALLED
    assert delays == [4, 7, 10, 10]


def test_unknown_status_falls_back():
    pacer = make_pacer(unjittered())
    assert feed(pacer, (0, task(S.UNKNOWN, 0.5))) == 10
    assert pacer.reason == pacing.UNKNOWN


def test_back_to_queued_forgets_the_run():
    pacer = make_pacer(unjittered())
    feed(pacer, (0, task(S.PENDING)), (20, task(S.RUNNING, 0.1)), (60, task(S.RUNNING, 0.5)))
    assert feed(pacer, (70, task(S.THROTTLED))) == 60
    assert pacer.samples == [] and pacer.best_rate is None


# --- every decision, within the bounds, jittered, repeatable --------------------------------------


def random_observations(rng: random.Random, count: int) -> list[tuple[float, RunwayTask]]:
    statuses = [S.PENDING, S.THROTTLED, S.RUNNING, S.RUNNING, S.RUNNING, S.UNKNOWN]
    now, seen = 0.0, []
    for _ in range(count):
        now += rng.uniform(0, 90)
        status = rng.choice(statuses)
        progress = rng.choice([None, 0.0, round(rng.random(), 2), round(rng.random(), 2)])
        seen.append((now, task(status, progress, visible=rng.random() > 0.1)))
    return seen


@pytest.mark.parametrize(
    "schedule",
    [
        ADAPTIVE,
        PollSchedule(min_interval=1, max_interval=5),
        PollSchedule(min_interval=8, max_interval=8),
        PollSchedule(min_interval=0.2, max_interval=600, fallback_interval=3, jitter=0.5),
    ],
)
def test_every_delay_is_within_the_bounds(schedule):
    rng = random.Random(3)
    reasons = set()
    for seed in range(40):
        pacer = make_pacer(schedule, seed=seed)
        for now, seen in random_observations(rng, 60):
            pacer.observe(seen, T0 + now)
            # Asked late too: an answer may come back long after the poll was sent.
            delay = pacer.next_delay(T0 + now + rng.choice([0, 0, 5, 100]))
            reasons.add(pacer.reason)
            assert schedule.min_interval <= delay <= schedule.max_interval
    assert reasons >= {pacing.QUEUED, pacing.THROTTLED, pacing.NOT_VISIBLE, pacing.NO_PROGRESS}
    assert reasons >= {pacing.CALIBRATING, pacing.ESTIMATE, pacing.STALLED, pacing.ERRATIC}


def test_jitter_is_within_ten_percent_of_the_decision():
    pacer = make_pacer()
    pacer.observe(task(S.PENDING), T0 + 5)
    delays = [pacer.next_delay(T0 + 5) for _ in range(300)]
    assert all(27 <= d <= 33 for d in delays)
    assert min(delays) < 27.5 and max(delays) > 32.5


def test_same_seed_same_delays():
    observations = random_observations(random.Random(9), 80)

    def delays(seed: int) -> list[float]:
        pacer = make_pacer(seed=seed)
        out = [pacer.first_delay(T0)]
        for now, seen in observations:
            pacer.observe(seen, T0 + now)
            out.append(pacer.next_delay(T0 + now))
        return out

    assert delays(4) == delays(4)
    assert delays(4) != delays(5)


# --- TaskWatch keeps its own rules on top of the pacer ---------------------------------------------


def watch_with(pacer: PollPacer, *, end_in: float = 3600) -> TaskWatch:
    now = time.time()
    return TaskWatch(
        runway_task_id="task-1",
        end_time=now + end_in,
        poll_interval=10,
        not_found_grace=120,
        submitted_at=now,
        log=logging.getLogger("test"),
        pacer=pacer,
    )


def test_watch_feeds_the_pacer_and_asks_it():
    pacer = unjittered().pacer(submitted_at=time.time(), rng=random.Random(1))
    watch = watch_with(pacer)
    assert watch.observe(task(S.THROTTLED)) is None
    assert pacer.last_task == task(S.THROTTLED)
    assert watch.next_delay() == pytest.approx(60)
    assert 15 <= watch.first_delay() <= 30


def test_watch_retry_after_still_wins_over_the_pacer():
    watch = watch_with(unjittered().pacer(submitted_at=time.time()))
    watch.observe(task(S.RUNNING, 0.0))
    watch.observe_error(RunwayTransientError("HTTP 429", http_status=429, retry_after=45))
    assert watch.next_delay() == pytest.approx(45, abs=0.01)


def test_watch_deadline_still_clamps_the_pacer():
    watch = watch_with(unjittered().pacer(submitted_at=time.time()), end_in=7)
    watch.observe(task(S.THROTTLED))
    assert 0 < watch.next_delay() <= 7
    assert 0 <= watch.first_delay() <= 7


def test_watch_without_pacer_polls_at_its_interval():
    watch = TaskWatch(
        runway_task_id="task-1",
        end_time=time.time() + 3600,
        poll_interval=20,
        not_found_grace=120,
        submitted_at=time.time(),
        log=logging.getLogger("test"),
    )
    watch.observe(task(S.RUNNING, 0.9))
    assert watch.pacer.schedule == PollSchedule.fixed(20)
    assert 18 <= watch.next_delay() <= 22


def test_with_a_low_minimum_the_last_poll_of_a_short_run_still_lands_before_its_end():
    # A 10 s image run (1 s to 11 s) with min_poll_interval lowered to 0.1 s, seen half a second
    # before its end: the poll still aims short of the end instead of landing after it.
    pacer = make_pacer(unjittered(min_interval=0.1))
    delay = feed(
        pacer,
        (0, task(S.PENDING)),
        (2, task(S.RUNNING, 0.1)),
        (6, task(S.RUNNING, 0.5)),
        (10.5, task(S.RUNNING, 0.95)),
    )
    assert pacer.reason == pacing.ESTIMATE and pacer.estimated_end == pytest.approx(T0 + 11)
    assert delay == pytest.approx(0.55 * 0.5)  # aim × the half second left


def test_a_calibrating_delay_counts_from_the_poll_not_from_when_it_is_asked():
    # Seen running at 20 s (queued at 0 s): the next poll is due 10 s after that poll, so asked 3 s
    # later (a slow answer), 7 s remain.
    pacer = make_pacer(unjittered())
    pacer.observe(task(S.PENDING), T0)
    pacer.observe(task(S.RUNNING, 0.1), T0 + 20)
    assert pacer.next_delay(T0 + 23) == pytest.approx(7)
    assert pacer.reason == pacing.CALIBRATING


# --- the route's output: an image's task ends in seconds ----------------------------------------------

IMAGE_SCHEDULE = PollSchedule.from_options(output="image")


def test_an_image_route_paces_the_schedule_for_seconds_and_a_video_route_does_not():
    assert IMAGE_SCHEDULE.to_dict() == pacing.IMAGE_PACES
    assert PollSchedule.from_options(output="video") == PollSchedule.from_options() == PollSchedule()
    # The user's bounds still apply, and a set poll_interval is fixed whatever the output.
    assert PollSchedule.from_options(output="image", min_poll_interval=6).fallback == 6
    assert PollSchedule.from_options(output="image", poll_interval=10) == PollSchedule.fixed(10)
    with pytest.raises(RunwayInputError, match="`output_kind`"):
        PollSchedule.from_options(output="audio")


def test_an_image_task_is_polled_every_few_seconds_before_it_runs():
    schedule = unjittered(IMAGE_SCHEDULE)
    assert feed(make_pacer(schedule), (1, task(S.PENDING, visible=False))) == 4
    assert feed(make_pacer(schedule), (3, task(S.PENDING))) == 4
    assert feed(make_pacer(schedule), (3, task(S.RUNNING))) == 4  # no progress reported
    # Throttled, it waits for another generation to end, perhaps a video: slower, still bounded.
    assert feed(make_pacer(schedule), (3, task(S.THROTTLED))) == 10
    delays = [make_pacer(IMAGE_SCHEDULE, seed=seed).first_delay(T0) for seed in range(200)]
    assert all(2 <= d <= 4 for d in delays)


@pytest.mark.parametrize("output", ["image", "video"])
def test_a_text_to_image_run_is_seen_within_one_minimum_interval_of_its_end(output):
    # Runs of 3 to 15 s after 0 to 5 s queued, with or without progress: the image schedule sees each
    # end within min_interval (+10% jitter); the video schedule's first poll (15 to 30 s) is later.
    schedule = PollSchedule.from_options(output=output)
    worst = 0.0
    for seed in range(300):
        rng = random.Random(seed)
        queued, length, reports = rng.uniform(0, 5), rng.uniform(3, 15), rng.random() < 0.5
        pacer = make_pacer(schedule, seed=seed)
        now = pacer.first_delay(T0) + 0.0
        while now < queued + length:
            if now < queued:
                seen = task(S.PENDING)
            else:
                seen = task(S.RUNNING, round((now - queued) / length, 2) if reports else None)
            now += feed(pacer, (now, seen))
        worst = max(worst, now - (queued + length))
    if output == "image":
        assert worst <= 4.4
    else:
        assert worst > 10


def test_a_fresh_wait_counts_its_task_as_not_running_before_its_submission():
    # Never seen queued, first seen running at 24 s with 0.2: it began after its submission (about
    # 12 s, midway), so the next poll waits the 12 s it may have been running, not the fallback.
    pacer = make_pacer(unjittered())
    assert feed(pacer, (24, task(S.RUNNING, 0.2))) == pytest.approx(12)
    assert pacer.reason == pacing.CALIBRATING
    # Nearly done for so short a run: polled at the minimum.
    assert feed(make_pacer(unjittered()), (24, task(S.RUNNING, 0.9))) == 4
