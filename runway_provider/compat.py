"""What the provider takes from newer Airflow releases, and what it does on older ones instead.

Every difference between the supported Airflow releases lives here, so the rest of the provider
reads as if on one release:

* :func:`state_store`: Airflow 3.3's ``task_state_store`` keeps the submission record
  (:mod:`runway_provider.spend`). Before 3.3 the record goes to an Airflow Variable under a key of
  its own for the task instance and map index (:class:`VariableStateStore`): the same record, the
  same failure table.
* :func:`aget_connection`: the Task SDK's ``BaseHook.aget_connection`` (Airflow 3.1+) reads a
  connection without blocking the triggerer's event loop. On Airflow 3.0 the synchronous read runs
  in a thread through ``asgiref``'s ``sync_to_async``, which is how 3.0 lets Task SDK calls out of
  a trigger.
* :func:`triggerer_calls_on_kill`: Airflow 3.3's triggerer calls a trigger's ``on_kill`` when a user
  stops a deferred task. Before 3.3 it never does: a deferred wait is not cancelled on a kill (docs/reliability.md).
* The names the provider imports from the Task SDK (``airflow.sdk``) that Airflow 3.0 and 3.1 still
  kept in Airflow core: the hook base class, the exceptions the task runner acts on and ``conf``;
  and :func:`mask_secret`. Only their home moved; each is imported from the Task SDK where it exists.
* :func:`first_reschedule_date` and :func:`with_first_reschedule_date`: when a rescheduled sensor
  first poked. Airflow 3.0's Task SDK hands it over as the API's ISO text rather than a datetime,
  which also breaks 3.0's own ``BaseSensorOperator`` in reschedule mode.
* :func:`storage_path` and :func:`path_conn_id`: an ``ObjectStoragePath``'s connection, which
  Airflow 3.0 keeps only in its storage options and drops for an explicit ``conn_id=None``.

DAG files import this module through the operators: it imports nothing that ``import airflow.sdk``
has not (the trigger base class and the secrets masker are imported where they are used).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow.sdk import BaseHook, Connection, ObjectStoragePath
    from airflow.sdk import exceptions as _exceptions
    from airflow.sdk.configuration import conf
else:
    # Each name from the Task SDK where this Airflow has it, else from Airflow core, where the task
    # runner of 3.0 and 3.1 raises and catches them. All of these are imported by ``import
    # airflow.sdk`` already, or cost well under a millisecond.
    from airflow.sdk import exceptions as _exceptions

    if not hasattr(_exceptions, "TaskDeferralTimeout"):  # Airflow 3.0-3.1
        from airflow import exceptions as _exceptions
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.0-3.1
        from airflow.configuration import conf
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # Airflow 3.0
        from airflow.hooks.base import BaseHook

AirflowException = _exceptions.AirflowException
AirflowFailException = _exceptions.AirflowFailException
AirflowSensorTimeout = _exceptions.AirflowSensorTimeout
AirflowSkipException = _exceptions.AirflowSkipException
AirflowTaskTimeout = _exceptions.AirflowTaskTimeout
TaskDeferralTimeout = _exceptions.TaskDeferralTimeout

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "BaseHook",
    "StateStore",
    "TaskDeferralTimeout",
    "VariableStateStore",
    "aget_connection",
    "conf",
    "first_reschedule_date",
    "forget_command",
    "mask_secret",
    "path_conn_id",
    "state_store",
    "storage_path",
    "triggerer_calls_on_kill",
    "with_first_reschedule_date",
]
# The prefix of every Variable that holds a submission record (Airflow 3.0-3.2).
VARIABLE_PREFIX = "runway_submission:"


class StateStore(Protocol):
    """The part of Airflow 3.3's ``task_state_store`` the provider uses."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


class Variables(Protocol):
    """The part of ``airflow.sdk.Variable`` :class:`VariableStateStore` uses."""

    def get(self, key: str, default: Any = ..., deserialize_json: bool = False) -> Any: ...

    def set(
        self, key: str, value: Any, description: str | None = None, serialize_json: bool = False
    ) -> None: ...

    def delete(self, key: str) -> None: ...


