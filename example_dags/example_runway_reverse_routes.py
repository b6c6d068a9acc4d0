"""The other reverse-format jobs: video-to-video style redraw and Act-One, polled through the feed."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import RunwayActOneOperator, RunwayReverseVideoToVideoOperator

with DAG(
    dag_id="example_runway_reverse_routes",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example", "runway"],
    params={"video": "https://example.com/clips/city.mp4", "face": "https://example.com/frames/face.jpg"},
) as dag:
    # --8<-- [start:reverse_routes]
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
