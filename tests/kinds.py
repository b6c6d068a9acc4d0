"""Every test has exactly one kind, and a ``unit`` test starts nothing slow: checked at collection.

The kinds (declared in pyproject.toml, mapped in docs/testing.md) decide which command runs a test:
``make check`` runs ``-m unit``, ``make test`` runs every kind, ``make test-airflow-3.X`` runs the
in-process kinds (unit, timing, soak, docs) on an older Airflow 3 release. A test is selected by its marker, never by its path, so a test without one
would silently run nowhere or everywhere: collection fails instead, naming it.

"Slow" is decided mechanically, from what a test can reach before it runs: a ``unit`` test may not
use a fixture of the shared cluster (tests/system/conftest.py), live in a module that imports the
cluster, the ``airflow dags test`` sandbox or the browser driver, nor name any of them, or run
``airflow``, ``mkdocs`` or ``chromium`` as a subprocess, in its own code, its fixtures' code or its
module's helper functions. What this cannot see (a unit test that merely sleeps) is left to review.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# One kind per test; the order is the order of docs/testing.md.
KINDS = ("unit", "timing", "dags", "system", "browser", "soak", "docs")
# Where Airflow processes and the browser come from: only a slow kind may touch these modules...
SLOW_MODULES = ("tests.cluster", "runway_provider.testing.sandbox", "playwright")
SLOW_NAMES = frozenset({"AirflowCluster", "AirflowSandbox", "sync_playwright", "async_playwright"})
# ... run these commands in a subprocess ...
SLOW_COMMANDS = frozenset({"airflow", "mkdocs", "chromium"})
# ... or use the fixtures of this conftest (one real Airflow shared by the session).
CLUSTER_CONFTEST = Path(__file__).resolve().parent / "system" / "conftest.py"


def kinds_of(item: pytest.Item) -> list[str]:
    return sorted({mark.name for mark in item.iter_markers() if mark.name in KINDS})


def _codes(func: Callable[..., Any]) -> Iterator[types.CodeType]:
    """The code of a function and of every function or class body nested in it."""
    func = inspect.unwrap(func)
    code = getattr(func, "__code__", None)
    stack = [code] if code is not None else []
    while stack:
        code = stack.pop()
        yield code
        stack.extend(const for const in code.co_consts if isinstance(const, types.CodeType))


# Asked once per function and per file, not once per test: a module's helpers and a shared fixture
# are looked at again for each of the hundreds of tests that reach them.
@functools.cache
def _slow_in_code(func: Callable[..., Any]) -> str | None:
    for code in _codes(func):
        names = set(code.co_names)
        named = sorted(n for n in names if n in SLOW_NAMES or n.startswith(SLOW_MODULES))
        if named:
            return f"{func.__qualname__} names {', '.join(named)}"
        commands = SLOW_COMMANDS.intersection(c for c in code.co_consts if isinstance(c, str))
        if commands and names & {"subprocess", "Popen"}:
            return f"{func.__qualname__} runs {', '.join(sorted(commands))} in a subprocess"
    return None


def _module_of(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return value.__name__
    try:
        return str(getattr(value, "__module__", "") or "")
    except Exception:  # an odd object in a module's namespace is no slow import
        return ""


@functools.cache
def _resolved(filename: str) -> Path:
    return Path(filename).resolve()


@functools.cache
def _slow_import(module: types.ModuleType) -> str | None:
    for name, value in vars(module).items():
        if _module_of(value).startswith(SLOW_MODULES):
            return f"its module imports {name} from {_module_of(value)}"
    return None


def why_slow(item: pytest.Item) -> str | None:
    """Why ``item`` cannot be a unit test, or None."""
    module = getattr(item, "module", None)
    if module is not None:
        reason = _slow_import(module)
        if reason:
            return reason
    functions: list[Callable[..., Any]] = []
    test_function = getattr(item, "function", None)
    if test_function is not None:
        functions.append(test_function)
    fixture_info = getattr(item, "_fixtureinfo", None)
    for name, definitions in fixture_info.name2fixturedefs.items() if fixture_info else []:
        func = definitions[-1].func
        source = getattr(inspect.unwrap(func), "__code__", None)
        if source is not None and _resolved(source.co_filename) == CLUSTER_CONFTEST:
            return f"it uses the fixture {name} of the shared Airflow cluster"
        functions.append(func)
    if module is not None:
        # The module's helpers, which its tests call: not its other tests (a module may mix kinds).
        functions += [
            value
            for name, value in vars(module).items()
            if inspect.isfunction(value)
            and not name.startswith("test")
            and value.__code__.co_filename == getattr(module, "__file__", None)
        ]
    for func in functions:
        reason = _slow_in_code(func)
        if reason:
            return reason
    return None


def problem(item: pytest.Item) -> str | None:
    """What is wrong with ``item``'s kind, in words that say what to add; None when nothing is."""
    kinds = kinds_of(item)
    if len(kinds) != 1:
        what = "no kind marker" if not kinds else f"{len(kinds)} kind markers ({', '.join(kinds)})"
        return (
            f"{item.nodeid}: {what}; give it exactly one of {', '.join(KINDS)}: "
            "`pytestmark = pytest.mark.unit` at the top of its module, or "
            "`@pytest.mark.unit` on the test (docs/testing.md says which kind is which)"
        )
    reason = why_slow(item) if kinds == ["unit"] else None
    if reason:
        return (
            f"{item.nodeid}: marked unit, but {reason}; a unit test starts no Airflow, "
            "browser or docs build: mark it dags, system, browser or docs instead"
        )
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """Fail the collection of a module (or class) whose tests break the kind rules.

    A collection error, not a failed test: it stops the session before any test runs, under
    ``-m`` (deselection comes later) and in xdist workers alike.
    """
    report = yield
    if report.passed:
        problems = [
            p for item in report.result if isinstance(item, pytest.Item) for p in [problem(item)] if p
        ]
        if problems:
            report.outcome = "failed"
            report.longrepr = "Test kinds (tests/kinds.py):\n  " + "\n  ".join(problems)
            report.result = []
    return report


def pytest_configure(config: pytest.Config) -> None:
    declared = {line.split(":")[0].strip() for line in config.getini("markers")}
    missing = [kind for kind in KINDS if kind not in declared]
    if missing:
        raise pytest.UsageError(f"markers {missing} are not declared in [tool.pytest.ini_options]")
