"""What each failure of a create, a retry, a kill or a timeout costs, counted by the emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import json
import threading
import time
from typing import Any

import pytest

from runway_provider import routes, spend
from runway_provider.compat import AirflowFailException
from runway_provider.exceptions import (
    RunwayAlreadyGeneratedError,
    RunwayBalanceExhaustedError,
    RunwayConfigurationError,
    RunwayRequestRefusedError,
    RunwayStateNotSavedError,
    RunwaySubmissionUncertainError,
    RunwayTaskCancelledError,
    RunwayTaskFailedError,
    RunwayTaskTimeoutError,
    RunwayTransientError,
)
from runway_provider.models import RouteFamily
from runway_provider.operators.runway import RunwayGenerateOperator, RunwayImageToVideoOperator
from runway_provider.refs import XCOM_DEFERRED_TRY, TaskRef
from runway_provider.testing import Scenario
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import (
    TEST_API_KEY,
    MemoryTaskStateStore,
    RecordingTaskInstance,
    TaskDeferred,
    job_options,
    make_trigger,
    set_connection,
)

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"
SLOW = Scenario(not_found_seconds=0, queued_seconds=0.2, running_seconds=60)


def new_try(store: MemoryTaskStateStore, *, try_number: int = 1, max_tries: int = 0) -> dict[str, Any]:
    return {
        "ti": RecordingTaskInstance(try_number=try_number, max_tries=max_tries),
        "task_state_store": store,
    }


def generate(**kwargs: Any) -> RunwayGenerateOperator:
    return RunwayGenerateOperator(
        **{"task_id": "generate", "prompt": "A paper boat", "image": IMAGE, "poll_interval": 0.1, **kwargs}
    )


def image_to_video(**kwargs: Any) -> RunwayImageToVideoOperator:
    return RunwayImageToVideoOperator(
        **{
            "task_id": "animate",
            "prompt_image": IMAGE,
            "prompt_text": "waves",
            "poll_interval": 0.1,
            **kwargs,
        }
    )


def test_fingerprint_is_the_documented_canonical_form_so_stored_ones_keep_matching():
    """Markers and reuse records written by an earlier release are matched by this value: it must not
    drift. sha256 of the path, a newline and the compact, key-sorted JSON body, text kept as UTF-8."""
    payload = {
        "prompt": "Un bateau en papier — 紙の船",
        "options": {"seconds": 5, "motion_vector": {"x": 0.5}},
    }
    canonical = '{"options":{"motion_vector":{"x":0.5},"seconds":5},"prompt":"Un bateau en papier — 紙の船"}'
    expected = hashlib.sha256(f"/runway/pro/generate\n{canonical}".encode()).hexdigest()
    assert spend.request_fingerprint(routes.GENERATE, payload) == expected
    assert expected == "3c4c67d7d54d09b675fb547f3166af1e67e4affadbdc88cf1155d424ea71fd4b"


def test_fingerprint_ignores_key_order_and_tells_requests_apart():
    one = spend.request_fingerprint(routes.GENERATE, {"prompt": "a", "options": {"x": 1, "y": 2}})
    assert one == spend.request_fingerprint(routes.GENERATE, {"options": {"y": 2, "x": 1}, "prompt": "a"})
    assert one != spend.request_fingerprint(routes.GENERATE, {"prompt": "b", "options": {"x": 1, "y": 2}})
    assert one != spend.request_fingerprint(routes.ACT_ONE, {"prompt": "a", "options": {"x": 1, "y": 2}})
    assert len(one) == 64


def test_a_lost_answer_is_never_sent_again_by_any_later_try(runway_conn, emulator):
    store = MemoryTaskStateStore()
    op = generate(options=job_options(create_faults=["502_after_create"]))
    with pytest.raises(RunwaySubmissionUncertainError) as first:
        op.execute(new_try(store))
    assert isinstance(first.value, AirflowFailException)  # Airflow does not retry it
    message = str(first.value)
    fingerprint = spend.request_fingerprint(op.route, op.build_payload())
    assert first.value.route == "/runway/pro/generate" and first.value.fingerprint == fingerprint
    assert f"on /runway/pro/generate (request fingerprint {fingerprint[:12]}, sent 20" in message
    assert (
        " UTC) may have been processed without its answer reaching Airflow: The create request to " in message
    )
    assert "(RunwaySubmissionUncertainError: HTTP 502 after the request was sent: " in message
    assert "no idempotency key. A generation may exist and bill" in message  # one sentence ends once
    assert "is not sent again, by this try, by Airflow's retries or by a clear" in message
    assert "Look for it in your CometAPI dashboard: if it exists, collect it with RunwayTaskSensor" in message
    # How to pay for a new one deliberately: the exact REST call for this task instance.
    marker = "DELETE /api/v2/dags/videos/dagRuns/nightly/taskInstances/generate/state-store/runway_submission?map_index=-1"
    assert f"{marker} on Airflow's REST API) and clear the task, or change the request." in message
    # What an operator reads in the state store before deleting it: what was sent, where, and when.
    saved = dict(store.values[spend.STATE_KEY])
    assert time.time() - 60 < saved.pop("started_at") <= time.time()
    assert saved == {
        "phase": "submitting",
        "fingerprint": fingerprint,
        "route": "/runway/pro/generate",
        "route_family": "reverse",
    }

    for _ in range(2):  # a retry, then a clear: the same request is refused locally
        with pytest.raises(RunwaySubmissionUncertainError, match="never recorded an answer"):
            generate(options=job_options(create_faults=["502_after_create"])).execute(new_try(store))
    assert len(emulator.create_requests()) == 1 and len(emulator.jobs) == 1


def test_a_changed_request_after_a_lost_answer_is_submitted(runway_conn, emulator, capsys):
    store = MemoryTaskStateStore()
    with pytest.raises(RunwaySubmissionUncertainError):
        generate(options=job_options(create_faults=["reset_after_create"])).execute(new_try(store))
    runway_task_id = generate(prompt="A new prompt").execute(new_try(store))
    assert [job.body["prompt"] for job in emulator.jobs.values()] == ["A paper boat", "A new prompt"]
    assert list(emulator.jobs)[1] == runway_task_id
    assert "may have been billed" in capsys.readouterr().out


def test_a_refusal_fails_at_once_and_leaves_no_marker(runway_conn, emulator):
    store = MemoryTaskStateStore()
    with pytest.raises(RunwayRequestRefusedError, match="content policy") as caught:
        generate(options=job_options(create_faults=["refused"])).execute(new_try(store))
    assert isinstance(caught.value, AirflowFailException)
    assert store.values == {} and emulator.jobs == {}


class JournalingStore(MemoryTaskStateStore):
    """A state store that also keeps what was done to it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.journal: list[tuple[str, Any]] = []

    def set(self, key: str, value: Any) -> None:
        self.journal.append(("set", value["phase"]))
        super().set(key, value)

    def delete(self, key: str) -> None:
        self.journal.append(("delete", key))
        super().delete(key)


