"""The compatibility layer: the submission record in Airflow Variables before Airflow 3.3."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from runway_provider import compat
from runway_provider.exceptions import RunwaySubmissionUncertainError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.spend import STATE_KEY
from tests.helpers import (
    TEST_API_KEY,
    MemoryTaskStateStore,
    RecordingTaskInstance,
    dag_bag,
    job_options,
    make_trigger,
)

pytestmark = pytest.mark.unit

NOT_SET = object()


class MemoryVariables:
    """``airflow.sdk.Variable``'s get/set/delete over a dict of JSON strings, as the metadata database keeps them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.descriptions: dict[str, str | None] = {}

    def get(self, key: str, default: Any = NOT_SET, deserialize_json: bool = False) -> Any:
        if key not in self.values:
            if default is NOT_SET:
                raise KeyError(key)
            return default
        return json.loads(self.values[key]) if deserialize_json else self.values[key]

    def set(self, key: str, value: Any, description: str | None = None, serialize_json: bool = False) -> None:
        assert len(key) <= 250  # Airflow's Variable.key column
        self.values[key] = json.dumps(value) if serialize_json else str(value)
        self.descriptions[key] = description

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def test_a_record_written_by_one_try_is_read_by_the_next():
    variables = MemoryVariables()
    first = compat.VariableStateStore(RecordingTaskInstance(try_number=1), variables)
    first.set(STATE_KEY, {"phase": "submitted", "runway_task_id": "abc"})
    second = compat.VariableStateStore(RecordingTaskInstance(try_number=2), variables)
    assert second.get(STATE_KEY) == {"phase": "submitted", "runway_task_id": "abc"}
    second.delete(STATE_KEY)
    assert first.get(STATE_KEY, "gone") == "gone"
    assert variables.values == {}


def test_each_map_index_and_task_instance_has_its_own_record():
    variables = MemoryVariables()
    compat.VariableStateStore(RecordingTaskInstance(map_index=0), variables).set(STATE_KEY, {"id": 0})
    compat.VariableStateStore(RecordingTaskInstance(map_index=1), variables).set(STATE_KEY, {"id": 1})
    other_run = RecordingTaskInstance(map_index=0)
    other_run.run_id = "another"
    assert compat.VariableStateStore(other_run, variables).get(STATE_KEY) is None
    assert compat.VariableStateStore(RecordingTaskInstance(map_index=1), variables).get(STATE_KEY) == {
        "id": 1
    }
    assert compat.VariableStateStore(RecordingTaskInstance(), variables).get(STATE_KEY) is None
    assert len(variables.values) == 2


def test_the_variable_key_fits_airflow_and_its_description_names_the_task_instance():
    ti = RecordingTaskInstance(map_index=7)
    ti.dag_id, ti.run_id, ti.task_id = "d" * 250, "r" * 250, "t" * 250
    variables = MemoryVariables()
    store = compat.VariableStateStore(ti, variables)
    store.set(STATE_KEY, {"phase": "submitting"})
    [key] = variables.values
    assert key == store.variable_key(STATE_KEY) and key.startswith("runway_submission:") and len(key) <= 250
    assert (
        variables.descriptions[key]
        == f"Runway runway_submission of DAG {ti.dag_id}, run {ti.run_id}, task {ti.task_id}, map index 7"
    )


def test_airflow_3_3s_task_state_store_is_used_when_the_context_has_one():
    store = MemoryTaskStateStore()
    assert compat.state_store({"ti": RecordingTaskInstance(), "task_state_store": store}) is store
    assert isinstance(compat.state_store({"ti": RecordingTaskInstance()}), compat.VariableStateStore)


class RescheduledTaskInstance(RecordingTaskInstance):
    def __init__(self, first: Any) -> None:
        super().__init__()
        self.first = first

    def get_first_reschedule_date(self, context: Any) -> Any:
        return self.first


@pytest.mark.parametrize(
    "given",
    ["2026-12-04T18:05:58.597910Z", "2026-12-04T18:05:58.597910+00:00", "datetime"],
    ids=["3.0 text", "3.0 text with offset", "3.1 datetime"],
)
def test_a_rescheduled_sensors_first_poke_is_a_datetime_on_every_release(given):
    """Airflow 3.0's Task SDK hands the first reschedule date over as the API's JSON text."""
    import datetime

    expected = datetime.datetime(2026, 12, 4, 18, 5, 58, 597910, tzinfo=datetime.timezone.utc)
    ti = RescheduledTaskInstance(expected if given == "datetime" else given)
    assert compat.first_reschedule_date({"ti": ti}) == expected
    assert compat.first_reschedule_date({"ti": RescheduledTaskInstance(None)}) is None


