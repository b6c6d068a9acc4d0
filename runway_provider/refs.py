"""Where a Runway task lives, resolved once: its id and route family, and the XCom keys that carry them.

A Runway task is looked up on the route family that created it (reverse-format tasks through the
feed, official-format ones by id), and each family knows only its own tasks. The sensor and the
transfer are handed a task by id (``animate.output``, or a templated id) or as a task dict; which
family it belongs to is decided here, by :func:`resolve`, once per run, and everything downstream
(the hook, the trigger, spend, lineage) takes the resulting :class:`TaskRef`'s ``RouteFamily``.

Light on purpose: DAG files import it (through the sensor and the transfer) when they are parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runway_provider.exceptions import RunwayInputError
from runway_provider.models import OutputKind, RouteFamily

# The Runway task id a submit operator made (also its return value).
XCOM_RUNWAY_TASK_ID = "runway_task_id"
# When it was submitted, epoch seconds.
XCOM_SUBMITTED_AT = "runway_submitted_at"
# The request behind the task (records.RequestRecord): what the transfer records beside the file.
XCOM_RUNWAY_REQUEST = "runway_request"
# The latest known state of the task waited on, then the finished task (a RunwayTask dict).
XCOM_RUNWAY_TASK = "runway_task"
# The try that deferred: a resume Airflow 3.0 hands to a later try is not that try's own.
XCOM_DEFERRED_TRY = "runway_deferred_try"


@dataclass(frozen=True)
class TaskRef:
    """A Runway task and the route family that looks it up.

    :param runway_task_id: The task.
    :param family: ``reverse`` (created on ``/runway/pro/*``) or ``official`` (``/runwayml/v1/*``).
    """

    runway_task_id: str
    family: RouteFamily


@dataclass(frozen=True)
class Upstream:
    """The Runway operator (or sensor) a task's value comes from, as the DAG says when it is parsed.

    :param task_id: Its task id.
    :param is_mapped: Whether it is mapped (its XCom is read for the same map index).
    :param family: Its route's family, when its class declares a route.
    :param output: Whether its route makes a video or an image, when its class declares a route.
    """

    task_id: str
    is_mapped: bool
    family: RouteFamily | None = None
    output: OutputKind | None = None

    @classmethod
    def of(cls, value: Any) -> Upstream | None:
        """The operator whose output ``value`` is (an XComArg such as ``animate.output``); None otherwise.

        Its class knows its route, so ``RunwayTaskSensor(runway_task_id=animate.output)`` needs no
        ``route_family`` (mapped operators too).
        """
        operator = getattr(value, "operator", None)
        task_id = getattr(operator, "task_id", None)
        if not isinstance(task_id, str):
            return None
        # A mapped operator keeps its class apart; a plain one is its class.
        operator_class = getattr(operator, "operator_class", None)
        route = getattr(operator, "route", None) or getattr(operator_class, "route", None)
        family, output = getattr(route, "family", None), getattr(route, "output", None)
        return cls(
            task_id,
            _is_mapped(operator),
            family if isinstance(family, RouteFamily) else None,
            output if isinstance(output, OutputKind) else None,
        )

    @classmethod
    def above(cls, task: Any) -> Upstream | None:
        """The one Runway operator or sensor directly upstream of ``task``, if there is exactly one.

        A mapped task is built with its arguments already resolved, so the XComArg is gone by then;
        its upstream tasks still say where its Runway task came from. Runway operators are known by
        their declared ``pushes_runway_request``, not by their class.
        """
        if not task.has_dag():
            return None  # an operator run on its own has no upstream
        found = []
        for upstream in task.upstream_list:
            operator_class = getattr(upstream, "operator_class", None)
            declared = operator_class if isinstance(operator_class, type) else type(upstream)
            if getattr(declared, "pushes_runway_request", False):
                found.append(cls(upstream.task_id, _is_mapped(upstream)))
        return found[0] if len(found) == 1 else None

    def pull_request(self, context: Any) -> Any:
        """Its ``runway_request`` XCom for this map index."""
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return ti.xcom_pull(
            task_ids=self.task_id,
            key=XCOM_RUNWAY_REQUEST,
            map_indexes=map_index if self.is_mapped and map_index is not None and map_index >= 0 else None,
        )


def _is_mapped(operator: Any) -> bool:
    """Whether ``operator`` runs once per map index: mapped itself, or inside a mapped task group."""
    if getattr(operator, "is_mapped", False) is True:
        return True
    closest = getattr(operator, "get_closest_mapped_task_group", None)
    return callable(closest) and closest() is not None


def checked_family(value: RouteFamily | str, field: str = "route_family") -> RouteFamily:
    """The :class:`RouteFamily` a DAG author named, or a clear error naming ``field``."""
    try:
        return RouteFamily(value)
    except ValueError:
        known = ", ".join(family.value for family in RouteFamily)
        raise RunwayInputError(field, f"expected one of {known}, got {value!r}") from None


def recorded_family(record: Any) -> RouteFamily | None:
    """The route family written in a record (a ``runway_request`` XCom, a task dict); None when absent."""
    family = record.get("route_family") if isinstance(record, Mapping) else None
    try:
        return RouteFamily(family) if isinstance(family, str) else None
    except ValueError:
        return None


def resolve(
    runway_task_id: str,
    *,
    explicit: RouteFamily | None,
    own: RouteFamily | None = None,
    upstream: Upstream | None,
    request: Any,
) -> TaskRef:
    """The task's reference, its family taken from the first that knows it:

    1. ``explicit``: the ``route_family`` argument the DAG author gave;
    2. ``own``: what the task itself says (a task dict carries its family);
    3. the Runway operator whose output the id is, known when the DAG was parsed;
    4. the family that the Runway operator upstream recorded with its request (a templated id
       names no operator when the DAG is parsed);
    5. else ``reverse``: the family of every task made before families were recorded, and of
       the provider's first route.

    :param runway_task_id: The task.
    :param explicit: The argument, checked (:func:`checked_family`), or None.
    :param own: The family the task dict carries, or None.
    :param upstream: The Runway operator the value comes from, if the DAG says.
    :param request: The upstream's ``runway_request`` XCom, if any.
    """
    family = (
        explicit
        or own
        or (upstream.family if upstream is not None else None)
        or recorded_family(request)
        or RouteFamily.REVERSE
    )
    return TaskRef(runway_task_id, family)
