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

    ``alive`` is called on every check and raises when what should produce the action has died.
    """
    url = hitl_url(base_url, dag_id, run_id, task_id)
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        alive()
        answer = api.get(url, timeout=30)
        if answer.status_code == 200:
            last = answer.json()
            if last["task_instance"]["state"] == "awaiting_input":
                return dict(last)
        elif answer.status_code != 404:  # 404: the run or its request does not exist yet
            answer.raise_for_status()
        time.sleep(1)
    raise TimeoutError(f"{dag_id}/{run_id}/{task_id} did not wait for input within {timeout}s; last: {last}")


def answer_required_action(
    api: requests.Session, base_url: str, dag_id: str, run_id: str, task_id: str, option: str
) -> requests.Response:
    """Choose ``option``, as the Required Actions page does."""
    return api.patch(
        hitl_url(base_url, dag_id, run_id, task_id), json={"chosen_options": [option]}, timeout=30
    )
