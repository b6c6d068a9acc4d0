"""The one place where CometAPI's answers are read, and the one retry rule.

CometAPI answers in several shapes (see ``docs/behaviour.md``): the current new-api wrapper
(``code: "success"``, ``data.status``, nested ``data.data`` in Runway's own shape), the legacy
numeric wrapper (``status: "0".."3"``, ``state``, ``video_url``) and the plain Runway task. Nobody
has observed the live service, so :func:`normalize_task` accepts all of them and everything else in
the provider reads only :class:`~runway_provider.models.RunwayTask`. This module knows nothing but
dicts and statuses: the transport (:mod:`runway_provider.hooks._http`) hands it decoded answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from runway_provider.exceptions import (
    RunwayAuthenticationError,
    RunwayBalanceExhaustedError,
    RunwayBusinessError,
    RunwayRateLimitError,
    RunwayRequestRefusedError,
    RunwaySubmissionUncertainError,
    RunwayTransientError,
)
from runway_provider.models import CancelOutcome, RouteFamily, RunwayTask, RunwayTaskStatus

TASK_NOT_EXIST = "task_not_exist"
# CometAPI's docs: retry 429 and 5xx, except a 500 whose error code is invalid_request; Runway's
# SDK also retries 408 and 409. Every other 4xx (and a redirect: a wrong path) is a refusal.
_TRANSIENT_HTTP_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
# What a poll or a cancel retries inside one call, on the sync and the async path alike.
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_SUCCESS_CODES = frozenset({"200", "success", "0"})
# A create answered 429 was refused before processing: it may be sent again. Every other status is
# read once, by parse_submission (a 503 may come from a proxy after forwarding).
CREATE_RESENDABLE_STATUSES = frozenset({429})
# The service's words for an account that cannot pay: CometAPI's (new-api's) 403
# insufficient_user_quota ("user quota is not enough", 用户额度不足), OpenAI-style insufficient_quota,
# Runway's "You do not have enough credits". Whole words: a "load balancer" is not a balance.
# "quota" alone is read in _balance_spent.
_SPENT_BALANCE_WORDS = re.compile(r"insufficient|(?<![a-z])(?:balance|credits?)(?![a-z])|余额|额度不足")
# Where a spent balance is topped up, named by host: CometAPI's console pages move, its host does not.
TOP_UP_PAGE = "your CometAPI account's billing page (https://www.cometapi.com/)"

# The legacy numbers are ambiguous across sources; "2" is resolved in _legacy_numeric_status.
_STATUS_BY_NAME: dict[str, RunwayTaskStatus] = {
    "NOT_START": RunwayTaskStatus.PENDING,
    "SUBMITTED": RunwayTaskStatus.PENDING,
    "QUEUED": RunwayTaskStatus.PENDING,
    "PENDING": RunwayTaskStatus.PENDING,
    "THROTTLED": RunwayTaskStatus.THROTTLED,
    "WAITING": RunwayTaskStatus.PENDING,
    "0": RunwayTaskStatus.PENDING,
    "IN_PROGRESS": RunwayTaskStatus.RUNNING,
    "RUNNING": RunwayTaskStatus.RUNNING,
    "PROCESSING": RunwayTaskStatus.RUNNING,
    "1": RunwayTaskStatus.RUNNING,
    "SUCCESS": RunwayTaskStatus.SUCCEEDED,
    "SUCCEEDED": RunwayTaskStatus.SUCCEEDED,
    "3": RunwayTaskStatus.SUCCEEDED,
    "FAILURE": RunwayTaskStatus.FAILED,
    "FAILED": RunwayTaskStatus.FAILED,
    "CANCELLED": RunwayTaskStatus.CANCELLED,
    "CANCELED": RunwayTaskStatus.CANCELLED,
}


def decode_body(text: str) -> Any:
    """Parse an answer's text as JSON, or give the text back unchanged when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def raise_for_error(body: Any, http_status: int, *, runway_task_id: str | None = None) -> None:
    """Raise the typed error an answer stands for; return quietly for a successful answer.

    ``task_not_exist`` is not an error here: :func:`normalize_task` reads it as "not visible yet".
    The classes decide what happens next everywhere: :class:`RunwayRateLimitError` and
    :class:`RunwayTransientError` are retried, :class:`RunwayRequestRefusedError` (and its
    :class:`RunwayBalanceExhaustedError`, :class:`RunwayAuthenticationError` and
    :class:`RunwayBusinessError`) fail without retry.

    :param body: The decoded answer (a dict, or the text when it was not JSON).
    :param http_status: The answer's HTTP status.
    :param runway_task_id: The task the request was about, for the error message.
    """
    code, message = _error_code_and_message(body)
    where = f" for Runway task {runway_task_id}" if runway_task_id else ""
    details: dict[str, Any] = {"http_status": http_status, "code": code, "runway_task_id": runway_task_id}
    if _balance_spent(body, http_status, code, message):
        raise RunwayBalanceExhaustedError(
            f"CometAPI refused the request{where}: the account's balance is spent (HTTP {http_status}): "
            f"{(message or code or '').rstrip('.')}. Top up the balance of the CometAPI account behind this "
            f"connection's API key (or raise the key's own quota) on {TOP_UP_PAGE}, then clear the task. "
            "The request was not processed, so nothing was billed; Airflow does not retry it, since every "
            "try would be refused the same way until the balance is topped up.",
            **details,
        )
    limit = _limit_hit(http_status, code, message)
    if limit is not None:
        raise RunwayRateLimitError(
            f"CometAPI refused the request{where}: {limit} reached (HTTP {http_status}): "
            f"{message or code or 'no message'}. The request was not processed; it can be retried "
            "once the limit allows.",
            limit=limit,
            **details,
        )
    if http_status in (401, 403):
        raise RunwayAuthenticationError(
            f"CometAPI refused the API key (HTTP {http_status}){where}: {message or 'no message'}", **details
        )
    if http_status >= 300:
        transient = http_status in _TRANSIENT_HTTP_STATUSES and code != "invalid_request"
        error_class = RunwayTransientError if transient else RunwayRequestRefusedError
        raise error_class(
            f"CometAPI answered HTTP {http_status}{where}: {message or _snippet(body)}", **details
        )
    if not isinstance(body, Mapping):
        # A 2xx that is not JSON is a proxy's page or a truncated answer: worth asking again.
        raise RunwayTransientError(
            f"CometAPI sent a non-JSON answer (HTTP {http_status}){where}: {_snippet(body)}", **details
        )
    if code is not None and code.isdigit() and int(code) >= 500:
        # The gateway's own words for trouble on its side, inside a successful HTTP answer.
        raise RunwayTransientError(
            f"CometAPI reported a server error{where}: {code}: {message or 'no message'}", **details
        )
    if body.get("error") and code != TASK_NOT_EXIST:
        raise RunwayBusinessError(
            f"CometAPI answered with an error{where}: {message or _snippet(body)}", **details
        )
    if code is not None and code.lower() not in _SUCCESS_CODES and code != TASK_NOT_EXIST:
        raise RunwayBusinessError(
            f"CometAPI refused the request{where}: {code}: {message or 'no message'}", **details
        )