class VariableStateStore:
    """A task instance's state store kept in Airflow Variables, for Airflow 3.0-3.2.

    Variables live in the metadata database, written through the Execution API, so a record
    outlives the worker, every retry and every clear of the task instance, like 3.3's
    ``task_state_store``. Each key of each task instance and map index gets a Variable of its own
    (:meth:`variable_key`); its description names the task instance, for whoever lists Variables.

    :param ti: The running task instance (``dag_id``, ``run_id``, ``task_id``, ``map_index``).
    :param variables: Where Variables are read and written; Airflow's ``airflow.sdk.Variable`` if None.
    """

    def __init__(self, ti: Any, variables: Variables | None = None) -> None:
        if variables is None:
            from airflow.sdk import Variable

            variables = Variable
        self._variables = variables
        self._scope = (ti.dag_id, ti.run_id, ti.task_id, _map_index(ti))

    def variable_key(self, key: str) -> str:
        """The Variable that holds ``key`` for this task instance and map index.

        A digest of the scope rather than the names themselves: a DAG, run and task id can each be
        250 characters long, Variable keys cannot be longer than 250, and a fixed alphabet keeps the
        key usable in a REST path.

        :param key: The state store key.
        """
        scope = json.dumps([*self._scope, key], separators=(",", ":"))
        return VARIABLE_PREFIX + hashlib.sha256(scope.encode()).hexdigest()

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``.

        :param key: The state store key.
        :param default: Returned when nothing is stored.
        """
        return self._variables.get(self.variable_key(key), default, deserialize_json=True)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON) under ``key``.

        :param key: The state store key.
        :param value: A JSON-serializable value.
        """
        dag_id, run_id, task_id, map_index = self._scope
        description = f"Runway {key} of DAG {dag_id}, run {run_id}, task {task_id}, map index {map_index}"
        self._variables.set(self.variable_key(key), value, description=description, serialize_json=True)

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when nothing is stored.

        :param key: The state store key.
        """
        self._variables.delete(self.variable_key(key))


def state_store(context: Mapping[str, Any]) -> StateStore:
    """The store that keeps a task instance's records across its tries and clears.

    :param context: The Airflow context of the try: ``task_state_store`` on Airflow 3.3, else ``ti``.
    """
    store = context.get("task_state_store")
    return store if store is not None else VariableStateStore(context["ti"])


def forget_command(context: Mapping[str, Any], key: str) -> str:
    """How a user deletes ``key`` of this task instance's store (to pay again deliberately).

    :param context: The Airflow context of the try.
    :param key: The state store key.
    """
    store = state_store(context)
    if isinstance(store, VariableStateStore):
        return f"airflow variables delete {store.variable_key(key)}"
    ti = context["ti"]
    return (
        f"DELETE /api/v2/dags/{getattr(ti, 'dag_id', '<dag_id>')}/dagRuns/{getattr(ti, 'run_id', '<run_id>')}"
        f"/taskInstances/{getattr(ti, 'task_id', '<task_id>')}/state-store/{key}"
        f"?map_index={_map_index(ti)} on Airflow's REST API"
    )


async def aget_connection(hook: Any, conn_id: str) -> Connection:
    """Read a connection from a trigger's event loop without blocking it.

    :param hook: The hook (or its class) whose ``aget_connection`` or ``get_connection`` reads it.
    :param conn_id: The connection id.
    """
    reader = getattr(hook, "aget_connection", None)
    if reader is not None:
        connection: Connection = await reader(conn_id)
        return connection
    # Airflow 3.0: the Task SDK's synchronous read sends its request to the triggerer's
    # supervisor on the event loop; sync_to_async runs it in a thread that hands that request back
    # to the loop (a plain thread, or the loop itself, cannot).
    from asgiref.sync import sync_to_async

    read: Connection = await sync_to_async(hook.get_connection)(conn_id)
    return read


def first_reschedule_date(context: Mapping[str, Any]) -> datetime | None:
    """When this task instance's first try began, if it has been rescheduled since; None if not.

    Airflow 3.0's ``get_first_reschedule_date`` returns the Execution API's JSON text: its client
    builds the answer with ``model_construct``, which skips the conversion to a datetime
    (``airflow/sdk/api/client.py``, ``get_reschedule_start_date``); 3.1 returns a datetime.

    :param context: The Airflow context of the try.
    """
    first: datetime | str | None = context["ti"].get_first_reschedule_date(context)
    if isinstance(first, str):
        return datetime.fromisoformat(first.replace("Z", "+00:00"))
    return first


def with_first_reschedule_date(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context of a sensor's try in reschedule mode, its ``ti`` answering
    ``get_first_reschedule_date`` with a datetime, asked of Airflow once.

    Airflow 3.0's ``BaseSensorOperator.execute`` subtracts that answer from a datetime to decide its
    timeout (``airflow/sdk/bases/sensor.py:194`` in 3.0.6): given the text, every rescheduled sensor
    whose second poke finds it not done yet fails with a ``TypeError``.

    :param context: The Airflow context of the try.
    """
    return {**context, "ti": _FirstRescheduleDate(context["ti"], first_reschedule_date(context))}


class _FirstRescheduleDate:
    """A task instance whose first reschedule date is already known; the rest is the task instance's."""

    def __init__(self, ti: Any, first: datetime | None) -> None:
        self._ti = ti
        self._first = first

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self._first

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)


def storage_path(uri: str, conn_id: str | None) -> ObjectStoragePath:
    """``ObjectStoragePath(uri, conn_id=conn_id)``, where no ``conn_id`` keeps the one in the URI.

    Airflow 3.0 takes an explicit ``conn_id=None`` over the URI's own (``s3://conn@bucket/``), and
    then reaches the store without credentials or endpoint.

    :param uri: The path or URI.
    :param conn_id: The connection to reach it with; None for the URI's, or none.
    """
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri) if conn_id is None else ObjectStoragePath(uri, conn_id=conn_id)


def path_conn_id(path: ObjectStoragePath) -> str | None:
    """The connection an ``ObjectStoragePath`` reaches its store with (Airflow 3.0 has no ``conn_id``).

    :param path: The path.
    """
    conn_id = getattr(path, "conn_id", None)
    if conn_id is None:
        conn_id = path.storage_options.get("conn_id")
    return None if conn_id is None else str(conn_id)


def mask_secret(secret: str) -> None:
    """Hide ``secret`` in every log line and rendered field (``airflow.sdk.log.mask_secret``).

    :param secret: The value to redact.
    """
    from airflow.sdk.log import mask_secret as mask

    mask(secret)


def triggerer_calls_on_kill() -> bool:
    """Whether this Airflow's triggerer calls a trigger's ``on_kill`` when a user stops its task.

    Airflow 3.3 defines ``BaseTrigger.on_kill`` and calls it; the triggerers of 3.0-3.2 never do.
    """
    from airflow.triggers.base import BaseTrigger

    return hasattr(BaseTrigger, "on_kill")


def _map_index(ti: Any) -> int:
    map_index = getattr(ti, "map_index", None)
    return -1 if map_index is None else int(map_index)
