"""The "Runway video" link shown on the generate operator's and the sensor's task pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

# Where the task is, when the operator does not say (an operator this link was attached to by hand).
_TASK_XCOM_KEYS = ("runway_task", "return_value")


class RunwayVideoLink(BaseOperatorLink):
    """Links a finished task instance to its generated video (empty until the video exists)."""

    name = "Runway video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.bases.xcom import BaseXCom

        # Ask only for the key the operator writes: Airflow logs an error for every missing XCom,
        # and it resolves links on the worker at the end of every successful task.
        keys = getattr(operator, "runway_task_xcom_keys", _TASK_XCOM_KEYS)
        for key in keys:
            # Airflow's own TaskInstanceKey and TIKeyProtocol disagree on attribute mutability.
            value: Any = BaseXCom.get_value(ti_key=ti_key, key=key)  # type: ignore[arg-type]
            if isinstance(value, dict) and value.get("video_url"):
                return str(value["video_url"])
        return ""
