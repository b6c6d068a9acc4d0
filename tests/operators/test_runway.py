from __future__ import annotations

import time
from typing import Any

import pytest
from airflow.sdk import DAG

from runway_provider import pacing
from runway_provider.exceptions import (
    RunwayError,
    RunwayInputError,
    RunwayTaskFailedError,
    RunwayTaskTimeoutError,
)
from runway_provider.models import RouteFamily
from runway_provider.operators.runway import (
    XCOM_RUNWAY_TASK,
    XCOM_RUNWAY_TASK_ID,
    XCOM_SUBMITTED_AT,
    RunwayGenerateOperator,
)
from runway_provider.pacing import PollSchedule
from runway_provider.refs import TaskRef, Upstream
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import TEST_API_KEY, TaskDeferred, job_options, set_connection

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="


def operator(**kwargs: Any) -> RunwayGenerateOperator:
    defaults: dict[str, Any] = {
        "task_id": "generate",
        "prompt": "A paper boat gently rocks on calm water.",
        "image": IMAGE,
        "poll_interval": 0.1,
        "not_found_grace": 5,
    }
    return RunwayGenerateOperator(**{**defaults, **kwargs})


def test_submits_pushes_and_returns_the_task_id(runway_conn, emulator, context):
    runway_task_id = operator().execute(context)
    assert list(emulator.jobs) == [runway_task_id]
    assert context["ti"].xcom[XCOM_RUNWAY_TASK_ID] == runway_task_id
    assert time.time() - 30 < context["ti"].xcom[XCOM_SUBMITTED_AT] <= time.time()


def test_accepts_data_uris_and_optional_fields(runway_conn, emulator, context):
    operator(
        image=DATA_URI, last_image=DATA_URI, style="cinematic", options='{"seconds": 5}', ratio="720:1280"
    ).execute(context)
    [job] = emulator.jobs.values()
    assert job.body["image"] == DATA_URI and job.body["last_image"] == DATA_URI
    assert job.body["options"] == {"seconds": 5} and job.body["ratio"] == "720:1280"


BAD_INPUTS = [
    pytest.param({"prompt": "   "}, "prompt", "blank", id="blank-prompt"),
    pytest.param({"prompt": "x" * 1001}, "prompt", "1001 characters", id="long-prompt"),
    pytest.param({"prompt": None}, "prompt", "string", id="no-prompt"),
    pytest.param({"image": "ftp://example.com/a.jpg"}, "image", "http", id="ftp-image"),
    pytest.param({"image": "example.com/a.jpg"}, "image", "http", id="relative-image"),
    pytest.param({"image": "data:image/png;base64"}, "image", "data: URI", id="empty-data-uri"),
    pytest.param({"image": ""}, "options.seconds", "without an image", id="empty-image-is-text-only"),
    pytest.param({"last_image": "not a url"}, "last_image", "http", id="bad-last-image"),
    pytest.param({"ratio": "16x9"}, "ratio", "W:H", id="ratio-x"),
    pytest.param({"ratio": "0:720"}, "ratio", "positive", id="ratio-zero"),
    pytest.param({"ratio": "-1280:720"}, "ratio", "W:H", id="ratio-negative"),
    pytest.param({"model": " "}, "model", "non-blank", id="blank-model"),
    pytest.param({"callback_url": "hooks.example/cb"}, "callback_url", "http", id="bad-callback"),
    pytest.param({"options": "[1, 2]"}, "options", "JSON object", id="options-list"),
    pytest.param({"options": "{oops"}, "options", "JSON object", id="options-garbled"),
    pytest.param({"options": {"when": object()}}, "options", "JSON-serializable", id="options-object"),
    pytest.param({"style": 42}, "style", "non-blank string", id="style-number"),
]


@pytest.mark.parametrize(("kwargs", "field", "problem"), BAD_INPUTS)
def test_bad_input_fails_before_any_request(runway_conn, emulator, context, kwargs, field, problem):
    with pytest.raises(RunwayInputError, match=problem) as caught:
        operator(**kwargs).execute(context)
    assert caught.value.field == field
    assert f"`{field}`" in str(caught.value)
    assert emulator.requests == []
    assert context["ti"].xcom == {}


