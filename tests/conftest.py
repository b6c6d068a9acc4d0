from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runway_provider.hooks.runway import RunwayHook
from runway_provider.testing import Emulator, EmulatorServer
from tests.helpers import (
    FAST,
    TEST_API_KEY,
    MemoryTaskStateStore,
    RecordingTaskInstance,
    free_port,
    set_connection,
)

# tests.kinds: every test has one kind marker, and a unit test starts nothing slow (checked at
# collection). pytester: the test of that check runs pytest on a throwaway tests folder.
pytest_plugins = ["tests.kinds", "pytester"]


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(api_key=TEST_API_KEY, scenario=FAST)


@pytest.fixture
def server(emulator: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as running:
        yield running


@pytest.fixture
def runway_conn(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer) -> dict[str, Any]:
    """``runway_default`` pointing at the emulator, with the test key."""
    return set_connection(monkeypatch, server, password=TEST_API_KEY)


@pytest.fixture
def hook(runway_conn: dict[str, Any]) -> RunwayHook:
    return RunwayHook(retry_backoff=0.01, retry_backoff_max=0.05)


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hooks that the code under test builds itself (operators, sensors, triggers, the transfer) back
    off 10 ms to 50 ms between retries instead of 1 s to 30 s: the same retries, sooner."""
    defaults = RunwayHook.__init__.__kwdefaults__
    monkeypatch.setitem(defaults, "retry_backoff", 0.01)
    monkeypatch.setitem(defaults, "retry_backoff_max", 0.05)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (connection refused)."""
    return free_port()


@pytest.fixture
def context() -> dict[str, Any]:
    return {"ti": RecordingTaskInstance(), "task_state_store": MemoryTaskStateStore()}
