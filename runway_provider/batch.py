"""Batches that account for every row: what became of each, and what the run generated.

A batch DAG maps one row per prompt through generate and store; a row the service rejects must not
sink the others. :func:`row_outcome` says what became of one row, from what its tasks left in XCom
(and, for a row that did not store, one free read of its Runway task); :func:`summarize` totals a
run's outcomes. ``example_dags/example_runway_content_batch.py`` shows the pattern
(``docs/content-production.md``).

A row is ``stored`` (generated and stored by this run), ``reused`` (stored by an earlier run: nothing
was sent), ``rejected`` (Runway's moderation refused it: ``SAFETY.*``, with the service's code and
reason) or ``failed`` (why, in words).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from runway_provider import refs
from runway_provider.exceptions import RunwayContentRejectedError, RunwayError, RunwayTaskError
from runway_provider.models import RunwayTaskStatus
from runway_provider.records import RequestRecord
from runway_provider.wait_decision import Outcome, OutcomeStatus

if TYPE_CHECKING:
    from runway_provider.hooks.runway import RunwayHook

STORED, REUSED, REJECTED, FAILED = "stored", "reused", "rejected", "failed"
OUTCOMES = (STORED, REUSED, REJECTED, FAILED)


def row_outcome(
    *,
    stored: Mapping[str, Any] | None,
    request: Any,
    runway_task_id: str | None,
    hook: RunwayHook,
) -> dict[str, Any]:
    """What became of one row: a manifest line (without the row's own fields).

    :param stored: The transfer's return value for the row (None when it did not store).
    :param request: The generate task's XCom ``runway_request`` (None when nothing was submitted).
    :param runway_task_id: The generate task's XCom ``runway_task_id`` (None when nothing was submitted).
    :param hook: Reads the Runway task of a row that did not store (one free read).
    """
    known = RequestRecord.from_dict(request)
    if stored is not None:
        # Reused by the generate task (nothing sent), whether the transfer found it here or copied it.
        reused = stored.get("reused") or (known is not None and known.reused is not None)
        return {
            "outcome": REUSED if reused else STORED,
            "runway_task_id": stored.get("runway_task_id"),
            "uri": stored.get("uri"),
            "sha256": stored.get("sha256"),
            "billed": stored.get("billed"),
        }
    if runway_task_id is None:
        return {
            "outcome": FAILED,
            "why": "nothing was submitted (bad input, the balance floor, a refused create: see the "
            "generate task's log)",
        }
    ref = refs.resolve(runway_task_id, explicit=None, upstream=None, request=request)
    try:
        task = hook.get_task(ref.runway_task_id, ref.family)
    except RunwayError as err:
        return {
            "outcome": FAILED,
            "runway_task_id": runway_task_id,
            "why": f"its state cannot be read: {err}",
        }
    if task.status is RunwayTaskStatus.SUCCEEDED:
        return {
            "outcome": FAILED,
            "runway_task_id": runway_task_id,
            "why": "generated but not stored (see the store task's log); clearing the row's tasks "
            "reconnects to this generation instead of paying again",
        }
    if not task.is_terminal:
        return {
            "outcome": FAILED,
            "runway_task_id": runway_task_id,
            "why": f"still {task.status.value} when the row ended (the wait timed out or was stopped)",
        }
    # The provider's own reading of a failed task decides what a rejection is.
    try:
        code = f" ({task.failure_code})" if task.failure_code else ""
        message = f"ended {task.status.value}: {task.failure or 'no reason given'}{code}"
        Outcome(OutcomeStatus.FAILED, runway_task_id, task, message).result()
    except RunwayContentRejectedError as err:
        return {
            "outcome": REJECTED,
            "runway_task_id": runway_task_id,
            "code": err.failure_code,
            "reason": err.failure,
        }
    except RunwayTaskError as err:
        return {"outcome": FAILED, "runway_task_id": runway_task_id, "why": str(err)}
    raise AssertionError("unreachable: a failed outcome always raises")


def summarize(outcomes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A run's totals: rows per outcome, and what this run generated per model.

    Seconds and images count the rows stored by this run (reused rows sent nothing); a video whose
    request does not say its length is counted under ``videos_of_unknown_length``.

    :param outcomes: The manifest lines (:func:`row_outcome`'s results).
    """
    outcomes = list(outcomes)
    counts = {name: sum(1 for line in outcomes if line.get("outcome") == name) for name in OUTCOMES}
    seconds: dict[str, float] = defaultdict(float)
    images: dict[str, int] = defaultdict(int)
    unknown: dict[str, int] = defaultdict(int)
    for line in outcomes:
        billed = line.get("billed")
        if line.get("outcome") != STORED or not isinstance(billed, Mapping):
            continue
        model = str(billed.get("model") or "unknown")
        if billed.get("output") == "image":
            images[model] += int(billed.get("images") or 1)
        elif isinstance(billed.get("seconds"), (int, float)):
            seconds[model] += billed["seconds"]
        else:
            unknown[model] += 1
    return {
        "rows": len(outcomes),
        "generated": counts[STORED],
        "reused": counts[REUSED],
        "rejected": counts[REJECTED],
        "failed": counts[FAILED],
        # Whole seconds read as such: 20, not 20.0.
        "video_seconds_by_model": {
            model: int(v) if v.is_integer() else v for model, v in sorted(seconds.items())
        },
        "images_by_model": dict(sorted(images.items())),
        "videos_of_unknown_length_by_model": dict(sorted(unknown.items())),
    }
