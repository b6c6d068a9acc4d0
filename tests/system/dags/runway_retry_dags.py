"""DAGs whose first try times out while the generation is still running, to test reconnection."""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import RunwayGenerateOperator

# The first try waits 3 s; the emulated generation takes about 5 s, so only a retry can finish it.
SLOW_JOB = {"emulator": {"not_found_seconds": 1, "queued_seconds": 1, "running_seconds": 3}}

for deferrable in (False, True):
    dag_id = f"runway_retry_reconnect_{'deferrable' if deferrable else 'blocking'}"
    with DAG(
        dag_id=dag_id,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        schedule=None,
        catchup=False,
        default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=0)},
    ):
        RunwayGenerateOperator(
            task_id="generate",
            prompt="A slow paper boat",
            image="https://example.com/paper-boat.jpg",
            options=SLOW_JOB,
            wait_for_completion=True,
            deferrable=deferrable,
            poll_interval=1,
            timeout=3,
        )