def test_missing_callback_everywhere_fails_before_any_request(monkeypatch, server, emulator, context):
    set_connection(monkeypatch, server, password=TEST_API_KEY, extra={"callback_url": None})
    with pytest.raises(RunwayInputError, match="callback_url"):
        operator().execute(context)
    assert emulator.requests == []


def test_long_data_uri_is_not_echoed(runway_conn, emulator, context):
    with pytest.raises(RunwayInputError) as caught:
        operator(image="data:image/png;base64," + "A" * 10_000 + " spaces ").execute(context)
    assert len(str(caught.value)) < 300


def test_deferrable_wait_defers_with_a_wall_clock_deadline(runway_conn, context):
    op = operator(wait_for_completion=True, deferrable=True, timeout=600, not_found_grace=120)
    before = time.time()
    with pytest.raises(TaskDeferred) as caught:
        op.execute(context)
    trigger = caught.value.trigger
    assert isinstance(trigger, RunwayTaskTrigger)
    assert caught.value.method_name == "execute_complete"
    runway_task_id = context["ti"].xcom[XCOM_RUNWAY_TASK_ID]
    _, kwargs = trigger.serialize()
    assert kwargs["runway_task_id"] == runway_task_id
    assert kwargs["runway_conn_id"] == "runway_default"
    assert kwargs["poll_interval"] == 0.1 and kwargs["not_found_grace"] == 120
    assert before <= kwargs["submitted_at"] <= time.time()
    assert kwargs["end_time"] == pytest.approx(kwargs["submitted_at"] + 600)
    assert caught.value.timeout.total_seconds() > 600  # Airflow's timeout is only a backstop


def test_deferrable_wait_finishes_without_deferring_when_already_done(runway_conn, context):
    fast = job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    runway_task_id = operator(wait_for_completion=True, deferrable=True, options=fast).execute(context)
    assert context["ti"].xcom[XCOM_RUNWAY_TASK]["video_url"].endswith(f"{runway_task_id}.mp4")


def test_deferrable_wait_raises_when_already_failed(runway_conn, context):
    failed = job_options(outcome="failed", not_found_seconds=0, queued_seconds=0, running_seconds=0)
    with pytest.raises(RunwayTaskFailedError):
        operator(wait_for_completion=True, deferrable=True, options=failed).execute(context)
    assert XCOM_RUNWAY_TASK_ID in context["ti"].xcom  # the id is never lost


def test_blocking_wait_polls_to_the_video(runway_conn, context):
    runway_task_id = operator(wait_for_completion=True, deferrable=False).execute(context)
    task = context["ti"].xcom[XCOM_RUNWAY_TASK]
    assert task["runway_task_id"] == runway_task_id and task["status"] == "SUCCEEDED"
    assert "raw" in task and TEST_API_KEY not in str(task)


def test_blocking_wait_times_out_from_submission(runway_conn, context):
    with pytest.raises(RunwayTaskTimeoutError):
        operator(
            wait_for_completion=True, deferrable=False, timeout=1, options=job_options(running_seconds=60)
        ).execute(context)


def success_event(runway_task_id: str = "t-1") -> dict[str, Any]:
    return {
        "status": "success",
        "runway_task_id": runway_task_id,
        "task": {
            "runway_task_id": runway_task_id,
            "status": "SUCCEEDED",
            "output_urls": ["https://cdn/v.mp4"],
            "route_family": "reverse",
        },
        "message": "done",
    }


def test_execute_complete_on_success(context):
    assert operator().execute_complete(context, success_event()) == "t-1"
    assert context["ti"].xcom[XCOM_RUNWAY_TASK]["video_url"] == "https://cdn/v.mp4"


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {**success_event(), "status": "cancelled"},
        {**success_event(), "status": "SUCCESS"},
        {**success_event(), "status": "failed"},
        {**success_event(), "status": "timeout"},
        {**success_event(), "status": "error"},
        {**success_event(), "task": None},
        {key: value for key, value in success_event().items() if key != "message"},
    ],
    ids=["none", "empty", "cancelled", "SUCCESS", "failed", "timeout", "error", "no-task", "no-message"],
)
def test_execute_complete_allow_lists_success(context, event):
    with pytest.raises(RunwayError):
        operator().execute_complete(context, event)
    assert XCOM_RUNWAY_TASK not in context["ti"].xcom


