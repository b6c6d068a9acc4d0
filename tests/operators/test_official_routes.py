"""The other Runway jobs: official-format routes (/runwayml/v1) and the reverse video2video/act_one."""

from __future__ import annotations

from typing import Any

import pytest

from runway_provider.compat import AirflowFailException
from runway_provider.exceptions import (
    RunwayBadOutputError,
    RunwayContentRejectedError,
    RunwayInputError,
    RunwayInputPreprocessingError,
    RunwayTaskFailedError,
)
from runway_provider.hooks.runway import RunwayHook
from runway_provider.operators.runway import (
    XCOM_RUNWAY_TASK,
    RunwayActOneOperator,
    RunwayCharacterPerformanceOperator,
    RunwayImageToVideoOperator,
    RunwayReverseVideoToVideoOperator,
    RunwayUpscaleVideoOperator,
    RunwayVideoToVideoOperator,
)
from runway_provider.sensors.runway import RunwayTaskSensor
from runway_provider.testing import Scenario
from tests.helpers import MemoryTaskStateStore, RecordingTaskInstance, TaskDeferred, job_options

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"
LAST = "https://example.com/last.jpg"
VIDEO = "https://example.com/clip.mp4"
FAST = Scenario(not_found_seconds=0.2, queued_seconds=0.2, running_seconds=0.3)

OPERATORS = {
    "image_to_video": (
        RunwayImageToVideoOperator,
        {"prompt_image": IMAGE, "prompt_text": "A boat", "duration": 5, "seed": 7},
    ),
    "video_to_video": (RunwayVideoToVideoOperator, {"video": VIDEO, "prompt_text": "Make it winter"}),
    "video_upscale": (RunwayUpscaleVideoOperator, {"video": VIDEO}),
    "character_performance": (
        RunwayCharacterPerformanceOperator,
        {"character": IMAGE, "reference_video": VIDEO},
    ),
}
EXPECTED_BODIES = {
    "image_to_video": {
        "model": "gen4_turbo",
        "promptImage": IMAGE,
        "ratio": "1280:720",
        "promptText": "A boat",
        "duration": 5,
        "seed": 7,
    },
    "video_to_video": {
        "model": "gen4_aleph",
        "videoUri": VIDEO,
        "promptText": "Make it winter",
        "ratio": "1280:720",
    },
    "video_upscale": {"model": "upscale_v1", "videoUri": VIDEO},
    "character_performance": {
        "model": "act_two",
        "character": {"type": "image", "uri": IMAGE},
        "reference": {"type": "video", "uri": VIDEO},
        "ratio": "1280:720",
    },
}


def run(operator_class: type, context: dict[str, Any] | None = None, **kwargs: Any) -> str:
    defaults = {"task_id": "job", "poll_interval": 0.1, "not_found_grace": 5}
    return operator_class(**{**defaults, **kwargs}).execute(
        context or {"ti": RecordingTaskInstance(), "task_state_store": MemoryTaskStateStore()}
    )


@pytest.mark.parametrize("route", list(OPERATORS))
@pytest.mark.parametrize("shape", ["official", "wrapped"])
def test_official_operator_submits_and_waits(runway_conn, emulator, route, shape):
    # The first poll comes right after the create: 1 s of "not visible" leaves a loaded machine room.
    emulator.scenario = Scenario(not_found_seconds=1.0, queued_seconds=0.2, running_seconds=0.3, shape=shape)
    operator_class, kwargs = OPERATORS[route]
    context = {"ti": RecordingTaskInstance(), "task_state_store": MemoryTaskStateStore()}
    runway_task_id = run(operator_class, context, wait_for_completion=True, **kwargs)
    [job] = emulator.jobs.values()
    assert job.runway_task_id == runway_task_id and job.official
    assert job.body == EXPECTED_BODIES[route]
    [create] = [r for r in emulator.requests if r["path"] == f"/runwayml/v1/{route}"]
    assert create["http_status"] == 200
    polls = [r for r in emulator.requests if r["path"] == f"/runwayml/v1/tasks/{runway_task_id}"]
    assert polls and polls[0]["task_status"] == "task_not_exist"  # 404 or task_not_exist: not visible yet
    assert context["ti"].xcom[XCOM_RUNWAY_TASK]["video_url"].endswith(f"{runway_task_id}.mp4")


