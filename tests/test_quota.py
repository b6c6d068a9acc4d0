"""The balance floor: a create reads the remaining quota first and sends nothing below the floor."""

from __future__ import annotations

from typing import Any

import pytest

from runway_provider import spend
from runway_provider.compat import AirflowFailException
from runway_provider.exceptions import (
    RunwayBalanceExhaustedError,
    RunwayBalanceFloorError,
    RunwayConfigurationError,
    RunwayTransientError,
)
from runway_provider.hooks.runway import DEFAULT_QUOTA_URL, RunwayHook
from runway_provider.operators.runway import RunwayGenerateOperator, RunwayImageToVideoOperator
from runway_provider.protocol import parse_quota
from runway_provider.testing.emulator import DEFAULT_QUOTA_KEY
from tests.helpers import (
    TEST_API_KEY,
    MemoryTaskStateStore,
    RecordingTaskInstance,
    free_port,
    set_connection,
    warning_lines,
)

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"


class JournalingStore(MemoryTaskStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.journal: list[tuple[str, Any]] = []

    def set(self, key: str, value: Any) -> None:
        self.journal.append(("set", value.get("phase")))
        super().set(key, value)


def new_try(store: MemoryTaskStateStore, *, try_number: int = 1, max_tries: int = 0) -> dict[str, Any]:
    return {
        "ti": RecordingTaskInstance(try_number=try_number, max_tries=max_tries),
        "task_state_store": store,
    }


def generate(**kwargs: Any) -> RunwayGenerateOperator:
    return RunwayGenerateOperator(task_id="generate", prompt="A paper boat", image=IMAGE, **kwargs)


def image_to_video(**kwargs: Any) -> RunwayImageToVideoOperator:
    return RunwayImageToVideoOperator(task_id="animate", prompt_image=IMAGE, prompt_text="A boat", **kwargs)


def floor_connection(monkeypatch, server, floor: float, **extra: Any) -> dict[str, Any]:
    quota = {
        "quota_url": f"{server.base_url}/user/quota",
        "quota_key": DEFAULT_QUOTA_KEY,
        "min_remaining_quota": floor,
        **extra,
    }
    return set_connection(monkeypatch, server, password=TEST_API_KEY, extra=quota)


@pytest.mark.parametrize("operator", [generate, image_to_video], ids=["reverse", "official"])
def test_below_the_floor_nothing_is_sent_and_no_marker_is_left(monkeypatch, server, emulator, operator):
    emulator.remaining_quota = 40_000
    floor_connection(monkeypatch, server, 50_000)
    store = JournalingStore()
    with pytest.raises(RunwayBalanceFloorError) as caught:
        operator().execute(new_try(store, max_tries=2))
    assert isinstance(caught.value, AirflowFailException)  # not retried: the balance does not rise by itself
    assert not isinstance(
        caught.value, RunwayBalanceExhaustedError
    )  # the provider's guard, not the service's
    message = str(caught.value)
    assert "40000" in message and "50000" in message and "min_remaining_quota" in message
    assert "https://www.cometapi.com/" in message and "Nothing was sent" in message
    assert DEFAULT_QUOTA_KEY not in message and TEST_API_KEY not in message
    assert (caught.value.floor, caught.value.remaining) == (50_000, 40_000)
    assert emulator.create_requests() == [] and store.journal == [] and store.values == {}
    assert [query["authorized"] for query in emulator.quota_queries()] == [True]


@pytest.mark.parametrize("operator", [generate, image_to_video], ids=["reverse", "official"])
def test_above_the_floor_the_create_is_sent(monkeypatch, server, emulator, operator, capsys):
    emulator.remaining_quota = 60_000
    floor_connection(monkeypatch, server, 50_000)
    runway_task_id = operator().execute(new_try(MemoryTaskStateStore()))
    assert list(emulator.jobs) == [runway_task_id]
    assert len(emulator.quota_queries()) == 1 and len(emulator.create_requests()) == 1
    out = capsys.readouterr().out
    assert "Remaining quota 60000 is above the floor of 50000" in out and DEFAULT_QUOTA_KEY not in out


def test_at_the_floor_exactly_the_create_is_sent(monkeypatch, server, emulator):
    emulator.remaining_quota = 50_000
    floor_connection(monkeypatch, server, 50_000)
    generate().execute(new_try(MemoryTaskStateStore()))
    assert len(emulator.submissions()) == 1


def test_a_topped_up_balance_lets_the_next_try_submit(monkeypatch, server, emulator):
    emulator.remaining_quota = 10
    floor_connection(monkeypatch, server, 100)
    store = MemoryTaskStateStore()
    with pytest.raises(RunwayBalanceFloorError):
        generate().execute(new_try(store, max_tries=1))
    emulator.remaining_quota = 1_000
    runway_task_id = generate().execute(new_try(store, try_number=2, max_tries=1))
    assert list(emulator.jobs) == [runway_task_id]


def test_a_reconnect_reads_no_balance(monkeypatch, server, emulator):
    floor_connection(monkeypatch, server, 100)
    store = MemoryTaskStateStore()
    first = generate().execute(new_try(store, max_tries=1))
    emulator.remaining_quota = 0  # the next try sends nothing, so the floor has nothing to guard
    assert generate().execute(new_try(store, try_number=2, max_tries=1)) == first
    assert len(emulator.quota_queries()) == 1 and len(emulator.submissions()) == 1


@pytest.mark.parametrize(
    "quota_url",
    ["closed port", "wrong key", "no balance in the answer"],
)
def test_an_unreadable_balance_lets_the_create_go_with_one_warning(
    monkeypatch, server, emulator, capsys, quota_url
):
    extra: dict[str, Any] = {}
    if quota_url == "closed port":
        extra["quota_url"] = f"http://127.0.0.1:{free_port()}/user/quota"
    elif quota_url == "wrong key":
        extra["quota_key"] = "not-the-quota-key-123"
    else:
        extra["quota_url"] = f"{server.base_url}/_emulator/stats"
    floor_connection(monkeypatch, server, 100, **extra)
    generate().execute(new_try(MemoryTaskStateStore()))
    assert len(emulator.submissions()) == 1
    out = capsys.readouterr().out
    # Airflow's own: an operator run outside its task runner; a connection read with no Fernet key (3.0).
    airflows = ("outside of the Task Runner", "empty cryptography key")
    warnings = [line for line in warning_lines(out) if not any(text in line for text in airflows)]
    assert len(warnings) == 1 and "Could not read the remaining quota" in warnings[0]
    assert "not-the-quota-key-123" not in out and DEFAULT_QUOTA_KEY not in out


def test_without_a_floor_no_balance_is_read(runway_conn, emulator):
    generate().execute(new_try(MemoryTaskStateStore()))
    assert emulator.quota_queries() == [] and len(emulator.submissions()) == 1


def test_the_hook_reads_the_balance_without_the_api_key(monkeypatch, server, emulator):
    floor_connection(monkeypatch, server, 1)
    emulator.remaining_quota = 1234.5
    assert RunwayHook().get_remaining_quota() == 1234.5
    assert emulator.quota_queries()[0]["runway_version"] is None  # no Runway headers, no Bearer key


@pytest.mark.parametrize(
    ("body", "remaining"),
    [
        ({"remain_quota": 10}, 10),
        ({"success": True, "data": {"remain_quota": "20.5"}}, 20.5),
        (
            {"total_quota": 100, "total_used_quota": 30, "keys": [{"remain_quota": 0}, {"remain_quota": 9}]},
            70,
        ),
        ({"data": {"keys": [{"remain_quota": 42, "used_quota": 1}]}}, 42),
    ],
)
def test_parse_quota_reads_the_documented_shapes(body, remaining):
    assert parse_quota(body, 200) == remaining


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"keys": [{"remain_quota": 1}, {"remain_quota": 2}]},
        {"remain_quota": True},
        {"data": "x"},
        "<html>",
    ],
)
def test_parse_quota_refuses_an_answer_without_one_balance(body):
    with pytest.raises(RunwayTransientError):
        parse_quota(body, 200)


