"""The kind rules of tests/kinds.py, run by pytest itself over a throwaway tests folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kinds import KINDS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]

SANDBOX_TEST = """
import pytest
from runway_provider.testing.sandbox import AirflowSandbox

pytestmark = pytest.mark.{kind}

def test_runs_dags(tmp_path):
    assert AirflowSandbox
"""


@pytest.fixture
def tests_folder(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> pytest.Pytester:
    """A folder with this project's kind markers and rules, and no test yet."""
    markers = "\n".join(f"    {line}" for line in request.config.getini("markers"))
    pytester.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers =\n{markers}\n")
    pytester.makeconftest('pytest_plugins = ["tests.kinds"]')
    return pytester


def test_every_kind_is_declared(request: pytest.FixtureRequest) -> None:
    declared = [line.split(":")[0] for line in request.config.getini("markers")]
    assert set(KINDS) <= set(declared)


def test_a_test_without_a_kind_fails_collection_saying_what_to_add(tests_folder: pytest.Pytester) -> None:
    tests_folder.makepyfile(test_plain="def test_nothing_marked():\n    pass\n")
    result = tests_folder.runpytest("-m", "unit")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*test_plain.py::test_nothing_marked: no kind marker*`pytestmark = pytest.mark.unit`*"]
    )
    result.assert_outcomes(errors=1)


def test_a_test_with_two_kinds_fails_collection(tests_folder: pytest.Pytester) -> None:
    tests_folder.makepyfile(
        test_two="import pytest\n\n@pytest.mark.unit\n@pytest.mark.soak\ndef test_both():\n    pass\n"
    )
    result = tests_folder.runpytest()
    result.stdout.fnmatch_lines(["*test_two.py::test_both: 2 kind markers (soak, unit)*"])
    result.assert_outcomes(errors=1)


def test_a_marked_fast_test_is_collected_and_runs(tests_folder: pytest.Pytester) -> None:
    tests_folder.makepyfile(
        test_fast="import pytest\n\npytestmark = pytest.mark.unit\n\ndef test_ok():\n    pass\n"
    )
    tests_folder.runpytest("-m", "unit").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        (
            SANDBOX_TEST.format(kind="unit"),
            "its module imports AirflowSandbox from runway_provider.testing.sandbox",
        ),
        (
            "import pytest\nfrom tests.system.conftest import cluster\n\npytestmark = pytest.mark.unit\n\n"
            "def test_on_the_cluster(cluster):\n    pass\n",
            "it uses the fixture cluster of the shared Airflow cluster",
        ),
        (
            "import subprocess, sys\nimport pytest\n\npytestmark = pytest.mark.unit\n\n"
            "def test_cli():\n    subprocess.run([sys.executable, '-m', 'airflow', 'version'], check=True)\n",
            "test_cli runs airflow in a subprocess",
        ),
        (
            "import subprocess, sys\nimport pytest\n\npytestmark = pytest.mark.unit\n\n"
            "def build():\n    subprocess.run([sys.executable, '-m', 'mkdocs', 'build'], check=True)\n\n"
            "def test_site():\n    build()\n",
            "build runs mkdocs in a subprocess",
        ),
        (
            "import pytest\n\npytestmark = pytest.mark.unit\n\n@pytest.fixture\ndef page():\n"
            "    from playwright.sync_api import sync_playwright\n    return sync_playwright\n\n"
            "def test_page(page):\n    pass\n",
            "page names playwright.sync_api, sync_playwright",
        ),
    ],
    ids=["sandbox-import", "cluster-fixture", "airflow-subprocess", "mkdocs-helper", "browser-fixture"],
)
def test_a_slow_test_marked_unit_fails_collection(
    tests_folder: pytest.Pytester, module: str, reason: str
) -> None:
    tests_folder.makepyfile(test_slow=module)
    # Selecting the unit set must not hide it: the rule is checked before -m deselects.
    result = tests_folder.runpytest("-m", "unit")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*test_slow.py::test_*: marked unit, but {reason}; *"])
    result.assert_outcomes(errors=1)


def test_the_same_slow_test_marked_dags_is_collected(tests_folder: pytest.Pytester) -> None:
    tests_folder.makepyfile(test_slow=SANDBOX_TEST.format(kind="dags"))
    result = tests_folder.runpytest("-m", "dags", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_slow.py::test_runs_dags*"])


def test_a_mismarked_test_fails_in_xdist_workers_too(
    tests_folder: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make check` runs the unit set in xdist workers, where collection happens in the workers."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # tests.kinds, from a pytest in another process
    tests_folder.makepyfile(test_slow=SANDBOX_TEST.format(kind="unit"))
    result = tests_folder.runpytest_subprocess("-m", "unit", "-n", "1", "-p", "xdist")
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_slow.py::test_runs_dags: marked unit, but its module imports*"])