def test_the_forget_command_names_the_store_that_holds_the_record(monkeypatch):
    monkeypatch.setattr("airflow.sdk.Variable", MemoryVariables())
    ti = RecordingTaskInstance(map_index=2)
    key = compat.VariableStateStore(ti).variable_key(STATE_KEY)
    assert compat.forget_command({"ti": ti}, STATE_KEY) == f"airflow variables delete {key}"
    assert compat.forget_command({"ti": ti, "task_state_store": MemoryTaskStateStore()}, STATE_KEY) == (
        "DELETE /api/v2/dags/videos/dagRuns/nightly/taskInstances/generate/state-store/runway_submission"
        "?map_index=2 on Airflow's REST API"
    )


def test_the_money_promise_holds_with_the_record_in_variables(runway_conn, emulator, monkeypatch):
    """A lost answer is never sent again; an unchanged retry of a sent request reconnects; a changed
    request is sent anew: with the record in Variables, as on Airflow 3.0-3.2."""
    variables = MemoryVariables()
    monkeypatch.setattr("airflow.sdk.Variable", variables)

    def generate(prompt: str, **kwargs: Any) -> RunwayGenerateOperator:
        return RunwayGenerateOperator(
            task_id="generate", prompt=prompt, image="https://example.com/a.jpg", **kwargs
        )

    lost = job_options(create_faults=["502_after_create"])
    for try_number in (1, 2):
        with pytest.raises(
            RunwaySubmissionUncertainError, match="airflow variables delete runway_submission:"
        ):
            generate("a boat", options=lost).execute({"ti": RecordingTaskInstance(try_number=try_number)})
    assert len(emulator.create_requests()) == 1

    first = generate("a storm").execute({"ti": RecordingTaskInstance(try_number=3)})
    again = generate("a storm").execute({"ti": RecordingTaskInstance(try_number=4)})
    assert first == again and len(emulator.create_requests()) == 2


def test_a_trigger_reads_the_connection_through_the_compat_reader(runway_conn):
    """BaseHook.aget_connection where this Airflow has it (3.1+); the synchronous read in a thread on 3.0."""
    connection = asyncio.run(compat.aget_connection(RunwayHook, "runway_default"))
    assert connection.password == TEST_API_KEY


def test_a_hook_without_aget_connection_reads_in_a_thread_without_blocking_the_loop(runway_conn):
    """Airflow 3.0's path, on every release: a hook class with only the synchronous read."""
    reader_threads: list[int] = []

    def get_connection(conn_id: str) -> Any:
        reader_threads.append(threading.get_ident())
        return RunwayHook.get_connection(conn_id)

    old_hook = type("OldHook", (), {"get_connection": staticmethod(get_connection)})

    async def read() -> tuple[Any, int]:
        return await compat.aget_connection(old_hook, "runway_default"), threading.get_ident()

    connection, loop_thread = asyncio.run(read())
    assert connection.password == TEST_API_KEY
    assert len(reader_threads) == 1 and reader_threads[0] != loop_thread


def test_no_example_dag_breaks_the_dag_list(monkeypatch):
    """Every example parses without an import error on every supported Airflow. The review example
    needs the standard provider's human-in-the-loop operators (Airflow 3.1+): on 3.0 it defines no DAG."""
    try:
        from airflow.providers.standard.operators.hitl import HITLBranchOperator  # noqa: F401
    except Exception:
        hitl = False
    else:
        hitl = True
    examples = Path(__file__).resolve().parents[1] / "example_dags"
    expected = {path.stem for path in examples.glob("example_*.py")}
    if not hitl:
        expected.discard("example_runway_review")
    monkeypatch.syspath_prepend(str(examples))
    bag = dag_bag(examples)
    assert bag.import_errors == {}
    assert set(bag.dags) == expected and "example_runway_generate_and_sense" in expected


@pytest.mark.parametrize("calls_on_kill", [True, False])
def test_a_trigger_says_when_its_triggerer_will_never_cancel_on_a_kill(
    hook, monkeypatch, capsys, calls_on_kill
):
    """Airflow 3.0-3.2's triggerer never calls on_kill: the wait says so, and still ends normally."""
    monkeypatch.setattr(compat, "triggerer_calls_on_kill", lambda: calls_on_kill)
    runway_task_id = hook.submit_generate(prompt="A paper boat", image="https://example.com/a.jpg")

    async def events() -> list[dict[str, Any]]:
        return [event.payload async for event in make_trigger(runway_task_id, cancel_on_kill=True).run()]

    [event] = asyncio.run(events())
    assert event["status"] == "success"
    captured = capsys.readouterr()  # stdout on Airflow 3.1+, stderr on 3.0
    said = [line for line in (captured.out + captured.err).splitlines() if "trigger's on_kill" in line]
    assert len(said) == (0 if calls_on_kill else 1)
    assert calls_on_kill or runway_task_id in said[0]


def test_this_airflow_says_whether_its_triggerer_calls_on_kill():
    """The real answer of the installed Airflow: only 3.3's BaseTrigger has on_kill."""
    from airflow import __version__

    major_minor = tuple(int(part) for part in __version__.split(".")[:2])
    assert compat.triggerer_calls_on_kill() == (major_minor >= (3, 3))
