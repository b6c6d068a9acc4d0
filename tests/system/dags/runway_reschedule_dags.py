"""A sensor in reschedule mode: it gives its worker slot back between pokes."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.sensors.runway import RunwayTaskSensor

with DAG(
    dag_id="runway_sensor_reschedule",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
):
    generate = RunwayGenerateOperator(
        task_id="generate",
        prompt="A boat waited on in reschedule mode",
        image="https://example.com/paper-boat.jpg",
        # About 10 s: several pokes even where each try takes seconds to start (Airflow 3.0's `dags test`).
        options={"emulator": {"not_found_seconds": 1, "queued_seconds": 1, "running_seconds": 8}},
    )
    RunwayTaskSensor(
        task_id="wait_for_video",
        runway_task_id=generate.output,
        mode="reschedule",
        poll_interval=1,
        timeout=120,
        not_found_grace=60,
    )

with DAG(
    dag_id="runway_sensor_reschedule_lost",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
):
    # The grace counts from the first poke, across reschedules: the task is lost after ~3 s, long
    # before the sensor's own timeout.
    lost = RunwayGenerateOperator(
        task_id="generate",
        prompt="A boat that never appears",
        image="https://example.com/paper-boat.jpg",
        options={"emulator": {"outcome": "never_appears"}},
    )
    RunwayTaskSensor(
        task_id="wait_for_video",
        runway_task_id=lost.output,
        mode="reschedule",
        poll_interval=1,
        timeout=90,
        not_found_grace=3,
    )