def is_retryable_answer(http_status: int, body: Any) -> bool:
    """The one retry rule of a poll's answer: a retryable status, unless the body says the request
    itself is wrong (``invalid_request``) or the account's balance is spent, which no retry can fix."""
    code, message = _error_code_and_message(body)
    if _is_task_not_exist(body):
        return False  # read as "not visible yet" by normalize_task, whatever the status
    if _balance_spent(body, http_status, code, message):
        return False
    return http_status in RETRYABLE_HTTP_STATUSES and code != "invalid_request"


def parse_submission(body: Any, http_status: int) -> str:
    """Read the Runway task id out of a create answer, raising the typed error of any other answer.

    Accepts the reverse-format ``{"code": 200, "data": {"task_id": ...}}`` and the official
    ``{"id": ...}``, plus the id spellings public clients of CometAPI look for. What a create answer
    means for the money is decided here, once:

    - refused (3xx, 4xx but 408/409/429, an error code in a 2xx body), or a spent balance
      (:class:`RunwayBalanceExhaustedError`): not processed, not retried;
    - a limit (429: the request rate, the daily generation limit) or 408/409, or a 503 carrying
      CometAPI's own JSON error: not processed, retryable;
    - any other 5xx (a proxy may answer 502/503/504 after forwarding), a 2xx that is not JSON, has
      no task id, or reports a server error: the generation may exist,
      :class:`RunwaySubmissionUncertainError`.
    """
    code, _ = _error_code_and_message(body)
    refused_by_cometapi = _is_error_envelope(body) and (http_status == 503 or code == "invalid_request")
    if http_status >= 500 and not refused_by_cometapi:
        raise RunwaySubmissionUncertainError(
            f"HTTP {http_status} after the request was sent: {_snippet(body, 120)}"
        )
    try:
        raise_for_error(body, http_status)
    except RunwayTransientError as err:
        if isinstance(err, RunwayRateLimitError) or http_status >= 300:
            raise
        raise RunwaySubmissionUncertainError(f"a garbled answer (HTTP {http_status}): {err}") from None
    data = body.get("data") if isinstance(body.get("data"), Mapping) else {}
    for candidate in (
        data.get("task_id"),
        data.get("taskId"),
        data.get("id"),
        body.get("task_id"),
        body.get("taskId"),
        body.get("id"),
    ):
        if isinstance(candidate, (str, int)) and str(candidate).strip():
            return str(candidate).strip()
    raise RunwaySubmissionUncertainError(
        f"a successful answer (HTTP {http_status}) without a task id: {_snippet(body, 120)}"
    )


