"""A real Airflow for system tests and benchmarks.

An api-server, a scheduler with the LocalExecutor, a dag-processor and a triggerer, each its own
process group on a throwaway SQLite home, so a test can kill one and start it again, or start
more triggerers beside the first.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")

COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{api_port}"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
}


class AirflowCluster:
    """Start, kill and restart Airflow's components as separate process groups.

    :param home: ``AIRFLOW_HOME`` (throwaway).
    :param dags_folder: DAGs to load.
    :param connection: ``AIRFLOW_CONN_RUNWAY_DEFAULT`` JSON.
    :param api_port: Port of the api-server (which also serves the execution API to workers).
    :param admin_password: Password of the user ``admin``, who then logs in through the login
        page; without it every visitor is an admin (no login page).
    """

    def __init__(
        self,
        *,
        home: Path,
        dags_folder: Path,
        connection: str,
        api_port: int,
        admin_password: str | None = None,
    ) -> None:
        self.home = home
        self.api_port = api_port
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            # Airflow starts some of its subprocesses by the name `airflow`.
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(admin_password is None),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # Off by default in Airflow; the UI's "Test" button and POST /connections/test need it.
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # Every component must sign and check workers' tokens with the same secret.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
            "AIRFLOW_CONN_RUNWAY_DEFAULT": connection,
        }
        if admin_password is not None:
            (home / "passwords.json").write_text(json.dumps({"admin": admin_password}))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def base_url(self) -> str:
        """The api-server: the UI, the REST API (``/api/v2``) and the login page."""
        return f"http://127.0.0.1:{self.api_port}"

    def airflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def start(self) -> None:
        done = self.airflow("db", "migrate")
        if done.returncode != 0:
            raise RuntimeError(done.stdout + done.stderr)
        for name in COMPONENTS:
            self.start_component(name)
        self._wait(self._api_is_up, 120, "the api-server")

    def start_api_server(self) -> None:
        """Only the api-server, e.g. beside ``airflow dags test`` on the same home, to answer its
        required actions through the UI or the REST API."""
        self.start_component("api-server")
        self._wait(self._api_is_up, 120, "the api-server")

    def _api_is_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5):
                return True
        except OSError:  # refused while it starts; URLError and HTTPError are OSErrors
            return False

    def start_component(
        self, name: str, *extra_args: str, command: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        """Start a component as the process ``name`` (its log: ``<home>/<name>.log``).

        :param extra_args: More arguments of its ``airflow`` command.
        :param command: Which of ``COMPONENTS`` to run, when ``name`` is not one of them (a second
            triggerer).
        :param env: Settings of this process only, over the cluster's.
        """
        args = [part.format(api_port=self.api_port) for part in COMPONENTS[command or name]]
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args, *extra_args],
            env={**self.env, **(env or {})},
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_triggerer(
        self, name: str, *extra_args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> int:
        """Start one more ``airflow triggerer`` as the process ``name``; return its job id.

        Each triggerer is a ``TriggererJob`` row of the ``job`` table, and ``trigger.triggerer_id``
        names the row of the triggerer that runs a trigger. Triggerers on one host share a hostname,
        so the new row is told apart as the one that did not exist before.
        """
        known = set(self.triggerer_jobs())
        self.start_component(name, *extra_args, command="triggerer", env=env)

        def new_job() -> int | None:
            fresh = sorted(set(self.triggerer_jobs()) - known)
            return fresh[0] if fresh else None

        job_id = self._wait(new_job, timeout, f"the triggerer {name} to start its job")
        assert job_id is not None  # _wait returns only a truthy answer
        return job_id

    def triggerer_jobs(self, alive_within: float | None = None) -> list[int]:
        """Ids of the triggerers' jobs; with ``alive_within``, only those that heartbeat within as
        many seconds and have not ended (what Airflow counts as alive when it assigns triggers)."""
        rows = self.query("SELECT id, end_date, latest_heartbeat FROM job WHERE job_type = 'TriggererJob'")
        if alive_within is None:
            return [row[0] for row in rows]
        now = datetime.datetime.now(datetime.timezone.utc)
        return [
            job_id
            for job_id, end_date, heartbeat in rows
            if end_date is None
            and heartbeat is not None
            and (now - parse_utc(heartbeat)).total_seconds() < alive_within
        ]

    def kill_component(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(30)

    def stop(self) -> None:
        for name in list(self.processes):
            process = self.processes[name]
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            self.processes.pop(name)

    # -- reading Airflow's own records ---------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.home / "airflow.db", timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        self._wait(lambda: self.query("SELECT 1 FROM dag WHERE dag_id = ?", dag_id), timeout, f"DAG {dag_id}")

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> None:
        done = self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf or {}))
        if done.returncode != 0:
            raise RuntimeError(done.stdout + done.stderr)

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT task_id, map_index, state, try_number, pid FROM task_instance WHERE dag_id = ? AND run_id = ?",
            dag_id,
            run_id,
        )
        keys = ("task_id", "map_index", "state", "try_number", "pid")
        return [dict(zip(keys, row, strict=True)) for row in rows if task_id is None or row[0] == task_id]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
            return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None

        state = self._wait(finished, timeout, f"run {run_id} of {dag_id}")
        assert state is not None  # _wait returns only a truthy answer
        return state

    def wait_for_tasks(
        self, dag_id: str, run_id: str, task_id: str, state: str, count: int, timeout: float
    ) -> None:
        def reached() -> bool:
            tis = self.task_instances(dag_id, run_id, task_id)
            reached_count: int = sum(ti["state"] == state for ti in tis)
            return reached_count >= count

        self._wait(reached, timeout, f"{count} {task_id} task(s) {state} in {run_id}")

    def wait_for_executor_event(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, timeout: float = 60
    ) -> None:
        """Wait until the scheduler has handled the executor's event for this try, e.g. the exit of
        the worker that parked a human-in-the-loop task.

        Airflow 3.3.2's scheduler fails a parked task that is answered (and queued again) before it
        has seen that exit: "finished with state success, but the task instance's state attribute is
        queued". A person never answers that fast; a test or a review tool can.
        """
        key = (
            f"TaskInstanceKey(dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}', "
            f"try_number={try_number}, map_index=-1)"
        )

        def seen() -> bool:
            log = (self.home / "scheduler.log").read_text(errors="replace")
            return any("Received executor event" in line and key in line for line in log.splitlines())

        self._wait(seen, timeout, f"the scheduler to see the worker of {task_id} in {run_id} exit")

    def task_log(self, dag_id: str, run_id: str, task_id: str, attempt: int, map_index: int = -1) -> str:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        return (folder / f"attempt={attempt}.log").read_text()

    def check_running(self) -> None:
        """Raise if a component started here has exited: waiting on it would only time out."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"Airflow {name} exited with {process.returncode}; see {self.home}/{name}.log"
                )

    def _wait(self, check: Callable[[], _T], timeout: float, what: str, step: float = 1.0) -> _T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            result = check()
            if result:
                return result
            time.sleep(step)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}; logs in {self.home}")


def parse_utc(stamp: str) -> datetime.datetime:
    """A timestamp as Airflow stores it in SQLite (UTC, with or without an offset)."""
    moment = datetime.datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)
