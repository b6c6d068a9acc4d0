"""What the docstrings call templated is templated, and every template field exists on the instance.

Every operator, sensor and transfer class the package defines is found by walking its modules, so
a new class is checked without being listed here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from typing import Any

import pytest
from airflow.sdk import BaseOperator

import runway_provider.operators
import runway_provider.sensors
import runway_provider.transfers
from runway_provider import routes
from runway_provider.exceptions import RunwayInputError
from runway_provider.operators.runway import RunwayCharacterPerformanceOperator

pytestmark = pytest.mark.unit

# A ":param name: text" entry runs until the next field list entry or the end of the docstring.
_PARAM = re.compile(r":param (\w+):(.*?)(?=\n\s*:\w|\Z)", re.DOTALL)


def _classes() -> list[type[BaseOperator]]:
    found = []
    for package in (runway_provider.operators, runway_provider.sensors, runway_provider.transfers):
        for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            found += [
                cls
                for cls in vars(module).values()
                if inspect.isclass(cls)
                and issubclass(cls, BaseOperator)
                and cls.__module__ == module.__name__
            ]
    return found


CLASSES = _classes()
# The ones a DAG instantiates: a class other classes here derive from is a base, checked through them.
CONCRETE = [
    cls for cls in CLASSES if not any(other is not cls and issubclass(other, cls) for other in CLASSES)
]


def _templated_params(cls: type) -> set[str]:
    """Parameters the docstrings of the class and of its bases in this package call templated."""
    documented: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("runway_provider.") and klass.__doc__:
            documented.update(_PARAM.findall(klass.__doc__))
    return {name for name, text in documented.items() if "Templated" in text}


def _required_arguments(cls: type) -> dict[str, Any]:
    """A made-up value for every keyword the constructor requires: the template fields only need to exist."""
    # RunwaySubmitOperator reads its route family from the path's prefix when it is built.
    return {
        # A destination ends in "/" (a folder); a raw path names its family by its prefix.
        name: "/runway/made-up" if name == "path" else f"made-up-{name}/"
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is inspect.Parameter.empty
    }


def test_every_operator_sensor_and_transfer_is_found():
    names = {cls.__name__ for cls in CLASSES}
    assert {
        "BaseRunwaySubmitOperator",
        "RunwayGenerateOperator",
        "RunwayCharacterPerformanceOperator",
        "RunwayTaskSensor",
        "RunwayToObjectStorageOperator",
    } <= names
    # One submit operator per create route, RunwaySubmitOperator for any path, the sensor and the transfer.
    assert len(CONCRETE) == len(routes.ROUTES) + 3


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_what_the_docstring_calls_templated_is_a_template_field_and_the_reverse(cls):
    templated = _templated_params(cls)
    assert templated, f"{cls.__name__} documents no templated parameter"
    assert templated - set(cls.template_fields) == set(), "documented as templated, not in template_fields"
    assert set(cls.template_fields) - templated == set(), "in template_fields, not documented as templated"


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda cls: cls.__name__)
def test_every_template_field_is_an_attribute_the_constructor_sets(cls):
    instance = cls(task_id="t", **_required_arguments(cls))
    # Set on the instance, not a class attribute or a property: Airflow renders what __init__ stored.
    missing = [name for name in cls.template_fields if name not in vars(instance)]
    assert missing == []
    assert len(set(cls.template_fields)) == len(cls.template_fields), "a template field is listed twice"


def test_a_rendered_body_control_is_read_as_true_or_false():
    # A templated bool renders to its text ("True") unless the DAG renders native objects.
    operator = RunwayCharacterPerformanceOperator(
        task_id="act_two",
        character="https://example.com/face.png",
        reference_video="https://example.com/dance.mp4",
        body_control="{{ params.body }}",
    )
    operator.render_template_fields({"params": {"body": True}})
    assert operator.body_control == "True"
    body = routes.character_performance(
        character=operator.character,
        reference_video=operator.reference_video,
        body_control=operator.body_control,
    )
    assert body["bodyControl"] is True
    assert (
        routes.character_performance(
            character=operator.character, reference_video=operator.reference_video, body_control=" false "
        )["bodyControl"]
        is False
    )
    with pytest.raises(RunwayInputError, match=r"Invalid `body_control`: expected true or false, got 'yes'"):
        routes.character_performance(
            character=operator.character, reference_video=operator.reference_video, body_control="yes"
        )
