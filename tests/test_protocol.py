"""Tests of runway_provider.models: every known CometAPI answer shape, normalized.

The bodies are copied from /work/shared/reference/cometapi-runway-api.md (sections 3.1-3.5, 5.2, 8, 11);
where the reference shows "…" in an id or URL, a concrete value is filled in.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from runway_provider.compat import AirflowFailException
from runway_provider.exceptions import (
    RunwayApiError,
    RunwayAuthenticationError,
    RunwayBalanceExhaustedError,
    RunwayBusinessError,
    RunwayError,
    RunwayRateLimitError,
    RunwayRequestRefusedError,
    RunwaySubmissionUncertainError,
    RunwayTransientError,
)
from runway_provider.models import (
    NON_TERMINAL_STATUSES,
    TERMINAL_STATUSES,
    RouteFamily,
    RunwayTask,
    RunwayTaskStatus,
)
from runway_provider.protocol import (
    decode_body,
    is_retryable_answer,
    normalize_task,
    parse_submission,
    raise_for_error,
)

pytestmark = pytest.mark.unit

S = RunwayTaskStatus
TASK_ID = "3d957031-9a2a-45e2-9dc7-bc8513059c50"  # the id of the live-validated feed example (§3.2)
LEGACY_ID = "d51c94db-5d0c-4c4f-9f1a-2b8a1f6a7c11"
CREATED_AT = "2026-03-13T09:52:46+08:00"
RESULT_URL = "https://runwaycdn.cometapi.com/attachments/video/runway/20260313/3d957031.mp4"
OUTPUT_URL = "https://dnznrvs05pmza.cloudfront.net/3d957031/output.mp4?_jwt=eyJhbGciOiJIUzI1NiJ9"
LEGACY_VIDEO_URL = "https://runwaycdn.cometapi.com/attachments/video/runway/20241011/d51c94db.mp4"
_ABSENT = object()


# --- body builders --------------------------------------------------------------------------------


def nested_task(status: str, **fields: Any) -> dict[str, Any]:
    """Runway's own task object, as CometAPI nests it under ``data.data`` (§3.2, §5.2)."""
    return {"id": TASK_ID, "status": status, "createdAt": CREATED_AT, **fields}


def wrapper(
    status: str, *, progress: str = "0%", fail_reason: str = "", nested: Any = _ABSENT, **fields: Any
):
    """The current new-api feed wrapper (§3.2): ``code: "success"`` and the task under ``data``."""
    data: dict[str, Any] = {
        "task_id": TASK_ID,
        "action": "IMAGE_TO_VIDEO",
        "status": status,
        "fail_reason": fail_reason,
        "submit_time": 1773366766,
        "start_time": 0,
        "finish_time": 0,
        "progress": progress,
    }
    if nested is not _ABSENT:
        data["data"] = nested
    data.update(fields)
    return {"code": "success", "message": "", "data": data}


def legacy(status: str, *, state: str | None = None, video_url: str | None = None, msg: str | None = None):
    """The legacy numeric feed (§3.5): ``code: 200, msg: "成功"``, ``status`` "0".."3"."""
    data: dict[str, Any] = {
        "task_id": LEGACY_ID,
        "status": status,
        "prompt": "a cat",
        "prompt_en": "a little kitten.",
        "poster": "https://runwaycdn.cometapi.com/attachments/video/runway/20241011/d51c94db.png",
        "last_frame": "https://runwaycdn.cometapi.com/attachments/video/runway/20241011/d51c94db-last.png",
        "msg": msg,
        "point": "320",
        "refund": "0",
        "create_time": "1728622596",
        "update_time": "1728622955",
    }
    if state is not None:
        data["state"] = state
    if video_url is not None:
        data["video_url"] = video_url
    return {"code": 200, "msg": "成功", "data": data, "exec_time": 0.028943}


def official(status: str, **fields: Any) -> dict[str, Any]:
    """The plain official Runway task (§5.2), as ``GET /runwayml/v1/tasks/{id}`` may return it."""
    return {"id": TASK_ID, "status": status, "createdAt": "2026-03-13T01:52:46.000Z", **fields}


def error_envelope(message: str, code: str = "", type_: str = "comet_api_error") -> dict[str, Any]:
    """CometAPI's generic error envelope (§2)."""
    return {"error": {"message": message, "type": type_, "param": "", "code": code}}


def normalize(body: Any, http_status: int = 200, runway_task_id: str = TASK_ID) -> RunwayTask:
    return normalize_task(body, http_status, runway_task_id=runway_task_id, route_family=RouteFamily.REVERSE)


# --- 1. current wrapper (code: "success") ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "progress"),
    [
        pytest.param(wrapper("NOT_START", nested=None), S.PENDING, 0.0, id="NOT_START-0%"),
        pytest.param(wrapper("SUBMITTED", nested=nested_task("PENDING")), S.PENDING, 0.0, id="SUBMITTED"),
        pytest.param(
            wrapper("QUEUED", nested=nested_task("PENDING")), S.PENDING, 0.0, id="QUEUED-doc-example"
        ),
        pytest.param(
            wrapper("IN_PROGRESS", progress="37%", nested=nested_task("RUNNING", progress=0.37)),
            S.RUNNING,
            0.37,
            id="IN_PROGRESS-37%",
        ),
        pytest.param(
            wrapper("SUCCESS", progress="100%", result_url=RESULT_URL, nested=nested_task("SUCCEEDED")),
            S.SUCCEEDED,
            1.0,
            id="SUCCESS-100%",
        ),
        pytest.param(
            wrapper("FAILURE", progress="100%", fail_reason="upstream failed", nested=nested_task("FAILED")),
            S.FAILED,
            1.0,
            id="FAILURE",
        ),
        pytest.param(wrapper("UNKNOWN", progress="", nested=None), S.UNKNOWN, None, id="UNKNOWN-no-nested"),
    ],
)
def test_wrapper_status_and_progress(body, status, progress):
    task = normalize(body)
    assert task.status is status
    assert task.service_status == body["data"]["status"]
    assert task.progress == (pytest.approx(progress) if progress is not None else None)
    assert task.runway_task_id == TASK_ID
    assert task.visible is True
    assert task.is_terminal is (status in TERMINAL_STATUSES)