@pytest.mark.parametrize("operator", [generate, image_to_video], ids=["reverse", "official"])
def test_a_spent_balance_fails_at_once_and_a_topped_up_account_submits_again(runway_conn, emulator, operator):
    emulator.balance_spent = True
    store = JournalingStore()
    with pytest.raises(RunwayBalanceExhaustedError) as caught:
        operator().execute(new_try(store, max_tries=2))
    assert isinstance(caught.value, AirflowFailException)  # Airflow does not spend the two retries on it
    assert len(emulator.create_requests()) == 1 and emulator.jobs == {}
    assert caught.value.http_status == 403 and caught.value.code == "insufficient_user_quota"
    message = str(caught.value)
    assert "balance is spent" in message and "https://www.cometapi.com/" in message
    assert "nothing was billed" in message and TEST_API_KEY not in message
    # The marker went up before the POST and came down after the refusal: nothing blocks a later try.
    assert store.journal == [("set", spend.SUBMITTING), ("delete", spend.STATE_KEY)]
    emulator.balance_spent = False
    runway_task_id = operator().execute(new_try(store, try_number=2, max_tries=2))
    assert list(emulator.jobs) == [runway_task_id]
    assert len(emulator.create_requests()) == 2


def test_a_create_that_never_left_is_retryable_and_leaves_no_marker(monkeypatch, server, closed_port):
    set_connection(monkeypatch, server, password=TEST_API_KEY, host=f"http://127.0.0.1:{closed_port}")
    store = MemoryTaskStateStore()
    op = generate()
    op.hook.retry_policy = dataclasses.replace(op.hook.retry_policy, backoff=0.01, backoff_max=0.05)
    with pytest.raises(RunwayTransientError, match="Did not send") as caught:
        op.execute(new_try(store))
    assert not isinstance(caught.value, AirflowFailException)
    assert store.values == {}


def test_the_id_survives_a_store_that_fails_after_the_create(runway_conn, emulator):
    class FailingAfterMarker(MemoryTaskStateStore):
        def set(self, key: str, value: Any) -> None:
            if value.get("phase") == "submitted":
                raise ConnectionError("execution API unreachable")
            super().set(key, value)

    context = new_try(FailingAfterMarker())
    with pytest.raises(RunwayStateNotSavedError) as caught:
        generate().execute(context)
    [runway_task_id] = emulator.jobs
    assert isinstance(caught.value, AirflowFailException)
    assert str(caught.value) == (
        f"Runway task {runway_task_id} was created on /runway/pro/generate but saving its id for later "
        "tries failed (ConnectionError: execution API unreachable). Not retrying, since a retry would not "
        "know the id and would pay for a new generation. Collect this one with "
        f"RunwayTaskSensor(runway_task_id={runway_task_id!r}, route_family='reverse')."
    )
    assert caught.value.runway_task_id == runway_task_id
    assert context["ti"].xcom["runway_task_id"] == runway_task_id


