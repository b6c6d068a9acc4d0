"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.triggers.runway import RunwayTaskTrigger

# Test-only names of the Task SDK that Airflow 3.0 and 3.1 still kept in Airflow core (the
# provider's own are in runway_provider.compat), and the DagBag, which 3.2 moved.
try:
    from airflow.sdk.exceptions import AirflowNotFoundException, TaskDeferred
    from airflow.sdk.execution_time.timeout import timeout
except ImportError:  # Airflow 3.0-3.1
    from airflow.exceptions import AirflowNotFoundException, TaskDeferred
    from airflow.utils.timeout import timeout
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.0-3.1
    from airflow.models.dagbag import DagBag

__all__ = ["AirflowNotFoundException", "TaskDeferred", "timeout"]

# Distinctive so that a leak is easy to grep for; never a real key.
TEST_API_KEY = "sk-test-4f9c2e71b8d35a60"
# The user `admin` of the system tests' throwaway Airflow (loopback only).
ADMIN_PASSWORD = "admin-password-for-tests"
# The quick-start example, which the system tests run on a real scheduler too.
EXAMPLE_DAG = "example_runway_generate_and_sense"
FAST = Scenario(not_found_seconds=0.2, queued_seconds=0.2, running_seconds=0.3)


def set_connection(
    monkeypatch: pytest.MonkeyPatch, server: EmulatorServer, **overrides: Any
) -> dict[str, Any]:
    conn = json.loads(server.connection_json())
    extra = {**conn["extra"], **overrides.pop("extra", {})}
    conn = {**conn, **overrides, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_RUNWAY_DEFAULT", json.dumps(conn))
    return conn


def job_options(**scenario: Any) -> dict[str, Any]:
    """``options`` that make the emulator follow ``scenario`` for this one job."""
    return {"emulator": scenario}


class RecordingTaskInstance:
    """The part of a task instance the operators use: XCom pushes, kept for assertions."""

    def __init__(self, *, try_number: int = 1, max_tries: int = 0, map_index: int = -1) -> None:
        self.xcom: dict[str, Any] = {}
        self.upstream: dict[tuple[str, str], Any] = {}
        self.try_number = try_number
        self.max_tries = max_tries
        self.dag_id, self.run_id, self.task_id, self.map_index = "videos", "nightly", "generate", map_index

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XCom values must be JSON-serializable
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value", map_indexes: Any = None) -> Any:
        """What an upstream task pushed: ``upstream[(task_id, key)]``, as a test arranged it."""
        return self.upstream.get((task_ids, key))


class MemoryTaskStateStore:
    """The part of Airflow's ``task_state_store`` the operators use, kept in a dict across tries."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        json.dumps(value)  # the real store keeps JSON only
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def make_trigger(runway_task_id: str, **overrides: Any) -> RunwayTaskTrigger:
    """A trigger on ``runway_default`` polling every 0.1 s, due in 15 s, submitted now."""
    now = time.time()
    kwargs = {
        "runway_task_id": runway_task_id,
        "runway_conn_id": "runway_default",
        "poll_interval": 0.1,
        "end_time": now + 15,
        "not_found_grace": 5.0,
        "submitted_at": now,
        "route_family": "reverse",
        **overrides,
    }
    return RunwayTaskTrigger(**kwargs)


def advance(emulator: Emulator, runway_task_id: str, seconds: float) -> None:
    """Move one job ``seconds`` further along its timeline, as if it had been created that much earlier:
    a test that has seen a phase need not wait it out."""
    job = emulator.jobs[runway_task_id]
    job.created -= seconds
    job.created_at -= seconds


def free_port() -> int:
    """A local port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def warning_lines(out: str) -> list[str]:
    """The warning lines of captured task logs: ``[warning  ]`` as the Task SDK's structlog writes
    them (Airflow 3.1+), ``} WARNING - `` in Airflow 3.0's format."""
    return [line for line in out.splitlines() if "[warning" in line or "} WARNING - " in line]


def dag_bag(path: str | Path) -> DagBag:
    """The DAGs of ``path`` alone, as the DAG processor parses them: without Airflow's own examples,
    which the DagBag of Airflow 3.0-3.2 adds by default (3.3's has no such option)."""
    with mock.patch.dict(os.environ, {"AIRFLOW__CORE__LOAD_EXAMPLES": "False"}):
        return DagBag(str(path))