def test_wrapper_documented_queued_example_is_read_verbatim():
    body = {
        "code": "success",
        "message": "",
        "data": {
            "task_id": "3d957031-9a2a-45e2-9dc7-bc8513059c50",
            "action": "IMAGE_TO_VIDEO",
            "status": "QUEUED",
            "fail_reason": "",
            "submit_time": 1773366766,
            "start_time": 0,
            "finish_time": 0,
            "progress": "0%",
            "data": {
                "id": "3d957031-9a2a-45e2-9dc7-bc8513059c50",
                "status": "PENDING",
                "createdAt": CREATED_AT,
            },
        },
    }
    task = normalize(body, runway_task_id="asked-id")
    assert task.runway_task_id == TASK_ID  # the answer's own id wins over the one asked
    assert (task.status, task.progress, task.failure, task.output_urls) == (S.PENDING, 0.0, None, ())
    assert task.raw == body["data"]


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        pytest.param("0%", 0.0, id="0%"),
        pytest.param("37%", 0.37, id="37%"),
        pytest.param("100%", 1.0, id="100%"),
        pytest.param(" 42% ", 0.42, id="padded-42%"),
        pytest.param("1%", 0.01, id="1%"),
        pytest.param("0.5%", 0.005, id="half-a-percent"),
        pytest.param(40, 0.4, id="a-number-above-1-is-a-percent"),
        pytest.param(1.5, 0.015, id="1.5-is-a-percent"),
        pytest.param(1.0, 1.0, id="a-fraction-of-1-is-done"),
        pytest.param(0.25, 0.25, id="a-fraction"),
        pytest.param("120%", 1.0, id="over-100%-is-done"),
    ],
)
def test_wrapper_progress_percent_strings(progress, expected):
    task = normalize(wrapper("IN_PROGRESS", progress=progress, nested=nested_task("RUNNING")))
    assert task.progress == pytest.approx(expected)


@pytest.mark.parametrize(
    ("body", "urls"),
    [
        pytest.param(
            wrapper("SUCCESS", progress="100%", result_url=RESULT_URL, nested=nested_task("SUCCEEDED")),
            (RESULT_URL,),
            id="result_url",
        ),
        pytest.param(
            wrapper("SUCCESS", progress="100%", nested=nested_task("SUCCEEDED", output=[OUTPUT_URL])),
            (OUTPUT_URL,),
            id="nested-output-only",
        ),
        pytest.param(
            wrapper("SUCCESS", progress="100%", video_url=RESULT_URL, nested=nested_task("SUCCEEDED")),
            (RESULT_URL,),
            id="outer-video_url-only",
        ),
        pytest.param(
            wrapper("SUCCESS", progress="100%", nested=nested_task("SUCCEEDED", video_url=RESULT_URL)),
            (RESULT_URL,),
            id="nested-video_url-only",
        ),
        pytest.param(
            wrapper(
                "SUCCESS",
                progress="100%",
                result_url=RESULT_URL,
                nested=nested_task("SUCCEEDED", output=[OUTPUT_URL]),
            ),
            (RESULT_URL, OUTPUT_URL),
            id="result_url-before-nested-output",
        ),
    ],
)
def test_wrapper_success_output_urls(body, urls):
    task = normalize(body)
    assert task.status is S.SUCCEEDED
    assert task.output_urls == urls
    assert task.video_url == urls[0]
    assert task.failure is None
    assert task.failure_code is None


def test_wrapper_failure_with_fail_reason():
    body = wrapper(
        "FAILURE",
        progress="100%",
        fail_reason="Task failed: image could not be downloaded",
        nested=nested_task("FAILED"),
    )
    task = normalize(body)
    assert task.status is S.FAILED
    assert task.failure == "Task failed: image could not be downloaded"
    assert task.video_url is None


def test_wrapper_failure_with_nested_failure_and_code():
    body = wrapper(
        "FAILURE",
        progress="100%",
        nested=nested_task("FAILED", failure="Prompt flagged by moderation", failureCode="SAFETY.INPUT.TEXT"),
    )
    task = normalize(body)
    assert task.status is S.FAILED
    assert task.failure == "Prompt flagged by moderation"
    assert task.failure_code == "SAFETY.INPUT.TEXT"
    assert task.service_status == "FAILURE"


def test_wrapper_fail_reason_is_preferred_over_nested_failure():
    body = wrapper(
        "FAILURE",
        fail_reason="wrapper reason",
        nested=nested_task("FAILED", failure="runway reason", failureCode="INTERNAL.BAD_OUTPUT.CODE01"),
    )
    task = normalize(body)
    assert (task.failure, task.failure_code) == ("wrapper reason", "INTERNAL.BAD_OUTPUT.CODE01")


@pytest.mark.parametrize("nested_status", ["CANCELLED", "CANCELED"])
def test_wrapper_failure_over_nested_cancelled_is_cancelled(nested_status):
    task = normalize(wrapper("FAILURE", progress="100%", nested=nested_task(nested_status)))
    assert task.status is S.CANCELLED
    assert task.service_status == "FAILURE"
    assert task.is_terminal is True