def test_a_changed_request_cancels_the_earlier_running_official_task(runway_conn, emulator):
    emulator.scenario = SLOW
    store = MemoryTaskStateStore()
    with pytest.raises(RunwayTaskTimeoutError):
        image_to_video(wait_for_completion=True, timeout=0.5).execute(new_try(store, max_tries=1))
    [earlier] = emulator.jobs
    assert emulator.cancels() == []  # a retry follows: left running
    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0.2)
    new_id = image_to_video(prompt_text="a storm", wait_for_completion=True).execute(
        new_try(store, try_number=2, max_tries=1)
    )
    assert [r["runway_task_id"] for r in emulator.cancels()] == [earlier]
    assert list(emulator.jobs) == [earlier, new_id] and len(emulator.create_requests()) == 2


@pytest.mark.parametrize(
    ("max_tries", "cancel_on_timeout", "cancels"),
    [(0, True, 1), (1, True, 0), (0, False, 0)],
    ids=["last-try", "retry-follows", "cancel-off"],
)
def test_timeout_cancels_only_on_the_last_try(runway_conn, emulator, max_tries, cancel_on_timeout, cancels):
    emulator.scenario = SLOW
    op = image_to_video(wait_for_completion=True, timeout=0.5, cancel_on_timeout=cancel_on_timeout)
    with pytest.raises(RunwayTaskTimeoutError):
        op.execute(new_try(MemoryTaskStateStore(), max_tries=max_tries))
    assert len(emulator.cancels()) == cancels
    [job] = emulator.jobs.values()
    assert (job.cancelled_at is not None) == bool(cancels)


def test_reverse_tasks_are_never_sent_a_cancel(runway_conn, emulator, capsys):
    op = generate(wait_for_completion=True, timeout=0.5, options=job_options(running_seconds=60))
    with pytest.raises(RunwayTaskTimeoutError):
        op.execute(new_try(MemoryTaskStateStore()))
    assert emulator.cancels() == []
    assert "reverse-format tasks have no cancel route" in capsys.readouterr().out


def test_an_endpoint_without_cancel_is_logged_not_raised(runway_conn, emulator, capsys):
    emulator.scenario = SLOW
    emulator.cancel_supported = False
    op = image_to_video()
    runway_task_id = op.hook.submit_image_to_video(prompt_image=IMAGE)
    spend.cancel_if_unfinished(
        op.hook, TaskRef(runway_task_id, RouteFamily.OFFICIAL), reason="a test", log=op.log
    )
    assert len(emulator.cancels()) == 1  # asked once, answered 405
    assert "not supported by this endpoint" in capsys.readouterr().out


def test_killing_a_blocking_wait_cancels_its_task(runway_conn, emulator):
    emulator.scenario = SLOW
    op = image_to_video(wait_for_completion=True, timeout=60)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            op.execute(new_try(MemoryTaskStateStore()))
        except BaseException as err:
            outcome.append(err)

    waiter = threading.Thread(target=run)
    waiter.start()
    deadline = time.monotonic() + 30
    while not any(job.feed_requests for job in emulator.jobs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    op.on_kill()  # what Airflow calls when a user marks the running task failed
    waiter.join(30)
    assert len(emulator.cancels()) == 1
    assert [type(err) for err in outcome] == [RunwayTaskCancelledError]


def test_killing_without_cancel_on_kill_leaves_the_task(runway_conn, emulator):
    op = image_to_video(wait_for_completion=True, cancel_on_kill=False)
    op._waiting_on = TaskRef("some-task", RouteFamily.OFFICIAL)
    op.on_kill()
    assert emulator.cancels() == []


def answer_task_state(
    monkeypatch: pytest.MonkeyPatch, trigger: RunwayTaskTrigger, *, known: bool, state: str | None
) -> None:
    """What the Execution API answers the trigger about its task instance: what a real triggerer
    gives (tests/system covers that path)."""

    async def task_instance_state() -> tuple[bool, str | None]:
        return known, state

    monkeypatch.setattr(trigger, "_task_instance_state", task_instance_state)


def official_trigger(runway_task_id: str, **kwargs: Any) -> RunwayTaskTrigger:
    return make_trigger(runway_task_id, route_family="official", end_time=time.time() + 60, **kwargs)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("known", "state", "cancels"),
    [
        (True, "failed", 1),
        (True, None, 1),  # cleared
        (True, "deferred", 0),  # moved to another triggerer
        (True, "success", 0),  # marked successful: the user keeps it
        (False, None, 0),  # could not tell: keep it rather than make a retry pay again
    ],
    ids=["marked-failed", "cleared", "moved", "marked-success", "unknown"],
)
async def test_trigger_on_kill_cancels_only_a_task_a_user_stopped(
    runway_conn, emulator, monkeypatch, known, state, cancels
):
    emulator.scenario = SLOW
    runway_task_id = image_to_video().hook.submit_image_to_video(prompt_image=IMAGE)
    trigger = official_trigger(runway_task_id, cancel_on_kill=True)

    answer_task_state(monkeypatch, trigger, known=known, state=state)
    await trigger.on_kill()
    assert len(emulator.cancels()) == cancels


