"""Airflow's CLI as :class:`~runway_provider.testing.sandbox.AirflowSandbox` runs it.

``python -m runway_provider.testing.airflow_cli dags test DAG_ID`` is ``airflow dags test DAG_ID``
with the DAGs folder on ``sys.path`` (appended, as every Airflow 3 DAG processor and task runner
appends its bundle's root), so a DAG file imports the modules beside it. Airflow 3.0's
``dags test`` parses the folder without it: ``from runway_examples_root import ...`` fails there.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    dags_folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if dags_folder and dags_folder not in sys.path:
        sys.path.append(dags_folder)
    from airflow.__main__ import main as airflow_main

    sys.argv[0] = "airflow"
    airflow_main()  # type: ignore[no-untyped-call]  # untyped in Airflow


if __name__ == "__main__":
    main()
