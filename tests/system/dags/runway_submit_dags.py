"""RunwaySubmitOperator under `airflow dags test`: raw bodies on both families, with a sensor and a transfer
downstream that are given no route_family, a retry that reconnects, and a last try's timeout that cancels."""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import RunwaySubmitOperator
from runway_provider.sensors.runway import RunwayTaskSensor
from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator

IMAGE = "https://example.com/paper-boat.jpg"
OFFICIAL = {"model": "gen4_turbo", "promptImage": IMAGE, "promptText": "Waves roll in", "ratio": "1280:720"}
START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG(dag_id="runway_submit_chain", start_date=START, schedule=None, params={"folder": "/tmp/raw"}):
    animate = RunwaySubmitOperator(task_id="animate", path="/runwayml/v1/image_to_video", body=OFFICIAL)
    wait = RunwayTaskSensor(
        task_id="wait_animate", runway_task_id=animate.output, poll_interval=1, timeout=120, deferrable=True
    )
    RunwayToObjectStorageOperator(
        task_id="store_animate", runway_task=wait.output, destination="{{ params.folder }}/animate/"
    )
    generate = RunwaySubmitOperator(
        task_id="generate",
        path="/runway/pro/generate",
        body='{"prompt": "A paper boat", "image": "' + IMAGE + '", "model": "gen4", "ratio": "1280:720", '
        '"options": {"seconds": 5}}',
        wait_for_completion=True,
        deferrable=True,
        poll_interval=1,
    )
    RunwayToObjectStorageOperator(
        task_id="store_generate", runway_task=generate.output, destination="{{ params.folder }}/generate/"
    )
    # Mapped: the family is known from the pushed request when the transfer runs.
    mapped = RunwaySubmitOperator.partial(
        task_id="animate_many", path="/runwayml/v1/image_to_video", wait_for_completion=True, poll_interval=1
    ).expand(body=[{**OFFICIAL, "seed": seed} for seed in (1, 2)])
    RunwayToObjectStorageOperator.partial(
        task_id="store_many", destination="{{ params.folder }}/many/"
    ).expand(runway_task=mapped.output)

# runway_submit_retry: the first try waits 4 s, the generation (the test's scenario) takes about 6 s, and
# the retry reconnects. runway_submit_timeout: one try, which times out and cancels.
for dag_id, timeout, retries in (("runway_submit_retry", 4, 1), ("runway_submit_timeout", 3, 0)):
    with DAG(
        dag_id=dag_id,
        start_date=START,
        schedule=None,
        default_args={"retries": retries, "retry_delay": datetime.timedelta(seconds=0)},
    ):
        RunwaySubmitOperator(
            task_id="animate",
            path="/runwayml/v1/image_to_video",
            body=OFFICIAL,
            wait_for_completion=True,
            poll_interval=1,
            timeout=timeout,
        )
