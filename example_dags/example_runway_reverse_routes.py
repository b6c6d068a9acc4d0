"""The other reverse-format jobs: a video from the prompt alone, video-to-video style redraw and
Act-One, polled through the feed."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import (
    RunwayActOneOperator,
    RunwayGenerateOperator,
    RunwayReverseVideoToVideoOperator,
)

with DAG(
    dag_id="example_runway_reverse_routes",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example", "runway"],
    params={"video": "https://example.com/clips/city.mp4", "face": "https://example.com/frames/face.jpg"},
) as dag:
    # --8<-- [start:reverse_routes]
    RunwayGenerateOperator(
        task_id="text_to_video",
        prompt="A lighthouse at dusk, waves breaking below.",
        # No image: CometAPI then needs the length and the camera motion.
        options={
            "seconds": 5,
            "motion_vector": {"x": 0, "y": 0.4, "z": 0, "r": -6, "bg_x_pan": 0, "bg_y_pan": 0},
        },
        ratio="16:9",
        model="gen4_turbo",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
    )
    RunwayReverseVideoToVideoOperator(
        task_id="video2video",
        video="{{ params.video }}",
        prompt="Redraw the city as a watercolor painting.",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
    )
    RunwayActOneOperator(
        task_id="act_one",
        video="{{ params.video }}",
        image="{{ params.face }}",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
    )
    # --8<-- [end:reverse_routes]