def parse_quota(body: Any, http_status: int) -> float:
    """The remaining quota in an answer of CometAPI's balance query (``GET /user/quota?key=...``).

    Read tolerantly, since only the field names are documented: ``remain_quota`` at the top level
    or under ``data``; else ``total_quota`` minus ``total_used_quota`` (the account's); else the one
    entry of ``keys[]`` with a ``remain_quota``. Several keys and no account figure leave no way to
    tell which key pays, which is unreadable too. Raises the typed error of an error answer, and
    :class:`RunwayTransientError` for an answer that gives no balance.

    :param body: The decoded answer.
    :param http_status: Its HTTP status.
    """
    raise_for_error(body, http_status)
    assert isinstance(body, Mapping)  # raise_for_error refuses any other successful answer
    for level in (body, body.get("data")):
        if not isinstance(level, Mapping):
            continue
        if (remaining := _number(level.get("remain_quota"))) is not None:
            return remaining
        total, used = _number(level.get("total_quota")), _number(level.get("total_used_quota"))
        if total is not None and used is not None:
            return total - used
        keys = level.get("keys")
        per_key = (
            [_number(key.get("remain_quota")) for key in keys if isinstance(key, Mapping)]
            if isinstance(keys, list)
            else []
        )
        known = [value for value in per_key if value is not None]
        if len(known) == 1:
            return known[0]
    raise RunwayTransientError(
        f"CometAPI's quota answer (HTTP {http_status}) gives no remain_quota, no total_quota with "
        "total_used_quota, and no single key's remain_quota"
    )