def test_official_operator_defers_with_the_route_family(runway_conn, emulator):
    emulator.scenario = Scenario(running_seconds=60)
    with pytest.raises(TaskDeferred) as caught:
        run(RunwayUpscaleVideoOperator, video=VIDEO, wait_for_completion=True, deferrable=True)
    _, kwargs = caught.value.trigger.serialize()
    assert kwargs["route_family"] == "official"


def test_first_and_last_frames(runway_conn, emulator):
    frames = [{"uri": IMAGE, "position": "first"}, {"uri": LAST, "position": "last"}]
    run(RunwayImageToVideoOperator, prompt_image=frames, model="gen4.5", prompt_text="A turn", duration="8")
    [job] = emulator.jobs.values()
    assert job.body["promptImage"] == frames and job.body["duration"] == 8 and job.body["model"] == "gen4.5"


BAD = [
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": IMAGE, "ratio": "1280:768"},
        "ratio",
        id="i2v-ratio-of-another-model",
    ),
    pytest.param(
        RunwayImageToVideoOperator, {"prompt_image": IMAGE, "duration": 11}, "duration", id="i2v-duration-11"
    ),
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": IMAGE, "duration": "five"},
        "duration",
        id="i2v-duration-text",
    ),
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": IMAGE, "model": "veo3.1", "duration": 5},
        "duration",
        id="veo-duration-5",
    ),
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": IMAGE, "model": "gen4.5", "duration": 5},
        "prompt_text",
        id="gen45-needs-text",
    ),
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": IMAGE, "model": "gen4.5", "prompt_text": "x"},
        "duration",
        id="gen45-needs-duration",
    ),
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": [{"uri": IMAGE, "position": "middle"}]},
        "prompt_image[0].position",
        id="frame-position",
    ),
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": [{"uri": IMAGE, "position": "first"}] * 2},
        "prompt_image",
        id="frames-twice",
    ),
    pytest.param(
        RunwayImageToVideoOperator, {"prompt_image": "ftp://x/a.jpg"}, "prompt_image", id="ftp-image"
    ),
    pytest.param(RunwayImageToVideoOperator, {"prompt_image": IMAGE, "seed": -1}, "seed", id="negative-seed"),
    pytest.param(
        RunwayImageToVideoOperator, {"prompt_image": IMAGE, "seed": 2**32}, "seed", id="seed-too-large"
    ),
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": IMAGE, "content_moderation": {"publicFigureThreshold": "none"}},
        "content_moderation.publicFigureThreshold",
        id="moderation",
    ),
    pytest.param(
        RunwayImageToVideoOperator,
        {"prompt_image": IMAGE, "prompt_text": "x" * 1001},
        "prompt_text",
        id="long-text",
    ),
    pytest.param(
        RunwayVideoToVideoOperator, {"video": VIDEO, "prompt_text": " "}, "prompt_text", id="v2v-blank-text"
    ),
    pytest.param(
        RunwayVideoToVideoOperator,
        {"video": VIDEO, "prompt_text": "x", "references": "a.jpg"},
        "references",
        id="v2v-references",
    ),
    pytest.param(RunwayUpscaleVideoOperator, {"video": "clip.mp4"}, "video", id="upscale-relative"),
    pytest.param(
        RunwayCharacterPerformanceOperator,
        {"character": IMAGE, "reference_video": VIDEO, "character_type": "audio"},
        "character_type",
        id="act2-type",
    ),
    pytest.param(
        RunwayCharacterPerformanceOperator,
        {"character": IMAGE, "reference_video": VIDEO, "expression_intensity": 6},
        "expression_intensity",
        id="act2-intensity",
    ),
    pytest.param(
        RunwayCharacterPerformanceOperator,
        {"character": IMAGE, "reference_video": VIDEO, "body_control": "yes"},
        "body_control",
        id="act2-body",
    ),
    pytest.param(
        RunwayReverseVideoToVideoOperator, {"video": VIDEO, "prompt": ""}, "prompt", id="reverse-v2v-prompt"
    ),
    pytest.param(RunwayActOneOperator, {"video": VIDEO, "image": "nope"}, "image", id="act-one-image"),
]


