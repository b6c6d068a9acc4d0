"""Required actions (Airflow's human-in-the-loop) read and answered through the REST API, as a
reviewer's tool would: the same endpoints feed the UI's Required Actions page."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests


def hitl_url(base_url: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """``/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails``."""
    return f"{base_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"


def wait_for_required_action(
    api: requests.Session,
    base_url: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    *,
    timeout: float,
    alive: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The task's required action once the task waits for it (state ``awaiting_input``).

    ``run_id`` may be ``~`` (any run: ``airflow dags test`` names its own); exactly one run may be
    waiting then. ``alive`` is called on every check and raises when what should produce the action
    has died.
    """
    url = f"{base_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/hitlDetails"
    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    while time.monotonic() < deadline:
        alive()
        answer = api.get(url, params={"task_id": task_id}, timeout=30)
        answer.raise_for_status()
        seen = answer.json()["hitl_details"]
        waiting = [detail for detail in seen if detail["task_instance"]["state"] == "awaiting_input"]
        if waiting:
            [detail] = waiting
            return dict(detail)
        time.sleep(1)
    raise TimeoutError(f"{dag_id}/{run_id}/{task_id} did not wait for input within {timeout}s; seen: {seen}")


def answer_required_action(
    api: requests.Session, base_url: str, dag_id: str, run_id: str, task_id: str, option: str
) -> requests.Response:
    """Choose ``option``, as the Required Actions page does."""
    return api.patch(
        hitl_url(base_url, dag_id, run_id, task_id), json={"chosen_options": [option]}, timeout=30
    )