def test_template_fields_cover_every_request_argument():
    assert set(RunwayGenerateOperator.template_fields) == {
        "reuse_from",
        "prompt",
        "image",
        "ratio",
        "model",
        "callback_url",
        "style",
        "options",
        "last_image",
    }


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        RunwayGenerateOperator("generate", "prompt", IMAGE)  # type: ignore[misc]


# -- a video from the prompt alone -----------------------------------------------------------

MOTION = {"x": 0, "y": 0.4, "z": 0, "r": -6, "bg_x_pan": 0, "bg_y_pan": 0}


def test_a_video_from_the_prompt_alone(runway_conn, emulator, context):
    op = RunwayGenerateOperator(
        task_id="generate", prompt="A lighthouse at dusk", options={"seconds": 5, "motion_vector": MOTION}
    )
    runway_task_id = op.execute(context)
    body = emulator.jobs[runway_task_id].body
    assert "image" not in body and body["options"] == {"seconds": 5, "motion_vector": MOTION}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (None, "options.seconds"),
        ({"motion_vector": MOTION}, "options.seconds"),
        ({"seconds": 0, "motion_vector": MOTION}, "options.seconds"),
        ({"seconds": 5}, "options.motion_vector"),
        ({"seconds": 5, "motion_vector": {**MOTION, "z": "fast"}}, "options.motion_vector.z"),
    ],
)
def test_a_video_from_the_prompt_alone_is_checked_before_sending(
    runway_conn, emulator, context, options, field
):
    with pytest.raises(RunwayInputError) as caught:
        RunwayGenerateOperator(task_id="generate", prompt="A lighthouse", options=options).execute(context)
    assert caught.value.field == field
    assert emulator.requests == []


