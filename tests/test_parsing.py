"""What parsing a DAG file imports: what only execution needs loads when a task executes.

DAG parsing pays for every import. One fresh interpreter imports what DAG files import (the
operators, the sensor, the transfer) after ``airflow.sdk``, and the test reads what that loaded:
one interpreter for the three rules, since each costs an Airflow import of its own, and a module
that none of the imports together loads is loaded by none of them alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DAG_IMPORTS = (
    "runway_provider.operators.runway",
    "runway_provider.sensors.runway",
    "runway_provider.transfers.runway_to_object_storage",
)


def test_parsing_a_dag_file_loads_nothing_that_only_execution_needs():
    code = (
        "import json, sys, airflow.sdk\n"
        "before = set(sys.modules)\n"
        + "".join(f"import {module}\n" for module in DAG_IMPORTS)
        + "print(json.dumps([sorted(before), sorted(set(sys.modules) - before)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    before, added = (set(names) for names in json.loads(done.stdout.strip().splitlines()[-1]))
    loaded = before | added
    # The HTTP clients load with the hook's first request.
    assert sorted(loaded & {"aiohttp", "requests"}) == []
    # The transfer's media client (and requests with it) loads in its execute.
    assert "runway_provider.hooks.media" not in loaded
    # OpenLineage only when its listener asks. (Airflow itself reads every installed provider's
    # get_provider_info while airflow.sdk loads: that is not counted.)
    assert sorted(m for m in added if "openlineage" in m) == []
