"""DAGs for the system test on a real scheduler, triggerer and LocalExecutor."""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import DAG, task

from runway_provider.operators.runway import RunwayGenerateOperator, RunwayImageToVideoOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
RETRIES = {"retries": 3, "retry_delay": datetime.timedelta(seconds=2)}

with DAG(
    dag_id="runway_system_deferred_batch",
    start_date=START,
    schedule=None,
    catchup=False,
    default_args=RETRIES,
    params={"count": 5, "label": "batch"},
    max_active_tasks=64,
):

    @task
    def prompts(params: dict | None = None) -> list[str]:
        assert params is not None
        return [f"{params['label']} video #{number}" for number in range(int(params["count"]))]

    RunwayGenerateOperator.partial(
        task_id="generate",
        image="https://example.com/paper-boat.jpg",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        timeout=600,
    ).expand(prompt=prompts())

with DAG(
    dag_id="runway_system_blocking_wait",
    start_date=START,
    schedule=None,
    catchup=False,
    default_args=RETRIES,
):
    RunwayGenerateOperator(
        task_id="generate",
        prompt="A video whose worker gets killed",
        image="https://example.com/paper-boat.jpg",
        wait_for_completion=True,
        deferrable=False,
        poll_interval=1,
        timeout=600,
    )

with DAG(
    dag_id="runway_system_official_deferred",
    start_date=START,
    schedule=None,
    catchup=False,
    default_args=RETRIES,
):
    # Waits in the triggerer on an official-format task that a user will mark failed.
    RunwayImageToVideoOperator(
        task_id="animate",
        prompt_image="https://example.com/paper-boat.jpg",
        prompt_text="Waves roll in",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        timeout=600,
    )

with DAG(
    dag_id="runway_system_spread_waits",
    start_date=START,
    schedule=None,
    catchup=False,
    default_args=RETRIES,
    params={"count": 40, "label": "spread"},
    max_active_tasks=64,
):
    # Official-format waits, spread over two triggerers: a cancel would really be sent (the
    # reverse-format routes have no cancel route), so "no cancel on a move" means something.
    @task
    def prompt_texts(params: dict | None = None) -> list[str]:
        assert params is not None
        return [f"{params['label']} video #{number}" for number in range(int(params["count"]))]

    RunwayImageToVideoOperator.partial(
        task_id="animate",
        prompt_image="https://example.com/paper-boat.jpg",
        wait_for_completion=True,
        deferrable=True,
        poll_interval=2,
        timeout=600,
    ).expand(prompt_text=prompt_texts())