def test_the_emulator_refuses_a_text_only_create_without_its_options(server):
    import requests

    answer = requests.post(
        f"{server.base_url}/runway/pro/generate",
        json={"prompt": "p", "model": "gen4", "ratio": "16:9", "callback_url": "https://hooks.example/cb"},
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 400 and "options.seconds" in answer.text


# -- the polling schedule: one for the blocking wait, the trigger and the sensor ------------------


def test_an_adaptive_wait_defers_a_trigger_that_carries_its_schedule(runway_conn, context):
    op = operator(
        wait_for_completion=True,
        deferrable=True,
        poll_interval=None,
        min_poll_interval=2,
        max_poll_interval=30,
        options=job_options(running_seconds=60),
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, RunwayTaskTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["poll_interval"] is None
    assert kwargs["poll_schedule"] == {"min_interval": 2.0, "max_interval": 30.0}
    assert RunwayTaskTrigger(**kwargs).schedule == op.poll_schedule
    # A set poll_interval stays a fixed schedule: its trigger serializes as before pacing.
    fixed = operator(wait_for_completion=True, deferrable=True, options=job_options(running_seconds=60))
    with pytest.raises(TaskDeferred) as deferred:
        fixed.execute(context)
    assert deferred.value.trigger.serialize()[1]["poll_interval"] == 0.1
    assert "poll_schedule" not in deferred.value.trigger.serialize()[1]


def test_without_poll_interval_every_wait_is_adaptive_and_paced_for_its_route(runway_conn, emulator, context):
    from runway_provider.operators.runway import RunwayTextToImageOperator
    from runway_provider.sensors.runway import RunwayTaskSensor
    from runway_provider.testing import Scenario

    emulator.scenario = Scenario(running_seconds=60)

    video = RunwayGenerateOperator(task_id="v", prompt="A boat", image=IMAGE)
    image = RunwayTextToImageOperator(
        task_id="i", prompt_text="@harbour", reference_images=[{"uri": IMAGE, "tag": "harbour"}]
    )
    assert video.poll_schedule == PollSchedule() and video.poll_interval is None
    assert image.poll_schedule == PollSchedule.from_options(output="image")
    # A number keeps the fixed schedule, on any route.
    fixed = RunwayTextToImageOperator(
        task_id="f", prompt_text="x", reference_images=[{"uri": IMAGE, "tag": "harbour"}], poll_interval=10
    )
    assert fixed.poll_schedule == PollSchedule.fixed(10)
    # The sensor: told, or learned from the operator whose output it waits on, else a video.
    assert RunwayTaskSensor(task_id="s", runway_task_id="t").poll_schedule == PollSchedule()
    told = RunwayTaskSensor(task_id="s2", runway_task_id="t", output_kind="image")
    assert told.poll_schedule == image.poll_schedule
    with DAG("pacing", schedule=None):
        upstream = RunwayTextToImageOperator(
            task_id="frame", prompt_text="x", reference_images=[{"uri": IMAGE, "tag": "harbour"}]
        )
        learned = RunwayTaskSensor(task_id="s3", runway_task_id=upstream.output)
    assert learned.poll_schedule == image.poll_schedule
    assert RunwayTaskSensor(
        task_id="s4", runway_task_id="t", poll_interval=7
    ).poll_schedule == PollSchedule.fixed(7)
    # Deferred, the image schedule is what the trigger carries.
    op = RunwayTextToImageOperator(
        task_id="d",
        prompt_text="@harbour",
        reference_images=[{"uri": IMAGE, "tag": "harbour"}],
        wait_for_completion=True,
        deferrable=True,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["poll_interval"] is None and kwargs["poll_schedule"] == pacing.IMAGE_PACES


def test_the_sensor_learns_an_image_route_from_the_request_upstream(runway_conn, context):
    from runway_provider.sensors.runway import RunwayTaskSensor

    sensor = RunwayTaskSensor(task_id="s", runway_task_id="{{ ti.xcom_pull('frame') }}", deferrable=True)
    sensor._upstream = Upstream("frame", False)
    context["ti"].upstream[("frame", "runway_request")] = {
        "route": "/runwayml/v1/text_to_image",
        "route_family": "official",
    }
    sensor.runway_task_id = "t-1"  # rendered
    ref, _ = sensor._resolve(context)
    assert ref == TaskRef("t-1", RouteFamily.OFFICIAL)
    assert sensor.poll_schedule == PollSchedule.from_options(output="image")
    context["ti"].upstream[("frame", "runway_request")] = {"route": "/runway/pro/generate"}
    sensor._resolve(context)
    assert sensor.poll_schedule == PollSchedule()


def test_an_adaptive_blocking_wait_follows_the_pacer(runway_conn, emulator, context):
    op = operator(wait_for_completion=True, poll_interval=None, min_poll_interval=0.2, max_poll_interval=0.5)
    assert op.execute(context) == next(iter(emulator.jobs))
    watch = op.watch(TaskRef("t", RouteFamily.REVERSE), submitted_at=time.time(), end_time=time.time() + 60)
    assert watch.pacer.schedule.fixed_interval is None and 0.2 <= watch.next_delay() <= 0.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": None, "min_poll_interval": -1}, "min_poll_interval"),
        ({"poll_interval": None, "min_poll_interval": 90}, "min_poll_interval"),
        ({"poll_interval": None, "max_poll_interval": 2}, "max_poll_interval"),
    ],
)
def test_schedule_options_are_checked_when_the_dag_is_parsed(kwargs, field):
    with pytest.raises(RunwayInputError, match=f"`{field}`"):
        operator(**kwargs)


def test_the_sensor_paces_its_pokes_with_the_same_schedule(runway_conn):
    from airflow.sdk import BaseSensorOperator

    from runway_provider.sensors.runway import RunwayTaskSensor

    sensor = RunwayTaskSensor(
        task_id="wait", runway_task_id="t", poll_interval=None, max_poll_interval=20, mode="reschedule"
    )
    assert sensor.poke_interval == 10.0  # Airflow's own pace before the first check: the fallback
    sensor._watch = sensor.watch(
        TaskRef("t", RouteFamily.REVERSE), submitted_at=time.time(), end_time=time.time() + 600
    )
    delays = {sensor._get_next_poke_interval(time.time(), lambda: 0.0, 1) for _ in range(20)}
    assert all(4 <= delay <= 20 for delay in delays) and len(delays) > 1  # adaptive, bounded, jittered
    backoff = RunwayTaskSensor(task_id="b", runway_task_id="t", poll_interval=3, exponential_backoff=True)
    backoff._watch = sensor._watch
    airflow_rule = BaseSensorOperator._get_next_poke_interval(backoff, 0.0, lambda: 0.0, 1)
    assert backoff._get_next_poke_interval(0.0, lambda: 0.0, 1) == airflow_rule  # Airflow's backoff rules
