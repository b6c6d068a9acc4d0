"""Airflow's CLI as :class:`~runway_provider.testing.sandbox.AirflowSandbox` runs it.

``python -m runway_provider.testing.airflow_cli dags test DAG_ID`` is ``airflow dags test DAG_ID``
with two things set up the way Airflow's own workers have them, which Airflow 3.0's CLI does not:

* The DAGs folder on ``sys.path`` (appended, as every Airflow 3 DAG processor and task runner
  appends its bundle's root), so a DAG file imports the modules beside it. Airflow 3.0's
  ``dags test`` parses the folder without it: ``from runway_examples_root import ...`` fails there.
* On Airflow 3.0, the Task SDK's log at INFO with secrets masked and no local variables in
  tracebacks (Python's plain traceback when the output is not a terminal). 3.0's CLI leaves
  structlog unconfigured, so ``dags test`` prints the Task SDK's debug messages, among them every
  ``MaskSecret`` a task sends its in-process supervisor, with the secret in clear
  (``InProcessSupervisorComms.send`` logs each message it sends): a connection's password is
  printed each time a task reads the connection. Airflow 3.1 configures structlog in its CLI, and
  a real worker sends those messages to its supervisor without printing them.
"""

from __future__ import annotations

import logging
import os
import sys


def _airflow_3_0() -> bool:
    import airflow

    major, minor = (int(part) for part in airflow.__version__.split(".")[:2])
    return (major, minor) < (3, 1)


def _configure_task_sdk_log() -> None:
    """What a 3.0 worker's log has: INFO and up, secrets masked, tracebacks without locals."""
    import structlog
    from airflow.sdk.log import mask_logs

    unrendered = list(structlog.get_config()["processors"])[:-1]  # structlog's defaults, less the renderer
    # On a terminal, colors and rich tracebacks; into a file or pipe, Python's own traceback, whose
    # last line keeps the exception's message whole (rich wraps it at 80 columns there).
    terminal = sys.stdout.isatty()
    renderer = structlog.dev.ConsoleRenderer(
        colors=terminal,
        exception_formatter=(
            structlog.dev.RichTracebackFormatter(show_locals=False)
            if terminal
            else structlog.dev.plain_traceback
        ),
    )
    structlog.configure(
        processors=[*unrendered, mask_logs, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def main() -> None:
    dags_folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if dags_folder and dags_folder not in sys.path:
        sys.path.append(dags_folder)
    from airflow.__main__ import main as airflow_main

    if _airflow_3_0():
        _configure_task_sdk_log()
    sys.argv[0] = "airflow"
    airflow_main()  # type: ignore[no-untyped-call]  # untyped in Airflow


if __name__ == "__main__":
    main()