def test_wrapper_unknown_falls_back_to_nested_running():
    task = normalize(wrapper("UNKNOWN", progress="", nested=nested_task("RUNNING", progress=0.5)))
    assert task.status is S.RUNNING
    assert task.service_status == "UNKNOWN"
    assert task.progress == pytest.approx(0.5)


@pytest.mark.parametrize(
    "nested",
    [
        pytest.param(None, id="nested-null"),
        pytest.param(nested_task("MODERATING"), id="nested-also-unrecognized"),
    ],
)
def test_wrapper_unrecognized_status_is_unknown_and_preserved(nested):
    task = normalize(wrapper("AWAITING_MODERATION", progress="", nested=nested))
    assert task.status is S.UNKNOWN
    assert task.service_status == "AWAITING_MODERATION"
    assert task.is_terminal is False


# --- 2. legacy numeric shape (code: 200, msg: "成功") -----------------------------------------------


def test_legacy_documented_example_is_succeeded_with_its_url():
    body = {
        "code": 200,
        "msg": "成功",
        "data": {
            "task_id": "…",
            "state": "succeeded",
            "status": "3",
            "prompt": "a cat",
            "prompt_en": "a little kitten.",
            "video_url": "https://runwaycdn.cometapi.com/…/x.mp4",
            "poster": "…png",
            "last_frame": "…png",
            "msg": None,
            "point": "320",
            "refund": "0",
            "create_time": "1728622596",
            "update_time": "1728622955",
        },
        "exec_time": 0.028943,
    }
    task = normalize(body)
    assert task.status is S.SUCCEEDED
    assert task.video_url == "https://runwaycdn.cometapi.com/…/x.mp4"
    assert task.output_urls == (
        "https://runwaycdn.cometapi.com/…/x.mp4",
    )  # poster/last_frame are not outputs
    assert task.failure is None


@pytest.mark.parametrize(
    ("body", "status", "video_url", "failure"),
    [
        pytest.param(legacy("0"), S.PENDING, None, None, id="0-pending"),
        pytest.param(legacy("1"), S.RUNNING, None, None, id="1-running"),
        pytest.param(
            legacy("2", msg="生成失败，已退款"), S.FAILED, None, "生成失败，已退款", id="2-no-url-failed"
        ),
        pytest.param(
            legacy("2", video_url=LEGACY_VIDEO_URL), S.SUCCEEDED, LEGACY_VIDEO_URL, None, id="2-url-ok"
        ),
        pytest.param(
            legacy("3", video_url=LEGACY_VIDEO_URL), S.SUCCEEDED, LEGACY_VIDEO_URL, None, id="3-url-ok"
        ),
        pytest.param(
            legacy("3", video_url=LEGACY_VIDEO_URL, msg="生成成功"),
            S.SUCCEEDED,
            LEGACY_VIDEO_URL,
            None,
            id="3-a-success-message-is-no-failure",
        ),
        pytest.param(
            legacy("1", msg="生成中"), S.RUNNING, None, None, id="1-a-progress-message-is-no-failure"
        ),
        pytest.param(
            legacy("3", state="failed", video_url=LEGACY_VIDEO_URL, msg="content rejected"),
            S.FAILED,
            LEGACY_VIDEO_URL,
            "content rejected",
            id="state-failed-beats-3",
        ),
        pytest.param(legacy("2", state="succeeded"), S.SUCCEEDED, None, None, id="state-succeeded-beats-2"),
        pytest.param(legacy("1", state="queued"), S.PENDING, None, None, id="state-queued-beats-1"),
    ],
)
def test_legacy_numeric_status(body, status, video_url, failure):
    task = normalize(body, runway_task_id="asked-id")
    assert task.status is status
    assert task.video_url == video_url
    assert task.failure == failure
    assert task.runway_task_id == LEGACY_ID
    assert task.service_status == body["data"]["status"]


# --- 3. plain official Runway task (§5.2) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "progress", "urls", "failure", "failure_code"),
    [
        pytest.param(official("PENDING"), S.PENDING, None, (), None, None, id="PENDING"),
        pytest.param(official("THROTTLED"), S.THROTTLED, None, (), None, None, id="THROTTLED"),
        pytest.param(official("RUNNING", progress=0.42), S.RUNNING, 0.42, (), None, None, id="RUNNING-0.42"),
        pytest.param(
            official("SUCCEEDED", output=[OUTPUT_URL]),
            S.SUCCEEDED,
            None,
            (OUTPUT_URL,),
            None,
            None,
            id="SUCCEEDED",
        ),
        pytest.param(
            official("FAILED", failure="human text", failureCode="SAFETY.INPUT.TEXT"),
            S.FAILED,
            None,
            (),
            "human text",
            "SAFETY.INPUT.TEXT",
            id="FAILED",
        ),
        pytest.param(official("CANCELLED"), S.CANCELLED, None, (), None, None, id="CANCELLED"),
    ],
)
def test_official_task(body, status, progress, urls, failure, failure_code):
    task = normalize(body, runway_task_id="asked-id")
    assert task.status is status
    assert task.service_status == body["status"]
    assert task.runway_task_id == TASK_ID
    assert task.progress == (pytest.approx(progress) if progress is not None else None)
    assert task.output_urls == urls
    assert (task.failure, task.failure_code) == (failure, failure_code)
    assert task.visible is True


