"""Generate a video, then wait for it in the triggerer with a deferrable sensor.

The generate task only submits (seconds on a worker); the sensor checks once and defers, so no
worker slot is held while Runway renders. The sensor returns the finished task, with ``video_url``.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.sensors.runway import RunwayTaskSensor

with DAG(
    dag_id="example_runway_generate_and_sense",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example", "runway"],
    params={"image_url": "https://example.com/paper-boat.jpg"},
) as dag:
    # --8<-- [start:generate]
    generate = RunwayGenerateOperator(
        task_id="generate",
        prompt="A paper boat gently rocks on calm water.",
        image="{{ params.image_url }}",
        ratio="1280:720",
        model="gen4",
        retries=2,
    )
    # --8<-- [end:generate]

    # --8<-- [start:sensor]
    wait = RunwayTaskSensor(
        task_id="wait_for_video",
        runway_task_id=generate.output,
        deferrable=True,
        poll_interval=5,
        timeout=30 * 60,
    )
    # --8<-- [end:sensor]

    @task
    def report(runway_task: dict) -> str:
        print(f"Runway task {runway_task['runway_task_id']} video: {runway_task['video_url']}")
        return runway_task["video_url"]

    report(wait.output)
