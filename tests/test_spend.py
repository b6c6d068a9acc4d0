"""What each failure of a create, a retry, a kill or a timeout costs, counted by the emulator."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import time
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from runway_provider import routes, spend
from runway_provider.exceptions import (
    RunwayBalanceExhaustedError,
    RunwayRequestRefusedError,
    RunwayStateNotSavedError,
    RunwaySubmissionUncertainError,
    RunwayTaskCancelledError,
    RunwayTaskFailedError,
    RunwayTaskTimeoutError,
    RunwayTransientError,
)
from runway_provider.operators.runway import RunwayGenerateOperator, RunwayImageToVideoOperator
from runway_provider.testing import Scenario
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import (
    TEST_API_KEY,
    MemoryTaskStateStore,
    RecordingTaskInstance,
    job_options,
    make_trigger,
    set_connection,
)

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
    op = image_to_video()
    spend.cancel_abandoned(op.hook, "not-an-official-task", "official", reason="a test", log=op.log)
    assert len(emulator.cancels()) == 1  # asked once, answered 404
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
    op._waiting_on = "some-task"
    op.on_kill()
    assert emulator.cancels() == []


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

    async def task_instance_state() -> tuple[bool, str | None]:
        return known, state

    # The Execution API answer is what a real triggerer gives (tests/system covers that path).
    monkeypatch.setattr(trigger, "_task_instance_state", task_instance_state)
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

    async def marked_failed() -> tuple[bool, str | None]:
        return True, "failed"

    monkeypatch.setattr(trigger, "_task_instance_state", marked_failed)
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
        runway_task_id=runway_task_id,
        last_status=last_status,
        route_family="official",
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