# --- 4. task_not_exist -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "http_status"),
    [
        pytest.param(
            {"code": "task_not_exist", "message": "task_not_exist", "data": None}, 400, id="new-api-400"
        ),
        pytest.param(
            {"code": "task_not_exist", "message": "task_not_exist", "data": None}, 200, id="new-api-200"
        ),
        pytest.param(
            error_envelope("task_not_exist (request id: 20260313095246123456789abcdef)"),
            400,
            id="error-envelope",
        ),
        pytest.param("Bad Request: task_not_exist", 400, id="plain-text"),
    ],
)
def test_task_not_exist_is_not_visible_yet(body, http_status):
    task = normalize_task(body, http_status, runway_task_id="fresh-id-123", route_family=RouteFamily.OFFICIAL)
    assert task.visible is False
    assert task.status is S.PENDING
    assert task.runway_task_id == "fresh-id-123"
    assert task.service_status == "task_not_exist"
    # Like any task: it keeps the family it was looked up in and, for diagnostics, the answer.
    assert task.route_family is RouteFamily.OFFICIAL
    assert task.to_dict()["raw"] == (body if isinstance(body, dict) else None)
    assert task.is_terminal is False


# --- 5. errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http_status", "body", "error_class"),
    [
        pytest.param(
            401,
            error_envelope("Invalid token (request id: abc)", "invalid_api_key"),
            RunwayAuthenticationError,
            id="401",
        ),
        pytest.param(403, error_envelope("Forbidden (request id: abc)"), RunwayAuthenticationError, id="403"),
        pytest.param(
            429, error_envelope("当前分组上游负载已饱和，请稍后再试"), RunwayRateLimitError, id="429"
        ),
        pytest.param(500, error_envelope("internal error (request id: abc)"), RunwayTransientError, id="500"),
        pytest.param(502, error_envelope("bad gateway"), RunwayTransientError, id="502"),
        pytest.param(503, error_envelope("service unavailable"), RunwayTransientError, id="503"),
        pytest.param(504, error_envelope("gateway timeout"), RunwayTransientError, id="504"),
    ],
)
def test_http_errors_are_typed(http_status, body, error_class):
    with pytest.raises(RunwayApiError) as info:
        normalize(body, http_status)
    assert type(info.value) is error_class
    assert info.value.http_status == http_status
    assert info.value.runway_task_id == TASK_ID
    assert TASK_ID in str(info.value)
    assert body["error"]["message"] in str(info.value)


def test_500_invalid_request_is_not_transient():
    body = error_envelope("Invalid ratio 1:1 (request id: abc)", code="invalid_request")
    with pytest.raises(RunwayApiError) as info:
        normalize(body, 500)
    assert not isinstance(info.value, RunwayTransientError)
    assert (info.value.code, info.value.http_status, info.value.runway_task_id) == (
        "invalid_request",
        500,
        TASK_ID,
    )


def test_400_generic_error_is_api_error_with_service_message():
    body = error_envelope("prompt is required (request id: 2026031309524612)", code="invalid_request")
    with pytest.raises(RunwayApiError) as info:
        normalize(body, 400)
    assert not isinstance(info.value, (RunwayTransientError, RunwayAuthenticationError))
    assert "prompt is required (request id: 2026031309524612)" in str(info.value)
    assert info.value.runway_task_id == TASK_ID


def test_html_502_page_is_transient():
    page = (
        "<html><head><title>502 Bad Gateway</title></head>"
        "<body><center><h1>502 Bad Gateway</h1></center></body></html>"
    )
    body = decode_body(page)
    with pytest.raises(RunwayTransientError) as info:
        normalize(body, 502)
    assert info.value.http_status == 502
    assert info.value.runway_task_id == TASK_ID
    assert "502 Bad Gateway" in str(info.value)


def test_non_json_200_is_transient():
    with pytest.raises(RunwayTransientError) as info:
        normalize(decode_body('{"code": "success", "data": {"task_id": "3d95'), 200)
    assert info.value.http_status == 200
    assert info.value.runway_task_id == TASK_ID
    assert "non-JSON" in str(info.value)


def test_wrapper_with_null_data_is_transient():
    with pytest.raises(RunwayTransientError) as info:
        normalize({"code": "success", "message": "", "data": None}, 200)
    assert (info.value.runway_task_id, info.value.http_status) == (TASK_ID, 200)
    assert str(info.value) == (
        f"CometAPI's answer for Runway task {TASK_ID} has no task object: "
        '{"code": "success", "message": "", "data": null}'
    )


@pytest.mark.parametrize(("state", "status"), [("running", S.RUNNING), ("succeeded", S.SUCCEEDED)])
def test_a_task_without_a_status_is_read_by_its_legacy_state(state, status):
    body = {
        "code": 200,
        "msg": "成功",
        "data": {"task_id": LEGACY_ID, "state": state, "video_url": LEGACY_VIDEO_URL},
    }
    task = normalize(body)
    assert (task.status, task.service_status) == (status, state)


def test_an_unknown_nested_status_is_kept_when_the_wrapper_has_none():
    body = {"code": "success", "data": {"task_id": TASK_ID, "data": nested_task("AWAITING_MODERATION")}}
    task = normalize(body)
    assert (task.status, task.service_status) == (S.UNKNOWN, "AWAITING_MODERATION")


def test_an_output_url_with_an_upper_case_scheme_is_an_output():
    task = normalize(
        official("SUCCEEDED", output=["HTTPS://dnznrvs05pmza.cloudfront.net/3d957031/output.mp4"])
    )
    assert task.video_url == "HTTPS://dnznrvs05pmza.cloudfront.net/3d957031/output.mp4"


def test_a_task_keeps_the_route_family_it_was_looked_up_in():
    task = normalize_task(official("RUNNING"), 200, runway_task_id=TASK_ID, route_family=RouteFamily.OFFICIAL)
    assert task.route_family is RouteFamily.OFFICIAL and task.to_dict()["route_family"] == "official"


