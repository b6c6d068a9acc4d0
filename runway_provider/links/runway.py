"""The "Runway video" link shown on the generate operator's and the sensor's task pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

# The generate operator pushes the finished task under this key; the sensor returns it.
_TASK_XCOM_KEYS = ("runway_task", "return_value")


class RunwayVideoLink(BaseOperatorLink):
    """Links a finished task instance to its generated video (empty until the video exists)."""

    name = "Runway video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.bases.xcom import BaseXCom

        for key in _TASK_XCOM_KEYS:
            # Airflow's own TaskInstanceKey and TIKeyProtocol disagree on attribute mutability.
            value: Any = BaseXCom.get_value(ti_key=ti_key, key=key)  # type: ignore[arg-type]
            if isinstance(value, dict) and value.get("video_url"):
                return str(value["video_url"])
        return ""
