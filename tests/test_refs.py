"""Where a Runway task lives, resolved once: the order of what knows its family, and how a Runway
operator upstream is recognised."""

from __future__ import annotations

import pendulum
import pytest
from airflow.sdk import DAG, BaseOperator

from runway_provider import refs
from runway_provider.exceptions import RunwayInputError
from runway_provider.models import OutputKind, RouteFamily
from runway_provider.operators.runway import RunwayGenerateOperator, RunwayImageToVideoOperator
from runway_provider.refs import TaskRef, Upstream
from runway_provider.sensors.runway import RunwayTaskSensor
from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator
from tests.helpers import RecordingTaskInstance

pytestmark = pytest.mark.unit

OFFICIAL, REVERSE = RouteFamily.OFFICIAL, RouteFamily.REVERSE
IMAGE = "https://example.com/first.jpg"


def dag() -> DAG:
    return DAG("refs", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), schedule=None)


@pytest.mark.parametrize(
    ("explicit", "own", "upstream", "pushed", "expected"),
    [
        (OFFICIAL, REVERSE, REVERSE, {"route_family": "reverse"}, OFFICIAL),  # the argument wins
        (None, OFFICIAL, REVERSE, {"route_family": "reverse"}, OFFICIAL),  # then the task itself
        (None, None, OFFICIAL, {"route_family": "reverse"}, OFFICIAL),  # then the operator, at parse
        (None, None, None, {"route_family": "official"}, OFFICIAL),  # then its recorded request
        (None, None, None, {"route_family": "v2"}, REVERSE),  # a family no release wrote is not read
        (None, None, None, None, REVERSE),  # else the family of tasks made before families existed
    ],
    ids=["explicit", "own", "upstream", "request", "unknown-name", "nothing"],
)
def test_the_family_comes_from_the_first_that_knows_it(explicit, own, upstream, pushed, expected):
    above = Upstream("animate", False, upstream) if upstream is not None else None
    ref = refs.resolve("t-1", explicit=explicit, own=own, upstream=above, request=pushed)
    assert ref == TaskRef("t-1", expected)


@pytest.mark.parametrize("value", ["v2", "", None, "OFFICIAL"])
def test_a_route_family_argument_is_one_of_two_names(value):
    with pytest.raises(RunwayInputError) as caught:
        refs.checked_family(value)
    assert str(caught.value) == f"Invalid `route_family`: expected one of reverse, official, got {value!r}"
    assert refs.checked_family("official") is OFFICIAL
    assert refs.checked_family(REVERSE) is REVERSE


def test_an_operators_output_names_it_and_its_family_when_the_dag_is_parsed():
    with dag():
        animate = RunwayImageToVideoOperator(task_id="animate", prompt_image=IMAGE)
        mapped = RunwayGenerateOperator.partial(task_id="generate", image=IMAGE).expand(prompt=["a", "b"])
    assert Upstream.of(animate.output) == Upstream("animate", False, OFFICIAL, OutputKind.VIDEO)
    assert Upstream.of(mapped.output) == Upstream("generate", True, REVERSE, OutputKind.VIDEO)
    assert Upstream.of("{{ ti.xcom_pull('animate') }}") is None


def test_a_runway_task_upstream_is_known_by_what_it_declares_not_by_its_class():
    class PushesTheRequest(BaseOperator):
        # Any operator that pushes XCom runway_request says so; it need not be one of ours.
        pushes_runway_request = True

    with dag():
        source = PushesTheRequest(task_id="source")
        plain = BaseOperator(task_id="plain")
        store = RunwayToObjectStorageOperator(task_id="store", runway_task="t-1", destination="/tmp/x/")
        wait = RunwayTaskSensor(task_id="wait", runway_task_id="t-1")
        [source, plain] >> store
        plain >> wait
    assert Upstream.above(store) == Upstream("source", False)
    assert Upstream.above(wait) is None  # only a plain operator upstream
    assert RunwayTaskSensor.pushes_runway_request and RunwayGenerateOperator.pushes_runway_request


def test_the_upstream_request_is_read_for_the_same_map_index():
    ti = RecordingTaskInstance(map_index=2)
    pulled: list[object] = []
    ti.xcom_pull = lambda task_ids, key, map_indexes=None: pulled.append((task_ids, key, map_indexes))  # type: ignore[method-assign]
    Upstream("generate", True).pull_request({"ti": ti})
    Upstream("animate", False).pull_request({"ti": ti})
    assert pulled == [("generate", "runway_request", 2), ("animate", "runway_request", None)]


def test_a_sensor_and_a_transfer_keep_the_argument_as_given_and_resolve_when_they_run():
    with dag():
        animate = RunwayImageToVideoOperator(task_id="animate", prompt_image=IMAGE)
        wait = RunwayTaskSensor(task_id="wait", runway_task_id=animate.output)
        store = RunwayToObjectStorageOperator(task_id="store", runway_task=wait.output, destination="/tmp/x/")
    # Nothing is guessed at parse and nothing is rewritten at run time: the argument stays None.
    assert wait.route_family is None and store.route_family is None
    assert wait._upstream == Upstream("animate", False, OFFICIAL, OutputKind.VIDEO)
    assert store._upstream == Upstream("wait", False)