def test_a_wrapper_with_msg_but_no_code_is_read_through_its_data():
    body = {
        "msg": "success",
        "data": {"task_id": TASK_ID, "status": "FAILURE", "fail_reason": "Prompt flagged"},
    }
    task = normalize(body)
    assert (task.status, task.failure, task.service_status) == (S.FAILED, "Prompt flagged", "FAILURE")


def test_2xx_business_error_carries_its_code():
    body = {"code": "callback_url_empty", "msg": "callback_url_empty", "data": None}
    with pytest.raises(RunwayBusinessError) as info:
        normalize(body, 200)
    assert info.value.code == "callback_url_empty"
    assert info.value.http_status == 200
    assert info.value.runway_task_id == TASK_ID
    assert not isinstance(info.value, RunwayTransientError)


# --- 6. parse_submission ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {
                "code": 200,
                "msg": "success",
                "data": {"task_id": "196642a0-05e1-441a-981e-eb0c1f5d983b"},
                "exec_time": 0.1,
            },
            "196642a0-05e1-441a-981e-eb0c1f5d983b",
            id="documented-create",
        ),
        pytest.param(
            {
                "code": 200,
                "message": "",
                "msg": "success",
                "data": {"task_id": "196642a0-05e1-441a-981e-eb0c1f5d983b"},
            },
            "196642a0-05e1-441a-981e-eb0c1f5d983b",
            id="message-and-msg-variant",
        ),
        pytest.param(
            {"code": 200, "msg": "成功", "data": {"task_id": LEGACY_ID}}, LEGACY_ID, id="legacy-chinese-msg"
        ),
        pytest.param(
            {"id": "17f20503-6c24-4c16-946b-35dbbce2af2f"},
            "17f20503-6c24-4c16-946b-35dbbce2af2f",
            id="official-id",
        ),
        pytest.param({"code": "success", "data": {"id": TASK_ID}}, TASK_ID, id="data.id"),
        pytest.param({"taskId": TASK_ID}, TASK_ID, id="taskId"),
        pytest.param({"code": 200, "data": {"taskId": TASK_ID}}, TASK_ID, id="data.taskId"),
        pytest.param({"task_id": TASK_ID}, TASK_ID, id="task_id"),
    ],
)
def test_parse_submission_reads_the_task_id(body, expected):
    assert parse_submission(body, 200) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"code": 200, "msg": "success", "data": {}, "exec_time": 0.1}, id="empty-data"),
        pytest.param({"code": 200, "msg": "success", "data": None}, id="null-data"),
        pytest.param({"code": 200, "msg": "success", "data": {"task_id": "  "}}, id="blank-id"),
    ],
)
def test_parse_submission_without_id_is_uncertain(body):
    # The create was accepted: the generation may exist although its id did not come back.
    with pytest.raises(RunwaySubmissionUncertainError, match="without a task id"):
        parse_submission(body, 200)


def test_parse_submission_callback_url_empty_is_business_error():
    with pytest.raises(RunwayBusinessError) as info:
        parse_submission({"code": "callback_url_empty", "msg": "callback_url_empty", "data": None}, 200)
    assert info.value.code == "callback_url_empty"
    assert "callback_url_empty" in str(info.value)


def test_parse_submission_401_is_authentication_error():
    with pytest.raises(RunwayAuthenticationError) as info:
        parse_submission(error_envelope("Invalid token (request id: abc)"), 401)
    assert info.value.http_status == 401
    assert "Invalid token" in str(info.value)


# --- 7. decode_body --------------------------------------------------------------------------------


def test_decode_body_parses_json():
    text = '{"code": "success", "message": "", "data": {"task_id": "3d957031", "progress": "0%"}}'
    assert decode_body(text) == {
        "code": "success",
        "message": "",
        "data": {"task_id": "3d957031", "progress": "0%"},
    }


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("<html><body><h1>502 Bad Gateway</h1></body></html>", id="html"),
        pytest.param("", id="empty"),
        pytest.param("task_not_exist", id="plain-text"),
    ],
)
def test_decode_body_returns_non_json_text_unchanged(text):
    assert decode_body(text) == text


# --- 8. RunwayTask --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(
            normalize(
                wrapper(
                    "SUCCESS",
                    progress="100%",
                    result_url=RESULT_URL,
                    nested=nested_task("SUCCEEDED", output=[OUTPUT_URL]),
                )
            ),
            id="wrapper-success",
        ),
        pytest.param(
            normalize(
                wrapper("FAILURE", nested=nested_task("FAILED", failure="x", failureCode="SAFETY.INPUT.TEXT"))
            ),
            id="wrapper-failure",
        ),
        pytest.param(normalize(legacy("3", state="succeeded", video_url=LEGACY_VIDEO_URL)), id="legacy"),
        pytest.param(normalize(official("RUNNING", progress=0.42)), id="official-running"),
        pytest.param(
            normalize({"code": "task_not_exist", "message": "task_not_exist", "data": None}, 400),
            id="not-visible",
        ),
        pytest.param(normalize("task_not_exist", 400), id="not-visible-text"),
    ],
)
def test_task_dict_round_trip(task):
    as_dict = task.to_dict()
    decoded = json.loads(json.dumps(as_dict))
    assert decoded == as_dict
    assert as_dict["status"] == task.status.value
    assert as_dict["video_url"] == task.video_url
    restored = RunwayTask.from_dict(decoded)
    assert restored == task
    assert restored.output_urls == task.output_urls
    assert restored.visible is task.visible