@pytest.mark.parametrize(("operator_class", "kwargs", "field"), BAD)
def test_bad_input_is_refused_before_any_request(runway_conn, emulator, operator_class, kwargs, field):
    with pytest.raises(RunwayInputError) as caught:
        run(operator_class, **kwargs)
    assert caught.value.field == field
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("operator_class", "kwargs"),
    [
        (RunwayImageToVideoOperator, {"prompt_image": IMAGE, "model": "gen3a_turbo", "ratio": "1280:768"}),
        (RunwayVideoToVideoOperator, {"video": VIDEO, "prompt_text": "Snow", "model": "aleph2"}),
        (RunwayUpscaleVideoOperator, {"video": VIDEO, "model": "magnific_video_upscaler_creative"}),
    ],
)
def test_models_cometapi_or_runway_serve_are_sent(runway_conn, emulator, caplog, operator_class, kwargs):
    run(operator_class, **kwargs)
    [job] = emulator.jobs.values()
    assert job.body["model"] == kwargs["model"]
    assert "not one this provider knows" not in caplog.text


def test_a_known_model_keeps_its_rules(runway_conn, emulator):
    with pytest.raises(RunwayInputError, match="ratio"):
        run(RunwayImageToVideoOperator, prompt_image=IMAGE, model="gen3a_turbo", ratio="1280:720")
    assert emulator.requests == []


def test_an_unknown_model_is_sent_as_given_with_one_warning(runway_conn, emulator, caplog):
    run(RunwayImageToVideoOperator, prompt_image=IMAGE, model="gen9_future", ratio="2048:1152", duration=12)
    [job] = emulator.jobs.values()
    assert (job.body["model"], job.body["ratio"], job.body["duration"]) == ("gen9_future", "2048:1152", 12)
    warnings = [r.getMessage() for r in caplog.records if "not one this provider knows" in r.getMessage()]
    assert len(warnings) == 1 and "gen4_turbo" in warnings[0] and "gen9_future" in warnings[0]


@pytest.mark.parametrize(
    ("operator_class", "kwargs", "path", "body"),
    [
        (
            RunwayReverseVideoToVideoOperator,
            {"video": VIDEO, "prompt": "Watercolor", "options": job_options(not_found_seconds=0.2)},
            "/runway/pro/video2video",
            {"video": VIDEO, "prompt": "Watercolor", "model": "gen4"},
        ),
        (
            RunwayActOneOperator,
            {"video": VIDEO, "image": IMAGE},
            "/runway/pro/act_one",
            {"video": VIDEO, "image": IMAGE},
        ),
    ],
)
def test_reverse_routes_poll_through_the_feed(
    runway_conn, server, emulator, operator_class, kwargs, path, body
):
    runway_task_id = run(operator_class, wait_for_completion=True, **kwargs)
    [job] = emulator.jobs.values()
    assert job.runway_task_id == runway_task_id and not job.official
    assert {k: job.body[k] for k in body} == body
    assert job.body["callback_url"] == f"{server.base_url}/_emulator/callback"
    assert {r["path"] for r in emulator.requests} == {path, "/runway/feed"}


@pytest.mark.parametrize(
    ("failure_code", "error_class", "retried_by_airflow"),
    [
        ("SAFETY.INPUT.TEXT", RunwayContentRejectedError, False),
        ("SAFETY.OUTPUT.VIDEO", RunwayContentRejectedError, False),
        ("INPUT_PREPROCESSING.SAFETY.TEXT", RunwayContentRejectedError, False),
        ("INTERNAL.BAD_OUTPUT.CODE01", RunwayBadOutputError, True),
        ("INPUT_PREPROCESSING.INTERNAL", RunwayInputPreprocessingError, True),
        ("SOMETHING.NEW", RunwayTaskFailedError, True),
    ],
)
def test_failure_codes_map_to_typed_errors(
    runway_conn, emulator, failure_code, error_class, retried_by_airflow
):
    emulator.scenario = Scenario(
        not_found_seconds=0,
        queued_seconds=0,
        running_seconds=0,
        outcome="failed",
        failure_code=failure_code,
        shape="official",
    )
    with pytest.raises(RunwayTaskFailedError) as caught:
        run(RunwayImageToVideoOperator, prompt_image=IMAGE, wait_for_completion=True)
    assert type(caught.value) is error_class
    assert caught.value.failure_code == failure_code
    assert isinstance(caught.value, AirflowFailException) is not retried_by_airflow