@pytest.mark.asyncio
async def test_trigger_without_cancel_on_kill_never_asks(runway_conn, emulator):
    await official_trigger("any", cancel_on_kill=False).on_kill()
    assert emulator.cancels() == []


@pytest.mark.asyncio
async def test_trigger_on_kill_cancels_even_when_airflow_cancels_on_kill_itself(
    runway_conn, emulator, monkeypatch
):
    # Airflow 3.3 re-sends a trigger's cancel while on_kill runs; a slow state query must survive it.
    emulator.scenario = SLOW
    runway_task_id = image_to_video().hook.submit_image_to_video(prompt_image=IMAGE)
    trigger = official_trigger(runway_task_id, cancel_on_kill=True)

    async def slow_state() -> tuple[bool, str | None]:
        await asyncio.sleep(0.5)
        return True, "failed"

    monkeypatch.setattr(trigger, "_task_instance_state", slow_state)
    on_kill = asyncio.ensure_future(trigger.on_kill())
    await asyncio.sleep(0.1)
    on_kill.cancel()
    deadline = time.monotonic() + 10
    while not emulator.cancels() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert on_kill.cancelled()
    assert [r["runway_task_id"] for r in emulator.cancels()] == [runway_task_id]


def test_a_later_try_of_a_lost_answer_names_when_it_was_sent_and_the_mapped_marker(runway_conn, emulator):
    """The refusal a user reads: when the lost request was sent (not when the later try ran) and the
    exact REST call that deletes this mapped task instance's marker."""
    store = MemoryTaskStateStore()

    def mapped_try(try_number: int) -> dict[str, Any]:
        ti = RecordingTaskInstance(try_number=try_number, max_tries=2, map_index=3)
        return {"ti": ti, "task_state_store": store}

    op = generate(options=job_options(create_faults=["502_after_create"]))
    sent_from = time.time()
    with pytest.raises(RunwaySubmissionUncertainError):
        op.execute(mapped_try(1))
    sent_until = time.time()
    while int(time.time()) <= int(sent_until):  # the retry comes in a later second than the send
        time.sleep(0.01)
    with pytest.raises(RunwaySubmissionUncertainError) as later:
        generate(options=job_options(create_faults=["502_after_create"])).execute(mapped_try(2))

    fingerprint = spend.request_fingerprint(op.route, op.build_payload())[:12]
    marker = (
        "/api/v2/dags/videos/dagRuns/nightly/taskInstances/generate/state-store/runway_submission?map_index=3"
    )
    expected = {
        f"The Runway create on /runway/pro/generate (request fingerprint {fingerprint}, sent {when}) may have "
        "been processed without its answer reaching Airflow: an earlier try sent this request and never "
        "recorded an answer. A generation may exist and bill, so this request is not sent again, by this "
        "try, by Airflow's retries or by a clear. Look for it in your CometAPI dashboard: if it exists, "
        "collect it with RunwayTaskSensor. To pay for a new generation deliberately, delete the marker "
        f"(DELETE {marker} on Airflow's REST API) and clear the task, or change the request."
        for when in (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(second))
            for second in range(int(sent_from), int(sent_until) + 1)
        )
    }
    assert str(later.value) in expected
    assert len(emulator.create_requests()) == 1


def test_a_changed_request_sends_no_cancel_for_an_earlier_task_that_already_ended(runway_conn, emulator):
    """Runway's DELETE also deletes a finished task: only a task still running is cancelled."""
    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0, outcome="failed")
    store = MemoryTaskStateStore()
    with pytest.raises(RunwayTaskFailedError):
        image_to_video(wait_for_completion=True).execute(new_try(store, max_tries=1))
    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    new_id = image_to_video(prompt_text="a storm", wait_for_completion=True).execute(
        new_try(store, try_number=2, max_tries=1)
    )
    assert emulator.cancels() == []
    assert len(emulator.jobs) == 2 and list(emulator.jobs)[1] == new_id