def test_video_url_is_first_output_url():
    task = RunwayTask(
        TASK_ID, S.SUCCEEDED, output_urls=(OUTPUT_URL, RESULT_URL), route_family=RouteFamily.REVERSE
    )
    assert task.video_url == OUTPUT_URL
    assert RunwayTask(TASK_ID, S.SUCCEEDED, route_family=RouteFamily.REVERSE).video_url is None


def test_non_http_output_entries_are_ignored():
    nested = nested_task(
        "SUCCEEDED", output=["runway://assets/abc", "", None, 42, {"url": OUTPUT_URL}, OUTPUT_URL]
    )
    task = normalize(wrapper("SUCCESS", progress="100%", result_url="ftp://example.com/x.mp4", nested=nested))
    assert task.output_urls == (OUTPUT_URL,)
    assert task.video_url == OUTPUT_URL


# CometAPI's gateway (new-api) refuses an account that cannot pay with this answer, before forwarding.
SPENT_BALANCE = error_envelope("user quota is not enough (request id: abc)", "insufficient_user_quota")


@pytest.mark.parametrize(
    ("http_status", "body", "error_class", "retryable"),
    [
        pytest.param(
            403, SPENT_BALANCE, RunwayBalanceExhaustedError, False, id="403-insufficient_user_quota"
        ),
        pytest.param(
            403,
            error_envelope("token quota is not enough", "pre_consume_token_quota_failed"),
            RunwayBalanceExhaustedError,
            False,
            id="403-the-key-own-quota",
        ),
        pytest.param(
            400,
            {"error": "You do not have enough credits to run this task."},
            RunwayBalanceExhaustedError,
            False,
            id="runway-not-enough-credits",
        ),
        pytest.param(
            429,
            error_envelope(
                "You exceeded your current quota, check your plan and billing", "insufficient_quota"
            ),
            RunwayBalanceExhaustedError,
            False,
            id="429-insufficient_quota",
        ),
        pytest.param(
            200,
            {"code": "insufficient_user_quota", "message": "用户额度不足", "data": None},
            RunwayBalanceExhaustedError,
            False,
            id="2xx-wrapper-insufficient_user_quota",
        ),
        pytest.param(429, error_envelope("Too many requests"), RunwayRateLimitError, True, id="429"),
        pytest.param(
            429,
            error_envelope("quota exceeded, retry later"),
            RunwayRateLimitError,
            True,
            id="429-rate-quota",
        ),
        pytest.param(
            429,
            error_envelope("You have exceeded your daily generation limit"),
            RunwayRateLimitError,
            True,
            id="429-daily",
        ),
        # A 5xx's quota is the upstream's, and a load balancer is not a balance: both pass.
        pytest.param(
            503,
            error_envelope("upstream quota exceeded"),
            RunwayTransientError,
            True,
            id="503-upstream-quota",
        ),
        pytest.param(
            503,
            error_envelope("no healthy load balancer"),
            RunwayTransientError,
            True,
            id="503-load-balancer",
        ),
        pytest.param(
            403, error_envelope("Forbidden (request id: abc)"), RunwayAuthenticationError, False, id="403"
        ),
        pytest.param(
            401,
            error_envelope("Invalid token", "invalid_api_key"),
            RunwayAuthenticationError,
            False,
            id="401",
        ),
    ],
)
def test_a_spent_balance_is_told_apart_from_a_limit_and_a_refused_key(
    http_status, body, error_class, retryable
):
    """One rule for every path: the typed error (sync and async alike), whether a poll's answer is
    retried (the async transport asks is_retryable_answer), and what a create's answer means."""
    with pytest.raises(RunwayApiError) as raised:
        raise_for_error(body, http_status)
    with pytest.raises(RunwayApiError) as submitted:
        parse_submission(body, http_status)
    for error in (raised.value, submitted.value):
        assert type(error) is error_class
        assert isinstance(error, RunwayTransientError) is retryable
        assert isinstance(error, AirflowFailException) is not retryable
    assert is_retryable_answer(http_status, body) is retryable


def test_a_spent_balance_says_what_to_do_and_that_nothing_was_billed():
    with pytest.raises(RunwayBalanceExhaustedError) as caught:
        raise_for_error(SPENT_BALANCE, 403, runway_task_id=TASK_ID)
    assert str(caught.value) == (
        f"CometAPI refused the request for Runway task {TASK_ID}: the account's balance is spent (HTTP 403): "
        "user quota is not enough (request id: abc). " + BALANCE_NOTE
    )
    assert (caught.value.http_status, caught.value.code) == (403, "insufficient_user_quota")
    assert caught.value.runway_task_id == TASK_ID
    assert isinstance(caught.value, RunwayRequestRefusedError)


def test_a_successful_answer_that_speaks_of_credits_is_not_a_spent_balance():
    # Only a refusal's words are read: a task's own message may mention credits or a balance.
    answer = {"code": 200, "msg": "success: 5 credits used, balance 20", "data": {"task_id": TASK_ID}}
    assert parse_submission(answer, 200) == TASK_ID
    task = normalize(
        {**wrapper("SUCCESS", progress="100%", result_url=RESULT_URL), "message": "insufficient"}
    )
    assert task.status is S.SUCCEEDED
    assert is_retryable_answer(200, answer) is False


def test_duplicate_urls_are_deduplicated():
    nested = nested_task("SUCCEEDED", output=[RESULT_URL, OUTPUT_URL, RESULT_URL], video_url=OUTPUT_URL)
    task = normalize(
        wrapper("SUCCESS", progress="100%", result_url=RESULT_URL, video_url=RESULT_URL, nested=nested)
    )
    assert task.output_urls == (RESULT_URL, OUTPUT_URL)


# --- 9. status sets --------------------------------------------------------------------------------


