"""Operator -> sensor -> transfer for each route family, writing no route_family anywhere."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import (
    RunwayGenerateOperator,
    RunwayImageToVideoOperator,
    RunwayTextToImageOperator,
)
from runway_provider.sensors.runway import RunwayTaskSensor
from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator

IMAGE = "https://example.com/paper-boat.jpg"

with DAG(
    dag_id="runway_chain_every_family",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    params={"folder": "/tmp/runway-chain"},
):
    # The emulator's default scenario (set by the test) makes the first URL of every task expired.
    for source in (
        RunwayGenerateOperator(task_id="generate", prompt="A paper boat", image=IMAGE),
        RunwayImageToVideoOperator(task_id="animate", prompt_image=IMAGE, prompt_text="Waves roll in"),
        RunwayTextToImageOperator(
            task_id="storyboard",
            prompt_text="@boat on a calm sea",
            reference_images=[{"uri": IMAGE, "tag": "boat"}],
        ),
    ):
        wait = RunwayTaskSensor(
            task_id=f"wait_{source.task_id}", runway_task_id=source.output, poll_interval=1, timeout=120
        )
        store_task = RunwayToObjectStorageOperator(
            task_id=f"store_{source.task_id}",
            runway_task=wait.output,
            destination="{{ params.folder }}/" + source.task_id + "/",
        )
        # A task id alone is looked up on its own family too.
        RunwayToObjectStorageOperator(
            task_id=f"store_{source.task_id}_by_id",
            runway_task=source.output,
            destination="{{ params.folder }}/" + source.task_id + "-by-id/",
        ).set_upstream(store_task)