@pytest.mark.asyncio
async def test_a_trigger_killed_by_a_user_says_which_task_it_cancelled_and_why(
    runway_conn, emulator, monkeypatch, capsys
):
    emulator.scenario = SLOW
    runway_task_id = image_to_video().hook.submit_image_to_video(prompt_image=IMAGE)
    trigger = official_trigger(runway_task_id, cancel_on_kill=True)

    answer_task_state(monkeypatch, trigger, known=True, state="failed")
    await trigger.on_kill()
    assert [r["runway_task_id"] for r in emulator.cancels()] == [runway_task_id]
    assert (
        f"Cancelled Runway task {runway_task_id}: a user stopped its deferred Airflow task (now failed)."
        in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("last_status", "cancels"),
    [(None, 1), ("RUNNING", 1), ("SUCCEEDED", 0), ("FAILED", 0)],
    ids=["never-seen", "running", "succeeded", "failed"],
)
def test_a_timed_out_last_try_cancels_unless_its_task_had_already_ended(
    runway_conn, emulator, last_status, cancels
):
    """A task the wait never saw (it timed out before the first answer) may be running and billing,
    so it is cancelled like a running one; a task seen ended is left alone."""
    emulator.scenario = SLOW
    op = image_to_video()
    runway_task_id = op.hook.submit_image_to_video(prompt_image=IMAGE)
    spend.on_wait_timeout(
        op.hook,
        TaskRef(runway_task_id, RouteFamily.OFFICIAL),
        last_status=last_status,
        cancel_on_timeout=True,
        will_retry=False,
        log=op.log,
    )
    assert [c["runway_task_id"] for c in emulator.cancels()] == [runway_task_id] * cancels


def test_a_marker_that_lost_its_task_id_is_an_uncertain_create(runway_conn, emulator):
    """A marker past the create but without its id (written by hand, or half-restored) cannot say
    which generation was made: nothing is sent, and the error says when is unknown."""
    store = MemoryTaskStateStore()
    op = generate()
    fingerprint = spend.request_fingerprint(op.route, op.build_payload())
    store.set(spend.STATE_KEY, {"phase": "submitted", "fingerprint": fingerprint, "route_family": "reverse"})
    with pytest.raises(RunwaySubmissionUncertainError) as caught:
        op.execute(new_try(store))
    assert f"(request fingerprint {fingerprint[:12]}, sent unknown)" in str(caught.value)
    assert emulator.create_requests() == []


def test_a_marker_without_a_route_family_reconnects_through_the_feed(runway_conn, emulator):
    """Markers of an earlier provider carry no route family: theirs was the reverse feed."""
    store = MemoryTaskStateStore()
    options = job_options(not_found_seconds=0, queued_seconds=0.2, running_seconds=1)
    with pytest.raises(RunwayTaskTimeoutError):
        generate(wait_for_completion=True, timeout=0.3, options=options).execute(new_try(store, max_tries=1))
    del store.values[spend.STATE_KEY]["route_family"]
    task = generate(wait_for_completion=True, timeout=30, options=options).execute(
        new_try(store, try_number=2, max_tries=1)
    )
    [job] = emulator.jobs.values()
    assert task == job.runway_task_id and len(emulator.create_requests()) == 1


# -- issue: every DELETE by one rule, execution_timeout, markers, the kept record --------------------

QUICK = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0.2)


def succeeded_official_task(emulator: Any) -> tuple[RunwayImageToVideoOperator, str]:
    """An official-format task that has finished with a video (what Runway's DELETE would destroy)."""
    emulator.scenario = QUICK
    op = image_to_video(wait_for_completion=True)
    runway_task_id = op.execute(new_try(MemoryTaskStateStore()))
    return op, runway_task_id


def test_a_kill_right_after_success_sends_no_delete(runway_conn, emulator, capsys):
    """The worker's kill lands after the generation finished: a DELETE would delete the paid video."""
    op, runway_task_id = succeeded_official_task(emulator)
    op._waiting_on = TaskRef(
        runway_task_id, RouteFamily.OFFICIAL
    )  # the kill arrives while the wait has not yet left
    op.on_kill()
    assert emulator.cancels() == [] and emulator.deleted_results() == []
    assert op.hook.get_task(runway_task_id, RouteFamily.OFFICIAL).video_url  # the result is still there
    assert "it has already succeeded, and a DELETE would delete its output" in capsys.readouterr().out


@pytest.mark.asyncio
async def test_a_trigger_kill_right_after_success_sends_no_delete(runway_conn, emulator, monkeypatch):
    _, runway_task_id = succeeded_official_task(emulator)
    trigger = official_trigger(runway_task_id, cancel_on_kill=True)

    answer_task_state(monkeypatch, trigger, known=True, state="failed")
    await trigger.on_kill()
    assert emulator.cancels() == [] and emulator.deleted_results() == []


def test_a_timeout_of_a_task_never_seen_that_has_finished_sends_no_delete(runway_conn, emulator):
    """The wait timed out before it saw the task (last status unknown); it finished meanwhile."""
    op, runway_task_id = succeeded_official_task(emulator)
    spend.on_wait_timeout(
        op.hook,
        TaskRef(runway_task_id, RouteFamily.OFFICIAL),
        last_status=None,
        cancel_on_timeout=True,
        will_retry=False,
        log=op.log,
    )
    assert emulator.cancels() == [] and emulator.deleted_results() == []