def test_terminal_and_non_terminal_statuses_partition_the_enum():
    assert set(RunwayTaskStatus) == TERMINAL_STATUSES | NON_TERMINAL_STATUSES
    assert frozenset() == TERMINAL_STATUSES & NON_TERMINAL_STATUSES
    assert {S.SUCCEEDED, S.FAILED, S.CANCELLED} == TERMINAL_STATUSES
    assert all(status.is_terminal for status in TERMINAL_STATUSES)
    assert not any(status.is_terminal for status in NON_TERMINAL_STATUSES)


# --- 8. the error a user reads -------------------------------------------------------------------

LIMIT_NOTE = "The request was not processed; it can be retried once the limit allows."
BALANCE_NOTE = (
    "Top up the balance of the CometAPI account behind this connection's API key (or raise the key's "
    "own quota) on your CometAPI account's billing page (https://www.cometapi.com/), then clear the task. "
    "The request was not processed, so nothing was billed; Airflow does not retry it, since every try "
    "would be refused the same way until the balance is topped up."
)


def spent_balance_row(http_status: int, body: Any, said: str, id_: str) -> Any:
    """A create refused for a spent balance, and the whole message a user reads about it."""
    message = f"CometAPI refused the request: the account's balance is spent (HTTP {http_status}): {said}. "
    return pytest.param(http_status, body, RunwayBalanceExhaustedError, None, message + BALANCE_NOTE, id=id_)


@pytest.mark.parametrize(
    ("http_status", "body", "error_class", "limit", "message"),
    [
        spent_balance_row(
            429,
            {"error": {"code": "insufficient_user_quota"}},
            "insufficient_user_quota",
            "a-spent-balance-named-by-the-code-only-even-on-a-429",
        ),
        pytest.param(
            429,
            {"error": {"message": "Daily limit reached", "code": ""}},
            RunwayRateLimitError,
            "daily generation limit",
            "CometAPI refused the request: daily generation limit reached (HTTP 429): Daily limit reached. "
            + LIMIT_NOTE,
            id="daily-named-by-the-message-only",
        ),
        pytest.param(
            429,
            {},
            RunwayRateLimitError,
            "rate limit",
            "CometAPI refused the request: rate limit reached (HTTP 429): no message. " + LIMIT_NOTE,
            id="429-saying-nothing",
        ),
        spent_balance_row(
            429,
            {"error": {"type": "insufficient_user_quota", "message": ""}},
            "insufficient_user_quota",
            "an-openai-style-error-type-is-its-code",
        ),
        pytest.param(
            400,
            {"code": "bad_prompt", "message": "prompt too long"},
            RunwayRequestRefusedError,
            None,
            "CometAPI answered HTTP 400: prompt too long",
            id="a-flat-error-message",
        ),
        pytest.param(
            400,
            {"code": "bad_prompt", "msg": "prompt too long"},
            RunwayRequestRefusedError,
            None,
            "CometAPI answered HTTP 400: prompt too long",
            id="a-flat-error-msg",
        ),
        pytest.param(
            200,
            {"code": "429", "message": "too many requests", "data": None},
            RunwayRateLimitError,
            "rate limit",
            "CometAPI refused the request: rate limit reached (HTTP 200): too many requests. " + LIMIT_NOTE,
            id="a-429-code-inside-a-2xx-wrapper",
        ),
        # Each word alone names a spent balance: CometAPI's messages vary by upstream.
        spent_balance_row(
            403,
            {"error": {"message": "Your balance is too low"}},
            "Your balance is too low",
            "balance-alone-is-a-spent-balance",
        ),
        spent_balance_row(
            403,
            {"error": {"message": "insufficient funds"}},
            "insufficient funds",
            "insufficient-alone-is-a-spent-balance",
        ),
        spent_balance_row(
            400,
            {"error": "You do not have enough credits to run this task."},
            "You do not have enough credits to run this task",
            "credits-alone-is-a-spent-balance",
        ),
        spent_balance_row(
            403,
            {"error": {"message": "monthly quota used up"}},
            "monthly quota used up",
            "quota-alone-on-a-non-429-is-a-spent-balance",
        ),
        pytest.param(
            429,
            {"error": {"message": "request quota exceeded, retry later"}},
            RunwayRateLimitError,
            "rate limit",
            "CometAPI refused the request: rate limit reached (HTTP 429): request quota exceeded, retry later. "
            + LIMIT_NOTE,
            id="quota-alone-on-a-429-is-the-request-rate",
        ),
        pytest.param(
            300,
            "<html>Multiple Choices</html>",
            RunwayRequestRefusedError,
            None,
            "CometAPI answered HTTP 300: <html>Multiple Choices</html>",
            id="a-redirect-is-a-refusal",
        ),
    ],
)
def test_a_refused_create_says_why_in_words(http_status, body, error_class, limit, message):
    with pytest.raises(RunwayApiError) as info:
        parse_submission(body, http_status)
    assert type(info.value) is error_class
    assert str(info.value) == message
    assert getattr(info.value, "limit", None) == limit
    assert info.value.http_status == http_status


