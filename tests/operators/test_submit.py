"""RunwaySubmitOperator: any CometAPI Runway create path by name, with the table's spend safety and waits."""

from __future__ import annotations

import json
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG
from airflow.sdk.execution_time.context import OutletEventAccessors

from runway_provider import refs
from runway_provider.exceptions import RunwayInputError, RunwayTaskTimeoutError
from runway_provider.models import RouteFamily
from runway_provider.operators.runway import RunwaySubmitOperator
from runway_provider.refs import XCOM_RUNWAY_TASK
from runway_provider.sensors.runway import RunwayTaskSensor
from runway_provider.spend import STATE_KEY, XCOM_RUNWAY_REQUEST
from runway_provider.testing import Scenario
from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator
from tests.helpers import MemoryTaskStateStore, RecordingTaskInstance, TaskDeferred, advance, job_options

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"
OFFICIAL_BODY = {"model": "gen4_turbo", "promptImage": IMAGE, "promptText": "A boat", "ratio": "1280:720"}
SLOW = Scenario(not_found_seconds=0, queued_seconds=0.2, running_seconds=60)


def new_try(store: MemoryTaskStateStore, *, try_number: int = 1, max_tries: int = 0) -> dict[str, Any]:
    return {
        "ti": RecordingTaskInstance(try_number=try_number, max_tries=max_tries),
        "task_state_store": store,
    }


def official(**kwargs: Any) -> RunwaySubmitOperator:
    return RunwaySubmitOperator(
        **{
            "task_id": "animate",
            "path": "/runwayml/v1/image_to_video",
            "body": OFFICIAL_BODY,
            "poll_interval": 0.1,
        }
        | kwargs
    )


def reverse(**kwargs: Any) -> RunwaySubmitOperator:
    body = {"prompt": "A paper boat", "image": IMAGE, "ratio": "1280:720", "model": "gen4"}
    return RunwaySubmitOperator(
        **{"task_id": "generate", "path": "/runway/pro/generate", "body": body, "poll_interval": 0.1} | kwargs
    )


def test_an_official_route_is_sent_as_given_and_waited_on(runway_conn, emulator):
    context = new_try(MemoryTaskStateStore())
    op = official(wait_for_completion=True)
    assert op.route_family is RouteFamily.OFFICIAL
    runway_task_id = op.execute(context)
    [job] = emulator.jobs.values()
    assert job.runway_task_id == runway_task_id and job.body == OFFICIAL_BODY
    assert [r["path"] for r in emulator.create_requests()] == ["/runwayml/v1/image_to_video"]
    assert context["ti"].xcom[XCOM_RUNWAY_TASK]["status"] == "SUCCEEDED"
    request = context["ti"].xcom[XCOM_RUNWAY_REQUEST]
    assert (request["route"], request["route_family"]) == ("/runwayml/v1/image_to_video", "official")


def test_a_reverse_route_gets_the_connections_webhook(runway_conn, emulator):
    op = reverse(wait_for_completion=True)
    assert op.route_family is RouteFamily.REVERSE
    op.execute(new_try(MemoryTaskStateStore()))
    [job] = emulator.jobs.values()
    assert job.body["callback_url"] == runway_conn["extra"]["callback_url"]
    assert job.body["prompt"] == "A paper boat"


def test_a_body_given_as_json_text_is_sent_as_the_object(runway_conn, emulator):
    official(body=json.dumps(OFFICIAL_BODY)).execute(new_try(MemoryTaskStateStore()))
    [job] = emulator.jobs.values()
    assert job.body == OFFICIAL_BODY


def test_a_retry_reconnects_instead_of_paying_again(runway_conn, emulator):
    store = MemoryTaskStateStore()
    slow = {**OFFICIAL_BODY, "seed": 7}
    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=2)
    with pytest.raises(RunwayTaskTimeoutError):
        official(body=slow, wait_for_completion=True, timeout=0.5).execute(new_try(store, max_tries=1))
    [first_id] = emulator.jobs
    assert store.values[STATE_KEY]["runway_task_id"] == first_id and emulator.cancels() == []
    advance(emulator, first_id, 1.2)  # the retry waits the end of the run, not all of it
    retry = official(body=slow, wait_for_completion=True, timeout=10)
    assert retry.execute(new_try(store, try_number=2, max_tries=1)) == first_id
    assert list(emulator.jobs) == [first_id] and len(emulator.create_requests()) == 1


def test_the_last_tries_timeout_cancels_an_official_task(runway_conn, emulator):
    emulator.scenario = SLOW
    with pytest.raises(RunwayTaskTimeoutError):
        official(wait_for_completion=True, timeout=0.5).execute(new_try(MemoryTaskStateStore()))
    [job] = emulator.jobs.values()
    assert [r["runway_task_id"] for r in emulator.cancels()] == [job.runway_task_id]
    assert job.cancelled_at is not None