def test_one_sensor_waits_on_an_official_task(runway_conn, emulator):
    emulator.scenario = FAST
    runway_task_id = RunwayHook().submit_upscale_video(video=VIDEO)
    sensor = RunwayTaskSensor(
        task_id="wait", runway_task_id=runway_task_id, route_family="official", poll_interval=0.1
    )
    result = sensor.execute({"ti": RecordingTaskInstance()})
    assert result["runway_task_id"] == runway_task_id and result["status"] == "SUCCEEDED"


def test_sensor_refuses_an_unknown_route_family():
    with pytest.raises(ValueError, match="route_family"):
        RunwayTaskSensor(task_id="wait", runway_task_id="t", route_family="v2")


def test_official_create_without_version_header_is_refused_by_the_emulator(server):
    import requests

    answer = requests.post(
        f"{server.base_url}/runwayml/v1/video_upscale",
        json={"model": "upscale_v1", "videoUri": VIDEO},
        headers={"Authorization": f"Bearer {server.emulator.api_key}"},
        timeout=10,
    )
    assert answer.status_code == 400 and "X-Runway-Version" in answer.json()["error"]["message"]


@pytest.mark.asyncio
async def test_trigger_waits_on_an_official_task(runway_conn, emulator):
    import time

    from runway_provider.triggers.runway import RunwayTaskTrigger

    emulator.scenario = Scenario(
        not_found_seconds=0.3, queued_seconds=0.2, running_seconds=0.3, shape="official"
    )
    runway_task_id = RunwayHook().submit_image_to_video(prompt_image=IMAGE)
    now = time.time()
    trigger = RunwayTaskTrigger(
        runway_task_id=runway_task_id,
        runway_conn_id="runway_default",
        poll_interval=0.1,
        end_time=now + 15,
        not_found_grace=5,
        submitted_at=now,
        route_family="official",
    )
    [event] = [event.payload async for event in trigger.run()]
    assert event["status"] == "success" and event["task"]["runway_task_id"] == runway_task_id


# -- text to image ---------------------------------------------------------------------------


def test_text_to_image_sends_its_references_and_gives_an_image(runway_conn, emulator):
    from runway_provider.operators.runway import RunwayTextToImageOperator

    references = [{"uri": IMAGE, "tag": "harbour"}]
    runway_task_id = run(
        RunwayTextToImageOperator,
        prompt_text="@harbour at dawn, a storyboard frame",
        reference_images=references,
        ratio="1360:768",
        seed=3,
        wait_for_completion=True,
    )
    job = emulator.jobs[runway_task_id]
    assert job.body == {
        "model": "gen4_image",
        "promptText": "@harbour at dawn, a storyboard frame",
        "ratio": "1360:768",
        "referenceImages": references,
        "seed": 3,
    }
    assert [r["path"] for r in emulator.create_requests()] == ["/runwayml/v1/text_to_image"]


@pytest.mark.parametrize(
    ("references", "field"),
    [
        ([], "reference_images"),
        ([{"uri": IMAGE}] * 4, "reference_images"),
        ([{"uri": "ftp://x/a.png"}], "reference_images[0].uri"),
        ([{"uri": IMAGE, "tag": "a b"}], "reference_images[0].tag"),
        ([{"uri": IMAGE, "weight": 1}], "reference_images[0]"),
    ],
)
def test_text_to_image_checks_its_references_before_sending(runway_conn, emulator, references, field):
    from runway_provider.operators.runway import RunwayTextToImageOperator

    with pytest.raises(RunwayInputError) as caught:
        run(RunwayTextToImageOperator, prompt_text="x", reference_images=references)
    assert caught.value.field == field and emulator.requests == []