def _number(value: Any) -> float | None:
    """A JSON number, or a number written as text; None for anything else (a bool is not a quota)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def read_cancel_answer(body: Any, http_status: int, *, runway_task_id: str) -> CancelOutcome:
    """Read the answer to ``DELETE /runwayml/v1/tasks/{id}`` (Runway answers 204, no body)."""
    if http_status in (404, 405, 501):
        return CancelOutcome.UNSUPPORTED
    if 200 <= http_status < 300 and body in ("", None):
        return CancelOutcome.CANCELLED
    raise_for_error(body, http_status, runway_task_id=runway_task_id)
    return CancelOutcome.CANCELLED


def normalize_task(
    body: Any,
    http_status: int,
    *,
    runway_task_id: str,
    not_found_statuses: frozenset[int] = frozenset(),
    route_family: RouteFamily,
) -> RunwayTask:
    """Turn any known task answer into a :class:`RunwayTask`, or raise the error it stands for.

    :param body: The decoded answer.
    :param http_status: The answer's HTTP status.
    :param runway_task_id: The id that was asked for; used when the answer does not repeat it.
    :param not_found_statuses: HTTP statuses that mean "not visible yet" on this route (404 on
        Runway's own task route), besides ``task_not_exist``.
    :param route_family: The family the task was looked up in, kept on the task.
    """
    if _is_task_not_exist(body) or http_status in not_found_statuses:
        return RunwayTask(
            runway_task_id=runway_task_id,
            status=RunwayTaskStatus.PENDING,
            visible=False,
            service_status=TASK_NOT_EXIST,
            raw=body if isinstance(body, Mapping) else None,
            route_family=route_family,
        )
    raise_for_error(body, http_status, runway_task_id=runway_task_id)
    outer = body.get("data") if "code" in body or "msg" in body else body
    if not isinstance(outer, Mapping):
        raise RunwayTransientError(
            f"CometAPI's answer for Runway task {runway_task_id} has no task object: {_snippet(body)}",
            http_status=http_status,
            runway_task_id=runway_task_id,
        )
    nested: Mapping[str, Any] = outer["data"] if isinstance(outer.get("data"), Mapping) else {}

    status, service_status = _status(outer, nested)
    output_urls = _output_urls(outer, nested)
    failure_code = _text(nested.get("failureCode")) or _text(outer.get("failureCode"))
    failure = (
        _text(outer.get("fail_reason"))
        or _text(nested.get("failure"))
        or _text(outer.get("failure"))
        or (_text(outer.get("msg")) if status is RunwayTaskStatus.FAILED else None)
    )
    return RunwayTask(
        runway_task_id=_text(outer.get("task_id")) or _text(outer.get("id")) or runway_task_id,
        status=status,
        progress=_progress(outer.get("progress"), nested.get("progress")),
        output_urls=output_urls,
        failure=failure,
        failure_code=failure_code,
        service_status=service_status,
        raw=outer,
        route_family=route_family,
    )


def _status(outer: Mapping[str, Any], nested: Mapping[str, Any]) -> tuple[RunwayTaskStatus, str | None]:
    """Decide on the outer status first; fall back to the legacy ``state`` and the nested task."""
    raw_outer = _text(outer.get("status"))
    candidates: list[str | None] = []
    if raw_outer is not None and raw_outer.isdigit():
        candidates.append(_text(outer.get("state")))
        candidates.append(_legacy_numeric_status(raw_outer, outer))
    else:
        candidates.append(raw_outer)
        candidates.append(_text(outer.get("state")))
    candidates.append(_text(nested.get("status")))
    nested_status = _STATUS_BY_NAME.get((_text(nested.get("status")) or "").upper())
    for candidate in candidates:
        if candidate is not None and candidate.upper() in _STATUS_BY_NAME:
            status = _STATUS_BY_NAME[candidate.upper()]
            # The wrapper has no cancelled status: its FAILURE over Runway's CANCELLED is a cancel.
            if status is RunwayTaskStatus.FAILED and nested_status is RunwayTaskStatus.CANCELLED:
                status = RunwayTaskStatus.CANCELLED
            return status, raw_outer or candidate
    return RunwayTaskStatus.UNKNOWN, raw_outer or _text(nested.get("status"))


def _legacy_numeric_status(value: str, outer: Mapping[str, Any]) -> str:
    # Sources disagree on "2": one says success, another says failure with refund. A video URL
    # settles it; without one it is read as the failure (refund) the reseller's doc describes.
    if value == "2":
        return "SUCCEEDED" if _text(outer.get("video_url")) else "FAILED"
    return value


def _output_urls(outer: Mapping[str, Any], nested: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for value in (
        outer.get("result_url"),
        nested.get("output"),
        outer.get("output"),
        outer.get("video_url"),
        nested.get("video_url"),
    ):
        values = value if isinstance(value, list) else [value]
        for item in values:
            url = _text(item)
            if url and re.match(r"^https?://", url, re.IGNORECASE) and url not in found:
                found.append(url)
    return tuple(found)


def _progress(*values: Any) -> float | None:
    for value in values:
        if value is None or value == "":
            continue
        try:
            number = float(str(value).strip().rstrip("%"))
        except ValueError:
            continue
        if (isinstance(value, str) and value.strip().endswith("%")) or number > 1:
            number /= 100
        return min(max(number, 0.0), 1.0)
    return None


def _is_task_not_exist(body: Any) -> bool:
    if isinstance(body, Mapping):
        code, message = _error_code_and_message(body)
        return TASK_NOT_EXIST in (code or "") or TASK_NOT_EXIST in (message or "")
    return isinstance(body, str) and TASK_NOT_EXIST in body


def _error_code_and_message(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, Mapping):
        return None, None
    error = body.get("error")
    if isinstance(error, Mapping):
        return _text(error.get("code")) or _text(error.get("type")), _text(error.get("message"))
    if isinstance(error, str):
        return None, error
    return _text(body.get("code")), _text(body.get("message")) or _text(body.get("msg"))


def _balance_spent(body: Any, http_status: int, code: str | None, message: str | None) -> bool:
    """Whether a refusal says the account cannot pay. A successful answer's words are not read:
    a task's message may well speak of credits."""
    refused = (
        http_status >= 300
        or (isinstance(body, Mapping) and bool(body.get("error")))
        or (code is not None and code.lower() not in _SUCCESS_CODES)
    )
    if not refused:
        return False
    words = f"{code or ''} {message or ''}".lower()
    # "quota" alone on a 429 is a request-rate quota that lifts by itself, and on a 5xx the
    # upstream's; on any other refusal it is the account's or the key's (new-api's
    # pre_consume_token_quota_failed is a 403).
    return _SPENT_BALANCE_WORDS.search(words) is not None or (
        "quota" in words and http_status < 500 and not _is_429(http_status, code)
    )


def _limit_hit(http_status: int, code: str | None, message: str | None) -> str | None:
    """Which limit a refusal names, in words; None when it is not about a limit."""
    if not _is_429(http_status, code):
        return None
    return "daily generation limit" if "daily" in f"{code or ''} {message or ''}".lower() else "rate limit"


def _is_429(http_status: int, code: str | None) -> bool:
    return http_status == 429 or code == "429"


def _is_error_envelope(body: Any) -> bool:
    """CometAPI's own JSON error (``{"error": {...}}``): the gateway refused before forwarding."""
    return isinstance(body, Mapping) and isinstance(body.get("error"), Mapping)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _snippet(body: Any, limit: int = 200) -> str:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