def test_a_deferrable_wait_defers_on_the_official_family(runway_conn, emulator):
    emulator.scenario = SLOW
    with pytest.raises(TaskDeferred) as caught:
        official(wait_for_completion=True, deferrable=True).execute(new_try(MemoryTaskStateStore()))
    _, kwargs = caught.value.trigger.serialize()
    assert kwargs["route_family"] == "official" and kwargs["runway_task_id"] in emulator.jobs


def test_a_templated_path_keeps_the_family_of_its_prefix_and_is_checked_rendered(runway_conn, emulator):
    op = official(path="/runwayml/v1/{{ params.route }}")
    assert op.route_family is RouteFamily.OFFICIAL
    op.path = "/runwayml/v1/image_to_video"  # what Airflow renders it to
    op.execute(new_try(MemoryTaskStateStore()))
    assert op.route.path == "/runwayml/v1/image_to_video" and len(emulator.jobs) == 1
    op.path = "/runwayml/v1/../tasks/x"
    with pytest.raises(RunwayInputError, match="`path`"):
        op.build_payload()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/image_to_video",
        "runwayml/v1/image_to_video",
        "/runwayml/v1/",
        "/runway/feed",
        "/runwayml/v1/tasks/abc",
        "/runway/pro/generate?key=1",
        "/runway/pro/gen erate",
        "{{ params.path }}",
        None,
    ],
)
def test_a_path_that_is_no_create_route_is_refused_naming_the_field(path):
    with pytest.raises(RunwayInputError) as caught:
        official(path=path)
    assert "`path`" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [["a"], "not json", '["a"]', {}, {"seed": float("nan")}, {1: "x"}, None],
    ids=["list", "text", "json-list", "empty", "nan", "int-key", "none"],
)
def test_a_body_that_is_no_json_object_is_refused_before_sending(runway_conn, emulator, body):
    with pytest.raises(RunwayInputError) as caught:
        official(body=body).execute(new_try(MemoryTaskStateStore()))
    assert "`body`" in str(caught.value)
    assert emulator.requests == []


def test_a_sensor_and_a_transfer_downstream_need_no_route_family(runway_conn, emulator, tmp_path):
    with DAG("raw", start_date=pendulum.datetime(2026, 1, 1), schedule=None):
        animate = official(wait_for_completion=False)
        sense = RunwayTaskSensor(task_id="sense", runway_task_id=animate.output, poll_interval=0.1)
        store = RunwayToObjectStorageOperator(
            task_id="store", runway_task=sense.output, destination=f"file://{tmp_path}/"
        )
    # Known when the DAG is parsed, from the raw path's prefix; the argument itself stays unset.
    assert sense._upstream is not None and sense._upstream.family is RouteFamily.OFFICIAL
    assert sense.route_family is None
    animate_ti = RecordingTaskInstance()
    runway_task_id = animate.execute({"ti": animate_ti, "task_state_store": MemoryTaskStateStore()})
    sense_ti = RecordingTaskInstance()
    sense_ti.upstream = {("animate", key): value for key, value in animate_ti.xcom.items()}
    sense.runway_task_id = runway_task_id
    task = sense.execute({"ti": sense_ti})
    store_ti = RecordingTaskInstance()
    store_ti.upstream = {("sense", key): value for key, value in sense_ti.xcom.items()}
    store.runway_task = task
    result = store.execute({"ti": store_ti, "outlet_events": OutletEventAccessors()})
    assert result["uri"] == f"file://{tmp_path}/{runway_task_id}.mp4"
    record = json.loads((tmp_path / f"{runway_task_id}.mp4.runway.json").read_text())
    assert record["route"] == "/runwayml/v1/image_to_video" and record["route_family"] == "official"
    assert record["billed"]["model"] == "gen4_turbo"
    assert {r["path"] for r in emulator.requests if r["method"] == "GET"} == {
        f"/runwayml/v1/tasks/{runway_task_id}"
    }
    assert not any(r["path"] == "/runway/feed" for r in emulator.requests)


def test_reuse_from_sends_nothing_for_a_stored_request(runway_conn, emulator, tmp_path):
    with DAG("raw_reuse", start_date=pendulum.datetime(2026, 1, 1), schedule=None):
        generate = reverse(
            body={
                "prompt": "A boat",
                "image": IMAGE,
                "model": "gen4",
                "ratio": "1280:720",
                "options": job_options(running_seconds=0),
            },
            wait_for_completion=True,
            reuse_from=f"file://{tmp_path}/",
        )
        store = RunwayToObjectStorageOperator(
            task_id="store", runway_task=generate.output, destination=f"file://{tmp_path}/"
        )
    for _ in range(2):
        generate_ti = RecordingTaskInstance()
        runway_task_id = generate.execute({"ti": generate_ti, "task_state_store": MemoryTaskStateStore()})
        store_ti = RecordingTaskInstance()
        store_ti.upstream = {("generate", key): value for key, value in generate_ti.xcom.items()}
        store.runway_task = runway_task_id
        store.execute({"ti": store_ti, "outlet_events": OutletEventAccessors()})
    assert len(emulator.submissions()) == 1
    assert generate_ti.xcom[refs.XCOM_RUNWAY_REQUEST]["reused"] is not None
