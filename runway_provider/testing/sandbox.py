"""Run DAGs under a real ``airflow dags test`` in a throwaway Airflow home, against the emulator.

Used by the project's demo and test suite, and meant for users testing their own DAGs offline::

    with EmulatorServer() as server:
        sandbox = AirflowSandbox(home=tmp_path, dags_folder="dags", connection=server.connection_json())
        result = sandbox.dags_test("my_dag")
        assert result.returncode == 0
        print(sandbox.xcom("my_dag", "wait_for_video"))
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DagTestResult:
    dag_id: str
    returncode: int
    output: str


class AirflowSandbox:
    """An Airflow home on SQLite with one DAGs folder and a ``runway_default`` connection.

    :param home: Directory for ``AIRFLOW_HOME`` (created if missing).
    :param dags_folder: The DAGs to load.
    :param connection: ``AIRFLOW_CONN_RUNWAY_DEFAULT`` JSON (see ``EmulatorServer.connection_json``).
    :param env: Extra environment variables for every Airflow command.
    """

    def __init__(
        self,
        *,
        home: str | os.PathLike[str],
        dags_folder: str | os.PathLike[str],
        connection: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(home).absolute()
        self.dags_folder = Path(dags_folder).absolute()
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW_CONN_RUNWAY_DEFAULT": connection,
            **(env or {}),
        }
        self._migrated = False

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run the Airflow CLI of this interpreter with the sandbox's environment.

        Through :mod:`runway_provider.testing.airflow_cli`: the DAGs folder importable, and on
        Airflow 3.0 the Task SDK's log at INFO and masked, as on Airflow's own workers.
        """
        return subprocess.run(
            [sys.executable, "-m", "runway_provider.testing.airflow_cli", *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def migrate(self) -> None:
        if self._migrated:
            return
        done = self.airflow("db", "migrate")
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}")
        self._migrated = True

    def dags_test(self, dag_id: str, *extra_args: str, timeout: float = 600) -> DagTestResult:
        """``airflow dags test DAG_ID``: runs every task, deferred ones through their trigger."""
        self.migrate()
        done = self.airflow("dags", "test", dag_id, *extra_args, timeout=timeout)
        return DagTestResult(dag_id=dag_id, returncode=done.returncode, output=done.stdout + done.stderr)

    def xcom(self, dag_id: str, task_id: str, key: str = "return_value") -> list[Any]:
        """XCom values of the latest run of ``dag_id``, one per map index (in index order)."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ? AND run_id = "
                "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) "
                "ORDER BY map_index",
                (dag_id, task_id, key, dag_id),
            ).fetchall()
        return [json.loads(value) for (value,) in rows]

    def task_states(self, dag_id: str) -> dict[tuple[str, int], str | None]:
        """``(task_id, map_index) -> state`` for the latest run of ``dag_id``."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            rows = db.execute(
                "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = "
                "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
                (dag_id, dag_id),
            ).fetchall()
        return {(task_id, map_index): state for task_id, map_index, state in rows}

    def database_text(self, table: str) -> str:
        """Every row of a table as text, to look for what must not be stored (the API key)."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            db.text_factory = lambda raw: raw.decode("utf-8", "replace")
            return "\n".join(repr(row) for row in db.execute(f"SELECT * FROM {table}"))
