from __future__ import annotations

import time
from typing import Any

import pytest
from airflow.sdk import PokeReturnValue

from runway_provider.compat import AirflowSensorTimeout, AirflowSkipException
from runway_provider.exceptions import (
    RunwayAuthenticationError,
    RunwayError,
    RunwayTaskFailedError,
    RunwayTaskLostError,
)
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily
from runway_provider.refs import TaskRef
from runway_provider.sensors.runway import RunwayTaskSensor
from runway_provider.triggers.runway import RunwayTaskTrigger
from tests.helpers import RecordingTaskInstance, TaskDeferred, job_options, set_connection

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/first.jpg"


def submit(**scenario: Any) -> str:
    return RunwayHook().submit_generate(prompt="A paper boat", image=IMAGE, options=job_options(**scenario))


def sensor(runway_task_id: str, **kwargs: Any) -> RunwayTaskSensor:
    defaults: dict[str, Any] = {"task_id": "wait", "poll_interval": 0.1, "not_found_grace": 5, "timeout": 10}
    return RunwayTaskSensor(runway_task_id=runway_task_id, **{**defaults, **kwargs})


def test_deferrable_checks_once_then_defers(runway_conn, context, emulator):
    runway_task_id = submit()
    before = time.time()
    with pytest.raises(TaskDeferred) as caught:
        sensor(runway_task_id, deferrable=True, timeout=900).execute(context)
    assert isinstance(caught.value.trigger, RunwayTaskTrigger)
    _, kwargs = caught.value.trigger.serialize()
    assert kwargs["runway_task_id"] == runway_task_id
    assert kwargs["end_time"] == pytest.approx(before + 900, abs=5)
    assert len([r for r in emulator.requests if r["path"] == "/runway/feed"]) == 1


def test_deferrable_returns_at_once_for_a_finished_task(runway_conn, context):
    runway_task_id = submit(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    result = sensor(runway_task_id, deferrable=True).execute(context)
    assert result["runway_task_id"] == runway_task_id and result["video_url"].endswith(".mp4")


def test_poke_mode_waits_and_returns_the_task(runway_conn, context):
    runway_task_id = submit()
    result = sensor(runway_task_id, deferrable=False).execute(context)
    assert result["status"] == "SUCCEEDED"
    assert result["video_url"].endswith(f"{runway_task_id}.mp4")


def test_poke_is_false_until_done(runway_conn, context):
    runway_task_id = submit(running_seconds=60)
    op = sensor(runway_task_id)
    op._ref = TaskRef(runway_task_id, RouteFamily.REVERSE)
    op._watch = op.watch(op._ref, submitted_at=time.time(), end_time=time.time() + 10)
    assert op.poke(context) is False
    assert op._watch.last_task is not None and op._watch.last_task.runway_task_id == runway_task_id


def test_poke_returns_the_task_dict(runway_conn, context):
    runway_task_id = submit(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    op = sensor(runway_task_id)
    op._ref = TaskRef(runway_task_id, RouteFamily.REVERSE)
    op._watch = op.watch(op._ref, submitted_at=time.time(), end_time=time.time() + 10)
    result = op.poke(context)
    assert isinstance(result, PokeReturnValue) and result.is_done
    assert result.xcom_value["runway_task_id"] == runway_task_id


def test_poke_mode_raises_for_a_failed_generation(runway_conn, context):
    runway_task_id = submit(outcome="failed", failure="Bad frame", failure_code="INTERNAL.BAD_OUTPUT.CODE01")
    with pytest.raises(RunwayTaskFailedError, match="Bad frame") as caught:
        sensor(runway_task_id).execute(context)
    assert caught.value.runway_task_id == runway_task_id
    assert caught.value.failure_code == "INTERNAL.BAD_OUTPUT.CODE01"


def test_poke_mode_soft_fail_skips_a_failed_generation(runway_conn, context):
    runway_task_id = submit(outcome="cancelled")
    with pytest.raises(AirflowSkipException, match="cancelled"):
        sensor(runway_task_id, soft_fail=True).execute(context)


def test_poke_mode_lost_task(runway_conn, context):
    with pytest.raises(RunwayTaskLostError, match="ghost-task"):
        sensor("ghost-task", not_found_grace=0.3).execute(context)


def test_poke_mode_timeout_names_task_and_status(runway_conn, context):
    runway_task_id = submit(running_seconds=60)
    with pytest.raises(AirflowSensorTimeout) as caught:
        sensor(runway_task_id, timeout=0.8).execute(context)
    assert runway_task_id in str(caught.value) and "RUNNING" in str(caught.value)


@pytest.mark.usefixtures("quick_backoff")
def test_poke_mode_rides_out_transient_errors(runway_conn, context):
    runway_task_id = submit(feed_faults=["503"] * 4)
    assert sensor(runway_task_id).execute(context)["status"] == "SUCCEEDED"


def test_poke_mode_fails_fast_on_refused_key(monkeypatch, server, context):
    set_connection(monkeypatch, server, password="sk-wrong-key-000000")
    with pytest.raises(RunwayAuthenticationError):
        sensor("any-task").execute(context)


def test_execute_complete_success_returns_task_dict(context):
    event = {
        "status": "success",
        "runway_task_id": "t-1",
        "task": {
            "runway_task_id": "t-1",
            "status": "SUCCEEDED",
            "output_urls": ["https://cdn/v.mp4"],
            "route_family": "reverse",
        },
        "message": "done",
    }
    assert sensor("t-1").execute_complete(context, event)["video_url"] == "https://cdn/v.mp4"


def test_execute_complete_timeout_is_a_sensor_timeout(context):
    event = {"status": "timeout", "runway_task_id": "t-1", "task": None, "message": "t-1 did not finish"}
    with pytest.raises(AirflowSensorTimeout, match="t-1"):
        sensor("t-1").execute_complete(context, event)


@pytest.mark.parametrize(
    "event",
    [None, {"status": "success"}, {"status": "done", "runway_task_id": "t", "task": None, "message": ""}],
)
def test_execute_complete_rejects_anything_but_success(context, event):
    with pytest.raises(RunwayError) as caught:
        sensor("t-1").execute_complete(context, event)
    assert type(caught.value) is RunwayError  # neither a success nor a typed task outcome


def test_sensor_options_pass_through():
    op = sensor("t-1", mode="reschedule", soft_fail=True, poll_interval=7)
    assert op.mode == "reschedule" and op.soft_fail and op.poke_interval == 7
    assert op.template_fields == ("runway_task_id",)


class RescheduledTaskInstance(RecordingTaskInstance):
    """A second try in reschedule mode, whose first poke's time Airflow 3.0 hands over as text."""

    def __init__(self, first: Any) -> None:
        super().__init__()
        self.first = first
        self.asked = 0

    def get_first_reschedule_date(self, context: Any) -> Any:
        self.asked += 1
        return self.first


@pytest.mark.parametrize("given", ["text", "datetime"], ids=["3.0", "3.1+"])
def test_reschedule_mode_gives_its_slot_back_again_whatever_form_the_first_poke_comes_in(runway_conn, given):
    """Airflow 3.0's BaseSensorOperator subtracted the text from a datetime at the second poke."""
    import datetime

    from airflow.exceptions import AirflowRescheduleException

    first = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=2)
    ti = RescheduledTaskInstance(first.isoformat().replace("+00:00", "Z") if given == "text" else first)
    with pytest.raises(AirflowRescheduleException):
        sensor(submit(running_seconds=60), mode="reschedule").execute({"ti": ti})
    assert ti.asked == 1  # once for the sensor and Airflow's base class together