def connection(monkeypatch, server, **extra: Any) -> None:
    set_connection(monkeypatch, server, password=TEST_API_KEY, extra=extra)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"min_remaining_quota": "lots", "quota_key": "k"}, "min_remaining_quota"),
        ({"min_remaining_quota": -1, "quota_key": "k"}, "min_remaining_quota"),
        ({"min_remaining_quota": 10}, "quota_key"),
        ({"quota_key": "a key with spaces"}, "quota_key"),
        ({"quota_url": "ftp://query.cometapi.com/user/quota"}, "quota_url"),
        ({"quota_url": "https://query.cometapi.com/user/quota?key=abc"}, "quota_url"),
    ],
)
def test_quota_extras_are_checked_naming_the_field_and_connection(monkeypatch, server, extra, named):
    connection(monkeypatch, server, **extra)
    with pytest.raises(RunwayConfigurationError) as caught:
        RunwayHook().settings  # noqa: B018
    assert f"`{named}`" in str(caught.value) and "'runway_default'" in str(caught.value)
    assert "a key with spaces" not in str(caught.value)


def test_quota_extras_default_to_cometapis_endpoint_and_no_floor(runway_conn):
    settings = RunwayHook().settings
    assert (settings.quota_url, settings.quota_key, settings.min_remaining_quota) == (
        DEFAULT_QUOTA_URL,
        None,
        None,
    )


def test_the_quota_key_is_masked_and_not_in_repr(monkeypatch, server):
    masked: list[str] = []
    monkeypatch.setattr("runway_provider.hooks.runway._mask", masked.append)
    connection(monkeypatch, server, quota_key="query-key-9876", min_remaining_quota=5)
    settings = RunwayHook().settings
    assert masked == [TEST_API_KEY, "query-key-9876"] and "query-key-9876" not in repr(settings)
    assert settings.min_remaining_quota == 5.0


def test_spend_table_names_the_floor():
    assert "RunwayBalanceFloorError" in (spend.__doc__ or "")
