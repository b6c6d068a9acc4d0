"""The route table is the one declaration of a route: the hook, the operators and the tests follow it."""

from __future__ import annotations

import inspect

import pytest

from runway_provider import routes
from runway_provider.exceptions import RunwayInputError
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily
from runway_provider.operators import runway as operators
from runway_provider.routes import ROUTES, OutputKind
from tests.test_behaviour import SUBMIT_CASES


def test_every_route_has_a_typed_hook_method_with_its_builders_signature():
    hook = RunwayHook()
    for route in ROUTES:
        method = getattr(hook, f"submit_{route.name}")
        assert inspect.signature(method).parameters == inspect.signature(route.build).parameters
        assert route.path in (method.__doc__ or "")
    submit_methods = {name for name in dir(RunwayHook) if name.startswith("submit_")}
    assert submit_methods == {f"submit_{route.name}" for route in ROUTES}


def test_every_route_is_posted_by_a_test_and_declared_by_one_operator():
    assert {method for method, *_ in SUBMIT_CASES} == {f"submit_{route.name}" for route in ROUTES}
    assert {path for _, _, path, _ in SUBMIT_CASES} == {route.path for route in ROUTES}
    declared = [
        cls.route
        for cls in vars(operators).values()
        if inspect.isclass(cls)
        and issubclass(cls, operators.BaseRunwaySubmitOperator)
        and "route" in vars(cls)
    ]
    assert sorted(route.name for route in declared) == sorted(route.name for route in ROUTES)


def test_an_operator_holds_every_field_its_builder_takes_and_templates_only_those():
    for cls in vars(operators).values():
        if (
            inspect.isclass(cls)
            and issubclass(cls, operators.BaseRunwaySubmitOperator)
            and "route" in vars(cls)
        ):
            fields = set(inspect.signature(cls.route.build).parameters)
            assert fields <= set(inspect.signature(cls.__init__).parameters), cls.__name__
            assert set(cls.template_fields) - {"reuse_from"} <= fields, cls.__name__


def test_the_family_decides_the_lookup_and_the_output_kind_is_declared():
    assert routes.task_request("a/b", RouteFamily.OFFICIAL) == ("GET", "/runwayml/v1/tasks/a%2Fb", None)
    assert routes.task_request("a/b", RouteFamily.REVERSE) == ("POST", "/runway/feed", {"task_id": "a/b"})
    assert {route.name for route in ROUTES if route.output is OutputKind.IMAGE} == {"text_to_image"}
    assert {route.name for route in ROUTES if route.needs_callback} == {
        "generate",
        "reverse_video_to_video",
        "act_one",
    }


@pytest.mark.parametrize("value", ["v2", "", None, "OFFICIAL"])
def test_a_route_family_is_one_of_two_names(value):
    with pytest.raises(RunwayInputError, match=r"route_family.*expected one of reverse, official"):
        routes.route_family(value)
    assert routes.route_family("official") is RouteFamily.OFFICIAL


def test_a_reverse_builder_refuses_a_body_without_a_webhook():
    with pytest.raises(RunwayInputError, match="callback_url"):
        routes.act_one(video="https://example.com/v.mp4", image="https://example.com/i.png")