def test_a_task_whose_read_fails_is_left_running_and_the_log_says_how_to_cancel_it(
    runway_conn, emulator, server, capsys
):
    emulator.scenario = dataclasses.replace(SLOW, feed_faults=["500"] * 20)
    op = image_to_video()
    runway_task_id = op.hook.submit_image_to_video(prompt_image=IMAGE)
    op.hook.retry_policy = dataclasses.replace(op.hook.retry_policy, backoff=0.01, backoff_max=0.02)
    spend.cancel_if_unfinished(
        op.hook, TaskRef(runway_task_id, RouteFamily.OFFICIAL), reason="a test", log=op.log
    )
    assert emulator.cancels() == []
    out = capsys.readouterr().out
    assert f"Not cancelling Runway task {runway_task_id} (a test): its state could not be read" in out
    assert (
        "To cancel it by hand, check in your CometAPI dashboard that it is still running, then send "
        f"DELETE {server.base_url}/runwayml/v1/tasks/{runway_task_id} with your CometAPI key." in out
    )
    assert TEST_API_KEY not in out


@pytest.mark.asyncio
async def test_a_trigger_kill_whose_read_fails_sends_no_delete(runway_conn, emulator, monkeypatch, capsys):
    emulator.scenario = dataclasses.replace(SLOW, feed_faults=["500"] * 20)
    runway_task_id = image_to_video().hook.submit_image_to_video(prompt_image=IMAGE)
    trigger = official_trigger(runway_task_id, cancel_on_kill=True)

    answer_task_state(monkeypatch, trigger, known=True, state="failed")
    await trigger.on_kill()
    assert emulator.cancels() == []
    assert "its state could not be read" in capsys.readouterr().out


@pytest.mark.usefixtures("quick_backoff")
def test_a_sensor_whose_reads_fail_until_its_timeout_deletes_nothing(runway_conn, emulator):
    """The review example's `fresh_draft_url`: an approved draft's reads answer 429 for the whole
    timeout. Before, the never-seen task was cancelled, which deleted the finished draft."""
    from runway_provider.compat import AirflowSensorTimeout
    from runway_provider.sensors.runway import RunwayTaskSensor

    _, runway_task_id = succeeded_official_task(emulator)
    emulator.jobs[runway_task_id].pending_faults = ["429"] * 50
    sensor = RunwayTaskSensor(
        task_id="fresh_draft_url", runway_task_id=runway_task_id, route_family="official", timeout=1
    )
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute({"ti": RecordingTaskInstance()})
    assert emulator.cancels() == [] and emulator.deleted_results() == []


def run_like_the_task_runner(op: Any, context: dict[str, Any]) -> Any:
    """What Airflow's task runner does with ``execution_timeout``: SIGALRM inside execute, then on_kill."""
    from runway_provider.compat import AirflowTaskTimeout
    from tests.helpers import timeout

    try:
        with timeout(op.execution_timeout.total_seconds()):
            return op.execute(context)
    except AirflowTaskTimeout:
        op.on_kill()
        raise


@pytest.mark.parametrize(("max_tries", "cancels"), [(0, 1), (1, 0)], ids=["last-try", "retry-follows"])
def test_execution_timeout_of_a_blocking_wait_cancels_on_the_last_try(
    runway_conn, emulator, max_tries, cancels
):
    from runway_provider.compat import AirflowTaskTimeout

    emulator.scenario = SLOW
    # Long enough that the create itself is not what times out on a loaded machine.
    op = image_to_video(wait_for_completion=True, execution_timeout=datetime.timedelta(seconds=3))
    with pytest.raises(AirflowTaskTimeout):
        run_like_the_task_runner(op, new_try(MemoryTaskStateStore(), max_tries=max_tries))
    [job] = emulator.jobs.values()
    assert [c["runway_task_id"] for c in emulator.cancels()] == [job.runway_task_id] * cancels
    assert (job.cancelled_at is not None) == bool(cancels)


def test_execution_timeout_of_a_blocking_sensor_cancels_on_the_last_try(runway_conn, emulator):
    from runway_provider.compat import AirflowTaskTimeout
    from runway_provider.sensors.runway import RunwayTaskSensor

    emulator.scenario = SLOW
    runway_task_id = image_to_video().hook.submit_image_to_video(prompt_image=IMAGE)
    sensor = RunwayTaskSensor(
        task_id="wait",
        runway_task_id=runway_task_id,
        route_family="official",
        poll_interval=0.1,
        execution_timeout=datetime.timedelta(seconds=1),
    )
    with pytest.raises(AirflowTaskTimeout):
        run_like_the_task_runner(sensor, {"ti": RecordingTaskInstance()})
    assert [c["runway_task_id"] for c in emulator.cancels()] == [runway_task_id]


