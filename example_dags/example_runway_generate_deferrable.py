"""Submit a generation and wait for it in one task, deferring to the triggerer while it renders."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import RunwayGenerateOperator

with DAG(
    dag_id="example_runway_generate_deferrable",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    tags=["example", "runway"],
    params={"image_url": "https://example.com/paper-boat.jpg"},
) as dag:
    # --8<-- [start:generate_wait]
    RunwayGenerateOperator(
        task_id="generate_and_wait",
        prompt="A lighthouse beam sweeps over a stormy sea at dusk.",
        image="{{ params.image_url }}",
        ratio="1280:720",
        style="cinematic",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=5,
        timeout=30 * 60,
    )
    # --8<-- [end:generate_wait]