@pytest.mark.parametrize(
    ("http_status", "body", "error_class", "message"),
    [
        pytest.param(
            401,
            {"error": {"message": "", "code": "invalid_api_key"}},
            RunwayAuthenticationError,
            f"CometAPI refused the API key (HTTP 401) for Runway task {TASK_ID}: no message",
            id="key-refused-without-a-message",
        ),
        pytest.param(
            200,
            "<html>Service temporarily unavailable</html>",
            RunwayTransientError,
            f"CometAPI sent a non-JSON answer (HTTP 200) for Runway task {TASK_ID}: "
            "<html>Service temporarily unavailable</html>",
            id="non-json-2xx",
        ),
        pytest.param(
            200,
            "x" * 200,
            RunwayTransientError,
            f"CometAPI sent a non-JSON answer (HTTP 200) for Runway task {TASK_ID}: {'x' * 200}",
            id="an-answer-of-exactly-200-characters-is-quoted-uncut",
        ),
        pytest.param(
            200,
            "y" * 201,
            RunwayTransientError,
            f"CometAPI sent a non-JSON answer (HTTP 200) for Runway task {TASK_ID}: {'y' * 200}…",
            id="an-answer-of-201-characters-is-cut-to-200",
        ),
        pytest.param(
            502,
            {"data": "当前分组上游负载已饱和"},
            RunwayTransientError,
            f'CometAPI answered HTTP 502 for Runway task {TASK_ID}: {{"data": "当前分组上游负载已饱和"}}',
            id="chinese-text-is-quoted-readable",
        ),
        pytest.param(
            200,
            {"code": "500", "data": None},
            RunwayTransientError,
            f"CometAPI reported a server error for Runway task {TASK_ID}: 500: no message",
            id="server-error-code-in-a-2xx",
        ),
        pytest.param(
            200,
            {"error": "model is busy, try another one", "data": None},
            RunwayBusinessError,
            f"CometAPI answered with an error for Runway task {TASK_ID}: model is busy, try another one",
            id="error-text-in-a-2xx",
        ),
        pytest.param(
            200,
            {"error": {"code": "content_blocked"}},
            RunwayBusinessError,
            f'CometAPI answered with an error for Runway task {TASK_ID}: {{"error": {{"code": "content_blocked"}}}}',
            id="an-error-without-words-is-quoted-whole",
        ),
    ],
)
def test_a_failed_poll_says_why_in_words(http_status, body, error_class, message):
    with pytest.raises(RunwayApiError) as info:
        normalize(body, http_status)
    assert type(info.value) is error_class
    assert str(info.value) == message
    assert (info.value.http_status, info.value.runway_task_id) == (http_status, TASK_ID)


# --- 9. what a create answer means for the money ---------------------------------------------------

PROXY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body>" + "upstream trouble " * 10 + "</body></html>"
)


@pytest.mark.parametrize(
    ("http_status", "body", "error_class", "message"),
    [
        pytest.param(
            502,
            PROXY_PAGE,
            RunwaySubmissionUncertainError,
            f"HTTP 502 after the request was sent: {PROXY_PAGE[:120]}…",
            id="proxy-502-page-may-have-been-processed",
        ),
        pytest.param(
            500,
            "Internal Server Error",
            RunwaySubmissionUncertainError,
            "HTTP 500 after the request was sent: Internal Server Error",
            id="500-without-cometapi-error-may-have-been-processed",
        ),
        pytest.param(
            504,
            error_envelope("gateway timeout", code="timeout"),
            RunwaySubmissionUncertainError,
            "HTTP 504 after the request was sent: "
            '{"error": {"message": "gateway timeout", "type": "comet_api_error", "param": "", "code": "timeout"}}',
            id="504-even-with-cometapi-error-may-have-been-processed",
        ),
        pytest.param(
            503,
            error_envelope("service unavailable"),
            RunwayTransientError,
            "CometAPI answered HTTP 503: service unavailable",
            id="503-cometapi-error-not-processed-retryable",
        ),
        pytest.param(
            500,
            error_envelope("Invalid ratio 1:1", code="invalid_request"),
            RunwayRequestRefusedError,
            "CometAPI answered HTTP 500: Invalid ratio 1:1",
            id="500-invalid-request-refused",
        ),
        pytest.param(
            200,
            "<html>maintenance</html>",
            RunwaySubmissionUncertainError,
            "a garbled answer (HTTP 200): CometAPI sent a non-JSON answer (HTTP 200): <html>maintenance</html>",
            id="non-json-2xx-may-have-been-processed",
        ),
        pytest.param(
            200,
            {"code": 200, "msg": "success", "data": {"note": "accepted " * 20}},
            RunwaySubmissionUncertainError,
            'a successful answer (HTTP 200) without a task id: {"code": 200, "msg": "success", "data": '
            '{"note": "accepted accepted accepted accepted accepted accepted accepted accepte…',
            id="2xx-without-a-task-id-may-have-been-processed",
        ),
        pytest.param(
            200,
            {"code": "busy_now", "data": None},
            RunwayBusinessError,
            "CometAPI refused the request: busy_now: no message",
            id="error-code-in-a-2xx-refused",
        ),
    ],
)
def test_a_create_answer_decides_whether_the_request_may_be_sent_again(
    http_status, body, error_class, message
):
    """Uncertain: may exist and bill, never sent again; transient: not processed, retried; refused: not
    processed, not retried."""
    with pytest.raises(RunwayError) as info:
        parse_submission(body, http_status)
    assert type(info.value) is error_class
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("http_status", "body", "retried"),
    [
        pytest.param(503, error_envelope("service unavailable"), True, id="503"),
        pytest.param(429, {}, True, id="429"),
        pytest.param(
            500, error_envelope("Invalid ratio 1:1", code="invalid_request"), False, id="invalid-request"
        ),
        pytest.param(
            502, {"code": "task_not_exist", "message": "task_not_exist"}, False, id="not-visible-yet"
        ),
        pytest.param(404, {}, False, id="404"),
        pytest.param(200, {}, False, id="200"),
    ],
)
def test_a_poll_is_retried_on_a_retryable_status_unless_the_request_itself_is_wrong(
    http_status, body, retried
):
    assert is_retryable_answer(http_status, body) is retried