@pytest.mark.parametrize(("max_tries", "cancels"), [(0, 1), (1, 0)], ids=["last-try", "retry-follows"])
def test_execution_timeout_of_a_deferred_wait_cancels_on_the_last_try(
    runway_conn, emulator, max_tries, cancels
):
    """Airflow 3 does not apply execution_timeout to a deferral: the trigger's own deadline carries it,
    so its timeout event comes back to execute_complete, which settles the generation."""
    from tests.helpers import TaskDeferred

    emulator.scenario = SLOW
    op = image_to_video(
        wait_for_completion=True,
        deferrable=True,
        timeout=600,
        # Two seconds: a loaded machine can take more than one to submit and read the task, and the
        # try then times out on the worker before it defers.
        execution_timeout=datetime.timedelta(seconds=2),
    )
    context = new_try(MemoryTaskStateStore(), max_tries=max_tries)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    # execute's start plus execution_timeout, not the 600 s of `timeout`.
    assert before + 2 <= trigger.end_time <= time.time() + 2
    event = asyncio.run(anext_event(trigger))
    assert event["status"] == "timeout"
    with pytest.raises(RunwayTaskTimeoutError):
        op.execute_complete(context, event)
    [job] = emulator.jobs.values()
    assert [c["runway_task_id"] for c in emulator.cancels()] == [job.runway_task_id] * cancels


