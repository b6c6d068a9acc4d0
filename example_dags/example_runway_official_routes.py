"""Runway's official-format jobs through CometAPI (``/runwayml/v1``): a storyboard image from a
prompt, image to video with first and last frames, then the same clip restyled, upscaled, and a
character animated from it.

Official-format tasks are looked up by id (``GET /runwayml/v1/tasks/{id}``); a sensor given an
operator's output finds that family by itself.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import (
    RunwayCharacterPerformanceOperator,
    RunwayImageToVideoOperator,
    RunwayTextToImageOperator,
    RunwayUpscaleVideoOperator,
    RunwayVideoToVideoOperator,
)
from runway_provider.sensors.runway import RunwayTaskSensor

with DAG(
    dag_id="example_runway_official_routes",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example", "runway"],
    params={
        "first_frame": "https://example.com/frames/sunrise-first.jpg",
        "last_frame": "https://example.com/frames/sunrise-last.jpg",
        "performance": "https://example.com/clips/performance.mp4",
    },
) as dag:
    # --8<-- [start:image_to_video]
    image_to_video = RunwayImageToVideoOperator(
        task_id="image_to_video",
        prompt_image=[
            {"uri": "{{ params.first_frame }}", "position": "first"},
            {"uri": "{{ params.last_frame }}", "position": "last"},
        ],
        model="gen4_turbo",
        prompt_text="The sun rises over a misty valley.",
        ratio="1280:720",
        duration=5,
        seed=42,
    )
    wait_image_to_video = RunwayTaskSensor(
        task_id="wait_image_to_video",
        runway_task_id=image_to_video.output,
        deferrable=True,
        poll_interval=5,
    )
    # --8<-- [end:image_to_video]

    # --8<-- [start:text_to_image]
    storyboard = RunwayTextToImageOperator(
        task_id="storyboard",
        prompt_text="@valley at sunrise, wide shot, storyboard frame",
        reference_images=[{"uri": "{{ params.first_frame }}", "tag": "valley"}],
        ratio="1920:1080",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
    )
    # --8<-- [end:text_to_image]

    # --8<-- [start:video_to_video]
    restyle = RunwayVideoToVideoOperator(
        task_id="video_to_video",
        video="{{ ti.xcom_pull(task_ids='wait_image_to_video')['video_url'] }}",
        prompt_text="Turn the scene into a snowy winter morning.",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
    )
    # --8<-- [end:video_to_video]

    # --8<-- [start:upscale]
    upscale = RunwayUpscaleVideoOperator(
        task_id="upscale",
        video="{{ ti.xcom_pull(task_ids='wait_image_to_video')['video_url'] }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
    )
    # --8<-- [end:upscale]

    # --8<-- [start:character_performance]
    act_two = RunwayCharacterPerformanceOperator(
        task_id="character_performance",
        character="{{ params.first_frame }}",
        reference_video="{{ params.performance }}",
        expression_intensity=3,
        body_control=True,
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
    )
    # --8<-- [end:character_performance]

    wait_image_to_video >> [restyle, upscale]
