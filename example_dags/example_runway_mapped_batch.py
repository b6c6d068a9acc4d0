"""Generate one video per prompt with dynamic task mapping, and wait for all of them deferred."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.sensors.runway import RunwayTaskSensor

PROMPTS = [
    "A paper boat gently rocks on calm water.",
    "Autumn leaves swirl around a park bench.",
    "A cup of coffee steams on a rainy windowsill.",
]

with DAG(
    dag_id="example_runway_mapped_batch",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example", "runway"],
    params={"image_url": "https://example.com/paper-boat.jpg"},
) as dag:
    # --8<-- [start:mapped]
    generate = RunwayGenerateOperator.partial(
        task_id="generate",
        image="{{ params.image_url }}",
        ratio="1280:720",
    ).expand(prompt=PROMPTS)

    wait = RunwayTaskSensor.partial(
        task_id="wait_for_video",
        deferrable=True,
        poll_interval=5,
        timeout=30 * 60,
    ).expand(runway_task_id=generate.output)
    # --8<-- [end:mapped]

    @task
    def collect(runway_tasks: list[dict]) -> list[str]:
        # A slice reads every mapped result in one request; iterating asks for one more until it is
        # missing, which Airflow logs as an error.
        urls = [runway_task["video_url"] for runway_task in runway_tasks[:]]
        print(f"{len(urls)} videos ready: {urls}")
        return urls

    collect(wait.output)