async def anext_event(trigger: RunwayTaskTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger yielded no event")


def test_a_retry_resumed_with_an_earlier_trys_event_reconnects_instead_of_failing(runway_conn, emulator):
    """Airflow 3.0 keeps next_method across retries: the retry is resumed with the first try's timeout
    event (and its XCom). It starts afresh, reconnects and waits again; the first try's own resume fails."""
    emulator.scenario = SLOW
    store = MemoryTaskStateStore()
    op = image_to_video(wait_for_completion=True, deferrable=True, timeout=1)
    first = new_try(store, max_tries=1)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(first)
    event = asyncio.run(anext_event(deferred.value.trigger))
    assert event["status"] == "timeout"
    with pytest.raises(RunwayTaskTimeoutError):  # the try that deferred gets its own event
        op.resume_execution("execute_complete", {"event": event}, first)
    retry = new_try(store, try_number=2, max_tries=1)
    # Airflow 3.0 keeps the XCom of the try that deferred, too.
    retry["ti"].upstream[(retry["ti"].task_id, XCOM_DEFERRED_TRY)] = first["ti"].xcom[XCOM_DEFERRED_TRY]
    with pytest.raises(TaskDeferred) as again:
        op.resume_execution("execute_complete", {"event": event}, retry)
    [job] = emulator.jobs.values()
    assert again.value.trigger.runway_task_id == job.runway_task_id
    assert len(emulator.create_requests()) == 1 and emulator.cancels() == []
    assert retry["ti"].xcom[XCOM_DEFERRED_TRY] == 2


@pytest.mark.parametrize(("scenario", "cancels"), [(SLOW, 1), (QUICK, 0)], ids=["running", "succeeded"])
def test_airflows_own_trigger_timeout_settles_the_generation_too(runway_conn, emulator, scenario, cancels):
    """Airflow's backstop (the triggerer never answered) fails the task without execute_complete."""
    from airflow.sdk.bases.operator import TriggerFailureReason

    from runway_provider.compat import TaskDeferralTimeout

    emulator.scenario = scenario
    op = image_to_video()
    runway_task_id = op.hook.submit_image_to_video(prompt_image=IMAGE)
    time.sleep(0.5)
    ti = RecordingTaskInstance()
    ti.task_id = "animate"
    # What the operator pushed before it deferred.
    ti.upstream[("animate", "runway_task")] = {
        "runway_task_id": runway_task_id,
        "status": "UNKNOWN",
        "route_family": "official",
    }
    with pytest.raises(TaskDeferralTimeout):
        op.resume_execution("__fail__", {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, {"ti": ti})
    assert [c["runway_task_id"] for c in emulator.cancels()] == [runway_task_id] * cancels
    assert emulator.deleted_results() == []


def test_a_missing_connection_on_an_official_route_leaves_no_marker(monkeypatch, runway_conn, emulator):
    from tests.helpers import AirflowNotFoundException

    store = MemoryTaskStateStore()
    monkeypatch.delenv("AIRFLOW_CONN_RUNWAY_DEFAULT")
    with pytest.raises(AirflowNotFoundException):
        image_to_video().execute(new_try(store, max_tries=1))
    assert store.values == {} and emulator.requests == []
    monkeypatch.setenv("AIRFLOW_CONN_RUNWAY_DEFAULT", json.dumps(runway_conn))
    image_to_video().execute(new_try(store, try_number=2, max_tries=1))  # the retry is not "uncertain"
    assert len(emulator.create_requests()) == 1


def test_a_secrets_backend_outage_leaves_no_marker(monkeypatch, runway_conn, emulator):
    from runway_provider.hooks.runway import RunwayHook

    read_connection = RunwayHook.get_connection
    outage = [True]

    def secrets_backend(conn_id: str) -> Any:
        if outage[0]:  # what a secrets backend that cannot be reached raises
            raise ConnectionError("secrets backend unreachable")
        return read_connection(conn_id)

    store = MemoryTaskStateStore()
    monkeypatch.setattr(RunwayHook, "get_connection", staticmethod(secrets_backend))
    with pytest.raises(ConnectionError):
        image_to_video().execute(new_try(store, max_tries=1))
    assert store.values == {} and emulator.requests == []
    outage[0] = False
    image_to_video().execute(new_try(store, try_number=2, max_tries=1))  # the retry is not "uncertain"
    assert len(emulator.create_requests()) == 1


@pytest.mark.parametrize("route", ["official", "reverse"])
def test_a_key_http_headers_cannot_carry_is_refused_when_the_connection_is_read(
    monkeypatch, server, emulator, route
):
    bad_key = "sk-test’4f9c2e71"  # a typographic apostrophe pasted into the key
    set_connection(monkeypatch, server, password=bad_key)
    store = MemoryTaskStateStore()
    op = image_to_video() if route == "official" else generate()
    with pytest.raises(RunwayConfigurationError) as caught:
        op.execute(new_try(store, max_tries=1))
    message = str(caught.value)
    assert message == (
        "Connection 'runway_default': the API key in the password field holds a character HTTP headers "
        "cannot carry (a non-ASCII character at position 8 of 16, such as a typographic quote); paste "
        "the key again."
    )
    assert bad_key not in message and isinstance(caught.value, AirflowFailException)
    assert store.values == {} and emulator.requests == []
    set_connection(monkeypatch, server, password=TEST_API_KEY)
    (image_to_video() if route == "official" else generate()).execute(
        new_try(store, try_number=2, max_tries=1)
    )
    assert len(emulator.create_requests()) == 1  # the next try sends, and is not an "uncertain create"


def test_a_runway_version_http_headers_cannot_carry_is_refused_when_the_connection_is_read(
    monkeypatch, server
):
    set_connection(monkeypatch, server, password=TEST_API_KEY, extra={"runway_version": "2024‑11‑06"})
    with pytest.raises(RunwayConfigurationError, match="extra `runway_version` must be a date such as"):
        image_to_video().execute(new_try(MemoryTaskStateStore()))


def test_a_create_that_fails_while_being_encoded_is_not_sent_and_not_uncertain(server, emulator):
    """The transport's own guarantee, below the connection checks: an encoding failure sends nothing."""
    from runway_provider.hooks import _http
    from runway_provider.hooks.runway import RunwayConnectionSettings

    settings = RunwayConnectionSettings(
        base_url=server.base_url, api_key="sk’", runway_version="2024-11-06", callback_url=None, timeout=5
    )
    session = _http.new_session(settings, _http.RetryPolicy(3, 3, 0.01, 0.02))
    with session, pytest.raises(RunwayConfigurationError, match="Did not send the request to CometAPI at "):
        _http.send_create(session, settings, "/runwayml/v1/image_to_video", {"model": "x"})
    assert emulator.requests == []


def test_a_retry_after_a_success_reconnects_instead_of_paying_again(runway_conn, emulator):
    """The worker died after execute returned, or the return value's XCom push failed: the record,
    kept and marked done, makes the next try (or a clear) reconnect."""
    emulator.scenario = QUICK
    store = MemoryTaskStateStore()
    first = image_to_video(wait_for_completion=True).execute(new_try(store, max_tries=2))
    assert store.values[spend.STATE_KEY]["phase"] == "done"
    for try_number in (2, 3):  # a retry, then a clear of the succeeded task
        context = new_try(store, try_number=try_number, max_tries=2)
        assert image_to_video(wait_for_completion=True).execute(context) == first
        assert context["ti"].xcom["runway_task"]["status"] == "SUCCEEDED"
    assert len(emulator.create_requests()) == 1


def test_a_done_request_the_service_no_longer_has_is_not_paid_again(runway_conn, emulator):
    emulator.scenario = QUICK
    store = MemoryTaskStateStore()
    runway_task_id = image_to_video(wait_for_completion=True).execute(new_try(store))
    emulator.jobs.clear()  # the service forgot it (expired, or deleted by hand)
    with pytest.raises(RunwayAlreadyGeneratedError) as caught:
        image_to_video(wait_for_completion=True).execute(new_try(store, try_number=2))
    assert isinstance(caught.value, AirflowFailException) and caught.value.runway_task_id == runway_task_id
    message = str(caught.value)
    assert f"Runway task {runway_task_id} was generated for this very request" in message
    assert "For a new take, change the request (a new seed) or delete this task's record (DELETE " in message
    assert len(emulator.create_requests()) == 1
    # A deliberate new take: another seed is another request, submitted (and paid) once.
    image_to_video(wait_for_completion=True, seed=7).execute(new_try(store, try_number=3))
    assert len(emulator.create_requests()) == 2
