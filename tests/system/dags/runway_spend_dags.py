"""DAGs with retries that show what a lost answer, a refusal, a spent balance, a changed request, a
timeout, Airflow's execution_timeout and a failure after success cost."""

from __future__ import annotations

import datetime
from typing import Any

import pendulum
from airflow.sdk import DAG

from runway_provider.operators.runway import RunwayGenerateOperator, RunwayImageToVideoOperator

IMAGE = "https://example.com/paper-boat.jpg"


def spend_dag(dag_id: str, retries: int = 2) -> DAG:
    return DAG(
        dag_id=dag_id,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        schedule=None,
        catchup=False,
        default_args={"retries": retries, "retry_delay": datetime.timedelta(seconds=0)},
    )


with spend_dag("runway_spend_lost_answer"):
    # CometAPI processes the create, then a proxy answers 502: the generation exists and bills.
    RunwayGenerateOperator(
        task_id="generate",
        prompt="A boat whose create answer is lost",
        image=IMAGE,
        options={"emulator": {"create_faults": ["502_after_create"]}},
    )

with spend_dag("runway_spend_refusal"):
    RunwayGenerateOperator(
        task_id="generate",
        prompt="A boat the content policy refuses",
        image=IMAGE,
        options={"emulator": {"create_faults": ["refused"]}},
    )

with spend_dag("runway_spend_balance"):
    # The account cannot pay: CometAPI's gateway would refuse each try's create, were there retries.
    RunwayGenerateOperator(
        task_id="generate",
        prompt="A boat an empty account cannot pay for",
        image=IMAGE,
        options={"emulator": {"create_faults": ["spent_balance"] * 3}},
    )

with spend_dag("runway_spend_changed_prompt"):
    # The first try's generation outlives its 5 s wait; the retry renders another prompt (and a
    # quick job), so it must not reconnect to the first try's generation.
    RunwayGenerateOperator(
        task_id="generate",
        prompt="A boat, try {{ ti.try_number }}",
        image=IMAGE,
        options=(
            '{"emulator": {"not_found_seconds": 0.2, "queued_seconds": 0.2, '
            '"running_seconds": {{ 60 if ti.try_number == 1 else 0.5 }}}}'
        ),
        wait_for_completion=True,
        poll_interval=1,
        timeout=5,
    )

for retries_left in (True, False):
    # Official-format waits whose task outlives the wait; the emulator's default scenario sets how long.
    dag_id = f"runway_spend_official_timeout_{'retried' if retries_left else 'last_try'}"
    with spend_dag(dag_id, retries=1 if retries_left else 2):
        RunwayImageToVideoOperator(
            task_id="animate",
            prompt_image=IMAGE,
            prompt_text="Waves roll in",
            wait_for_completion=True,
            poll_interval=1,
            timeout=4 if retries_left else 2,
        )

for mode in ("blocking", "deferrable"):
    # Airflow's execution_timeout strikes while the generation runs (the emulator's default scenario
    # sets how long): the last try cancels it, a try Airflow retries leaves it for the retry.
    for retries in (0, 1):
        with spend_dag(f"runway_spend_execution_timeout_{mode}_retries_{retries}", retries=retries):
            RunwayImageToVideoOperator(
                task_id="animate",
                prompt_image=IMAGE,
                prompt_text="Waves roll in",
                wait_for_completion=True,
                deferrable=mode == "deferrable",
                poll_interval=1,
                timeout=600,
                execution_timeout=datetime.timedelta(seconds=4),
            )


def _fail_first_try_after_execute(context: Any, result: Any) -> None:
    # Stands for what can fail once execute has returned: the return value's XCom push, or the worker
    # dying before Airflow records the success.
    if context["ti"].try_number == 1:
        raise RuntimeError("the try failed after execute returned")


with spend_dag("runway_spend_failure_after_success", retries=1):
    RunwayImageToVideoOperator(
        task_id="animate",
        prompt_image=IMAGE,
        prompt_text="Waves roll in",
        wait_for_completion=True,
        poll_interval=1,
        post_execute=_fail_first_try_after_execute,
    )
