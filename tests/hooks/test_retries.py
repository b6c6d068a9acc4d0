"""One retry rule: a blocking poll and a deferred one send the same requests for every answer.

Counted in the emulator's own record of requests, with a retry budget (``poll_retries``) to spend:
with ``poll_retries=0`` both paths send one request whatever the rule, and a difference cannot show.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from runway_provider.exceptions import RunwayTaskTimeoutError, RunwayTransientError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily
from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.testing import Emulator
from tests.helpers import MemoryTaskStateStore, RecordingTaskInstance, job_options

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"
POLL_RETRIES = 2
BUDGET = POLL_RETRIES + 1

# Every fault answers each request of the budget; the requests it costs on both paths alike.
FAULT_TABLE = [
    ("429", BUDGET),  # refused before processing, with Retry-After: 1
    ("500", BUDGET),
    ("502", BUDGET),
    ("503", BUDGET),
    ("504", BUDGET),
    ("html", BUDGET),  # a proxy's HTML page with 502
    ("reset", BUDGET),  # no answer at all
    ("invalid500", 1),  # 500 saying the request is wrong: no retry can fix it
    ("http502:task_not_exist", 1),  # not visible yet, whatever the status: the wait decides
    ("garbage", 1),  # a truncated 200: the wait polls again at its own pace
    ("http400", 1),
]


def polls_of(emulator: Emulator, runway_task_id: str) -> list[dict[str, Any]]:
    return [
        r for r in emulator.requests if r.get("runway_task_id") == runway_task_id and not r.get("created")
    ]


def parity_hook() -> RunwayHook:
    return RunwayHook(poll_retries=POLL_RETRIES, retry_backoff=0.01, retry_backoff_max=0.05)


def requests_of_one_poll(emulator: Emulator, runway_task_id: str, fault: str, poll: Any) -> tuple[int, str]:
    """How many requests one poll sent while every answer was ``fault``, and how it ended."""
    before = len(polls_of(emulator, runway_task_id))
    emulator.jobs[runway_task_id].pending_faults = [fault] * BUDGET
    try:
        task = poll()
        outcome = "visible" if task.visible else "not visible"
    except Exception as err:  # the outcome's class is what is compared
        outcome = type(err).__name__
    emulator.jobs[runway_task_id].pending_faults = []
    return len(polls_of(emulator, runway_task_id)) - before, outcome


@pytest.mark.parametrize("family", [RouteFamily.REVERSE, RouteFamily.OFFICIAL])
@pytest.mark.parametrize(("fault", "expected"), FAULT_TABLE)
def test_a_blocking_and_a_deferred_poll_send_as_many_requests(hook, emulator, family, fault, expected):
    if family is RouteFamily.OFFICIAL:
        runway_task_id = hook.submit_image_to_video(prompt_image=IMAGE)
    else:
        runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)

    sync = requests_of_one_poll(
        emulator, runway_task_id, fault, lambda: parity_hook().get_task(runway_task_id, RouteFamily(family))
    )
    deferred = requests_of_one_poll(
        emulator,
        runway_task_id,
        fault,
        lambda: asyncio.run(parity_hook().aget_task(runway_task_id, RouteFamily(family))),
    )
    assert sync == deferred, fault
    assert sync[0] == expected, fault


def test_a_blocking_poll_retries_no_refusal(hook, emulator):
    """The bug this replaces: urllib3's status_forcelist retried a 500 ``invalid_request``."""
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    count, outcome = requests_of_one_poll(
        emulator,
        runway_task_id,
        "invalid500",
        lambda: parity_hook().get_task(runway_task_id, RouteFamily.REVERSE),
    )
    assert (count, outcome) == (1, "RunwayRequestRefusedError")


def assert_retry_after_honoured(emulator: Emulator, runway_task_id: str) -> None:
    first, second = polls_of(emulator, runway_task_id)
    assert (first.get("fault"), second.get("fault")) == ("429", None)
    # The emulator asks for 1 s; the backoff alone would be 10 ms at most.
    assert second["time"] - first["time"] >= 1.0


def test_a_blocking_poll_honours_a_retry_after_longer_than_its_backoff(hook, emulator):
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    emulator.jobs[runway_task_id].pending_faults = ["429"]
    RunwayHook(poll_retries=1, retry_backoff=0.01, retry_backoff_max=0.01).get_task(
        runway_task_id, RouteFamily.REVERSE
    )
    assert_retry_after_honoured(emulator, runway_task_id)


def test_a_deferred_poll_honours_a_retry_after_longer_than_its_backoff(hook, emulator):
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    emulator.jobs[runway_task_id].pending_faults = ["429"]
    asyncio.run(
        RunwayHook(poll_retries=1, retry_backoff=0.01, retry_backoff_max=0.01).aget_task(
            runway_task_id, RouteFamily.REVERSE
        )
    )
    assert_retry_after_honoured(emulator, runway_task_id)


@pytest.mark.parametrize("deferred", [False, True], ids=["blocking", "deferred"])
def test_no_retry_waits_past_the_deadline(hook, emulator, deferred):
    """A Retry-After (1 s) that would end past the wait's deadline ends the poll instead."""
    runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE)
    emulator.jobs[runway_task_id].pending_faults = ["429"] * BUDGET
    deadline = time.time() + 0.5
    poller = parity_hook()
    with pytest.raises(RunwayTransientError, match="429"):
        if deferred:
            asyncio.run(poller.aget_task(runway_task_id, RouteFamily.REVERSE, deadline=deadline))
        else:
            poller.get_task(runway_task_id, RouteFamily.REVERSE, deadline=deadline)
    assert len(polls_of(emulator, runway_task_id)) == 1


@pytest.mark.parametrize("waiter", ["hook", "operator"])
def test_a_blocking_wait_never_retries_past_its_deadline(runway_conn, emulator, waiter):
    """Every poll answers 429 with Retry-After: 1; the wait's polls pass its deadline to their retries.

    Without it the poll started just after submission would retry 1 s and 2 s later, past the 1.2 s
    deadline; with it, no request is sent after the deadline (half a second allowed for a request
    sent just before it to arrive). The deadline is set before the first poll, so it is no later than
    1.2 s after that poll: measured from there, a create slowed by a loaded machine does not count.
    """
    options = job_options(feed_faults=["429"] * 100)
    with pytest.raises(RunwayTaskTimeoutError):
        if waiter == "operator":
            RunwayGenerateOperator(
                task_id="generate",
                prompt="A paper boat",
                image=IMAGE,
                options=options,
                poll_interval=0.1,
                timeout=1.2,
                wait_for_completion=True,
                deferrable=False,
            ).execute({"ti": RecordingTaskInstance(), "task_state_store": MemoryTaskStateStore()})
        else:
            hook = RunwayHook(poll_retries=2, retry_backoff=0.01)
            runway_task_id = hook.submit_generate(prompt="A paper boat", image=IMAGE, options=options)
            hook.wait_for_task(
                runway_task_id,
                route_family=RouteFamily.REVERSE,
                poll_interval=0.1,
                timeout=1.2,
                not_found_grace=60,
            )
    [job] = emulator.jobs.values()
    polls = polls_of(emulator, job.runway_task_id)
    assert polls and all(poll["fault"] == "429" for poll in polls)
    first_poll = min(poll["time"] for poll in polls)
    assert max(poll["time"] for poll in polls) < first_poll + 1.2 + 0.5
