"""One generation waited on by the sensor in each mode, for benchmarks/worker_slots.py.

The generation's length is set by the benchmark on the emulator.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.sensors.runway import RunwayTaskSensor

with DAG(
    dag_id="runway_worker_slots",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
):
    generate = RunwayGenerateOperator(
        task_id="generate",
        prompt="A generation that takes a while",
        image="https://example.com/paper-boat.jpg",
    )
    for mode, deferrable in (("poke", False), ("reschedule", False), ("deferrable", True)):
        RunwayTaskSensor(
            task_id=f"wait_{mode}",
            runway_task_id=generate.output,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=deferrable,
            # Longer than the scheduler's loop on a busy 2-core machine: with shorter reschedules
            # Airflow 3.3 can mistake a finished poke for a lost task.
            poll_interval=10,
            timeout=600,
        )
