"""Records of stored results, and reruns that reuse them instead of paying again (runway_provider.records)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, ObjectStoragePath
from airflow.sdk.execution_time.context import OutletEventAccessors

from runway_provider import refs, routes, spend
from runway_provider.hooks.runway import RunwayHook
from runway_provider.models import RouteFamily
from runway_provider.operators.runway import RunwayGenerateOperator
from runway_provider.records import INDEX_FOLDER, RequestRecord, StoredResult, find_reusable
from runway_provider.transfers.runway_to_object_storage import RunwayToObjectStorageOperator
from tests.helpers import MemoryTaskStateStore, RecordingTaskInstance, job_options

pytestmark = pytest.mark.unit

IMAGE = "https://example.com/boat.jpg"
LOG = logging.getLogger("test")
FAST = job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0)


def chain(
    folder: Path, prompt: str = "A paper boat", image: str = IMAGE
) -> tuple[RunwayGenerateOperator, RunwayToObjectStorageOperator]:
    """generate → store, as a DAG wires them (the transfer knows its source operator)."""
    with DAG("batch", start_date=pendulum.datetime(2026, 1, 1), schedule=None):
        generate = RunwayGenerateOperator(
            task_id="generate",
            prompt=prompt,
            image=image,
            options=FAST,
            wait_for_completion=True,
            poll_interval=0.1,
            reuse_from=f"file://{folder}/",
        )
        store = RunwayToObjectStorageOperator(
            task_id="store", runway_task=generate.output, destination=f"file://{folder}/"
        )
    return generate, store


def run_chain(
    folder: Path, prompt: str = "A paper boat", image: str = IMAGE
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Run generate then store in-process; return the task id, generate's XComs and the stored result."""
    generate, store = chain(folder, prompt, image)
    generate_ti = RecordingTaskInstance()
    runway_task_id = generate.execute({"ti": generate_ti, "task_state_store": MemoryTaskStateStore()})
    store_ti = RecordingTaskInstance()
    store_ti.upstream = {("generate", key): value for key, value in generate_ti.xcom.items()}
    store.runway_task = runway_task_id  # what Airflow renders generate.output to
    result = store.execute({"ti": store_ti, "outlet_events": OutletEventAccessors()})
    return runway_task_id, generate_ti.xcom, result


def test_a_stored_result_has_a_record_of_its_request_beside_it(runway_conn, emulator, tmp_path):
    runway_task_id, pushed, result = run_chain(tmp_path)
    record = json.loads((tmp_path / f"{runway_task_id}.mp4.runway.json").read_text())
    request = pushed[refs.XCOM_RUNWAY_REQUEST]
    assert record["fingerprint"] == request["fingerprint"] and len(record["fingerprint"]) == 64
    assert record["route"] == "/runway/pro/generate" and record["route_family"] == "reverse"
    assert record["model"] == "gen4" and record["request"]["prompt"] == "A paper boat"
    assert "callback_url" not in record["request"]  # a webhook URL may carry a token
    assert record["runway_task_id"] == runway_task_id and record["sha256"] == result["sha256"]
    assert record["bytes"] == result["bytes"] and record["content_type"] == "video/mp4"
    assert record["submitted_at"] <= record["stored_at"]
    index = json.loads((tmp_path / INDEX_FOLDER / f"{record['fingerprint']}.json").read_text())
    assert index == record
    assert result["record_uri"] == f"file://{tmp_path}/{runway_task_id}.mp4.runway.json"


def test_a_rerun_of_the_same_request_sends_nothing_and_stores_nothing(runway_conn, emulator, tmp_path):
    first_id, _, first = run_chain(tmp_path)
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")}
    second_id, pushed, second = run_chain(tmp_path)
    assert len(emulator.submissions()) == 1
    assert second_id == first_id and pushed[refs.XCOM_RUNWAY_REQUEST]["reused"]["uri"] == first["uri"]
    assert pushed["runway_task"]["status"] == "SUCCEEDED"
    assert second == {**first, "reused": True}
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*")} == before


def test_a_changed_request_generates_anew(runway_conn, emulator, tmp_path):
    run_chain(tmp_path)
    run_chain(tmp_path, prompt="A paper boat at dusk")
    assert [job.body["prompt"] for job in emulator.jobs.values()] == ["A paper boat", "A paper boat at dusk"]


@pytest.mark.parametrize(
    "damage", ["object gone", "object changed", "record garbled", "record for another request"]
)
def test_a_damaged_stored_result_is_generated_anew(runway_conn, emulator, tmp_path, damage, capsys):
    runway_task_id, pushed, _ = run_chain(tmp_path)
    video = tmp_path / f"{runway_task_id}.mp4"
    index = tmp_path / INDEX_FOLDER / f"{pushed[refs.XCOM_RUNWAY_REQUEST]['fingerprint']}.json"
    if damage == "object gone":
        video.unlink()
    elif damage == "object changed":
        video.write_bytes(b"not the stored video")
    elif damage == "record garbled":
        index.write_text("{not json")
    else:
        index.write_text(json.dumps({**json.loads(index.read_text()), "fingerprint": "0" * 64}))
    capsys.readouterr()
    second_id, _, second = run_chain(tmp_path)
    assert len(emulator.submissions()) == 2 and second_id != runway_task_id
    assert "generating anew" in capsys.readouterr().out and second["reused"] is False


def test_find_reusable_reads_only_the_index_of_that_fingerprint(tmp_path):
    folder = ObjectStoragePath(f"file://{tmp_path}/")
    assert find_reusable(folder, "a" * 64, LOG) is None  # nothing stored yet
    (tmp_path / "v.mp4").write_bytes(b"video")
    record = StoredResult.of(
        name="../v.mp4",
        uri="file:///elsewhere",
        runway_task_id="t",
        sha256="x",
        size=5,
        content_type="video/mp4",
        stored_at=1.0,
        request=RequestRecord("/r", "reverse", "a" * 64, {}),
    )
    (tmp_path / INDEX_FOLDER).mkdir()
    (tmp_path / INDEX_FOLDER / f"{'a' * 64}.json").write_text(json.dumps(record.to_dict()))
    assert find_reusable(folder, "a" * 64, LOG) is None  # a name outside the folder is not followed


def test_request_records_never_hold_the_webhook_and_read_back(tmp_path):
    request = RequestRecord.of(
        route="/runway/pro/generate",
        route_family="reverse",
        fingerprint="f" * 64,
        payload={"prompt": "p", "callback_url": "https://hooks.example.com/?token=secret"},
        submitted_at=3.0,
    )
    assert "secret" not in json.dumps(request.to_dict())
    assert RequestRecord.from_dict(request.to_dict()) == request
    assert RequestRecord.from_dict(None) is None and RequestRecord.from_dict({"route": "/r"}) is None


def test_reuse_from_must_name_a_folder(runway_conn):
    op = RunwayGenerateOperator(task_id="g", prompt="p", image=IMAGE, reuse_from=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reuse_from"):
        op.execute({"ti": RecordingTaskInstance(), "task_state_store": MemoryTaskStateStore()})


@pytest.mark.parametrize(
    "name",
    ["../v.mp4", "more/v.mp4", ".v.mp4.0f3c9a.part"],
    ids=["outside-the-folder", "in-a-subfolder", "a-staging-file"],
)
def test_a_record_naming_anything_but_a_stored_object_of_the_folder_is_not_reused(tmp_path, name):
    """Even when the object it names is there, intact: only a file the transfer stored in that very
    folder is reused, never one outside it, below it, or a hidden staging file of a download."""
    folder = tmp_path / "results"
    named = folder / name
    named.parent.mkdir(parents=True, exist_ok=True)
    named.write_bytes(b"video")
    fingerprint = "a" * 64
    record = StoredResult.of(
        name=name,
        uri=f"file://{named}",
        runway_task_id="t",
        sha256=hashlib.sha256(b"video").hexdigest(),
        size=5,
        content_type="video/mp4",
        stored_at=1.0,
        request=RequestRecord("/runway/pro/generate", "reverse", fingerprint, {}),
    )
    (folder / INDEX_FOLDER).mkdir(parents=True)
    (folder / INDEX_FOLDER / f"{fingerprint}.json").write_text(json.dumps(record.to_dict()))
    assert find_reusable(ObjectStoragePath(f"file://{folder}/"), fingerprint, LOG) is None


# -- records are read, not believed ---------------------------------------------------------------


class WarningLog:
    """A logger that keeps what it was warned (find_reusable's ``log``)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: Any) -> None:
        self.warnings.append(message % args)


def both_records(folder: Path, runway_task_id: str, fingerprint: str) -> tuple[Path, Path]:
    """The index record and the record beside the stored object."""
    return folder / INDEX_FOLDER / f"{fingerprint}.json", folder / f"{runway_task_id}.mp4.runway.json"


def edit_records(folder: Path, runway_task_id: str, fingerprint: str, **changes: Any) -> None:
    """Change both records alike (so that they agree): what whoever can write the folder can do."""
    for path in both_records(folder, runway_task_id, fingerprint):
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_reused_result_is_where_its_folder_and_name_say_whatever_its_record_says(
    runway_conn, emulator, tmp_path
):
    runway_task_id, pushed, first = run_chain(tmp_path)
    fingerprint = pushed[refs.XCOM_RUNWAY_REQUEST]["fingerprint"]
    edit_records(tmp_path, runway_task_id, fingerprint, uri="s3://attacker-bucket/evil.mp4")
    second_id, again, second = run_chain(tmp_path)
    assert len(emulator.submissions()) == 1 and second_id == runway_task_id  # still reused...
    here = f"file://{tmp_path}/{runway_task_id}.mp4"
    # ... from where it is: the operator's output URL, the pushed record and the transfer's result.
    assert again["runway_task"]["output_urls"] == [here]
    assert again[refs.XCOM_RUNWAY_REQUEST]["reused"]["uri"] == here
    assert second["uri"] == first["uri"] == here and second["reused"] is True
    assert second["record_uri"] == f"{here}.runway.json"
    assert "attacker" not in json.dumps([again, second])


def test_a_record_without_a_name_is_generated_anew_with_one_warning(runway_conn, emulator, tmp_path, capsys):
    """It crashed the task with a TypeError; the docs promise "generate anew"."""
    runway_task_id, pushed, _ = run_chain(tmp_path)
    edit_records(tmp_path, runway_task_id, pushed[refs.XCOM_RUNWAY_REQUEST]["fingerprint"], name=None)
    capsys.readouterr()
    second_id, _, second = run_chain(tmp_path)
    assert len(emulator.submissions()) == 2 and second_id != runway_task_id and second["reused"] is False
    assert capsys.readouterr().out.count("Not reusing") == 1


GOOD_SHA = hashlib.sha256(b"video").hexdigest()
FINGERPRINT = "a" * 64


def stored_video(tmp_path: Path) -> tuple[ObjectStoragePath, StoredResult]:
    """A folder holding ``v.mp4`` (b"video"), and the well-formed record of it (not written yet)."""
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "v.mp4").write_bytes(b"video")
    record = StoredResult.of(
        name="v.mp4",
        uri=f"file://{folder}/v.mp4",
        runway_task_id="t",
        sha256=GOOD_SHA,
        size=5,
        content_type="video/mp4",
        stored_at=1.0,
        request=RequestRecord("/runway/pro/generate", "reverse", FINGERPRINT, {"prompt": "p"}),
    )
    return ObjectStoragePath(f"file://{folder}/"), record


def write_records(folder: ObjectStoragePath, text: str) -> None:
    """The same record text in the index and beside ``v.mp4``."""
    for path in (folder / "v.mp4.runway.json", folder / INDEX_FOLDER / f"{FINGERPRINT}.json"):
        os.makedirs(os.path.dirname(path.path), exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", None),
        ("name", 7),
        ("name", ""),
        ("name", "sub/v.mp4"),
        ("name", "..\\v.mp4"),
        ("name", ".v.mp4"),
        ("name", "v.mp4.runway.json"),
        ("uri", None),
        ("runway_task_id", ""),
        ("runway_task_id", 12),
        ("sha256", "x"),
        ("sha256", GOOD_SHA.upper()),
        ("sha256", GOOD_SHA + "0"),
        ("bytes", -1),
        ("bytes", "5"),
        ("bytes", True),
        ("bytes", 5.0),
        ("content_type", ["video/mp4"]),
        ("stored_at", "yesterday"),
        ("stored_at", float("nan")),
        ("route", 1),
        ("route_family", "elsewhere"),
        ("model", {}),
        ("request", ["prompt"]),
        ("submitted_at", -1),
        ("record_version", 2),
        ("record_version", "1"),
    ],
)
def test_a_malformed_record_is_not_reused_and_says_so_once(tmp_path, field, value):
    folder, record = stored_video(tmp_path)
    write_records(folder, json.dumps({**record.to_dict(), field: value}))
    log = WarningLog()
    assert find_reusable(folder, FINGERPRINT, log) is None
    assert len(log.warnings) == 1 and "generating anew" in log.warnings[0]
    # The same record, well-formed, is reused: it is the field that is refused.
    write_records(folder, json.dumps(record.to_dict()))
    assert find_reusable(folder, FINGERPRINT, log) is not None


@pytest.mark.parametrize("field", ["runway_task_id", "name", "uri", "bytes", "request"])
def test_a_record_missing_a_field_is_not_reused(tmp_path, field):
    record = StoredResult.of(
        name="v.mp4",
        uri="file:///v.mp4",
        runway_task_id="t",
        sha256=GOOD_SHA,
        size=5,
        content_type="video/mp4",
        stored_at=1.0,
        request=None,
    ).to_dict()
    del record[field]
    if field == "request":  # an older record may have none: read as an empty one
        assert StoredResult.from_dict(record).request == {}
    else:
        with pytest.raises(ValueError, match=field):
            StoredResult.from_dict(record)


@pytest.mark.parametrize("beside", ["gone", "another task", "garbled", "another checksum"])
def test_index_and_beside_records_that_disagree_are_generated_anew(
    runway_conn, emulator, tmp_path, capsys, beside
):
    runway_task_id, pushed, _ = run_chain(tmp_path)
    _, beside_record = both_records(tmp_path, runway_task_id, pushed[refs.XCOM_RUNWAY_REQUEST]["fingerprint"])
    written = json.loads(beside_record.read_text())
    if beside == "gone":
        beside_record.unlink()
    elif beside == "another task":
        beside_record.write_text(json.dumps({**written, "runway_task_id": "someone-elses-task"}))
    elif beside == "garbled":
        beside_record.write_text("{not json")
    else:
        beside_record.write_text(json.dumps({**written, "sha256": "0" * 64}))
    capsys.readouterr()
    second_id, _, second = run_chain(tmp_path)
    assert len(emulator.submissions()) == 2 and second_id != runway_task_id and second["reused"] is False
    assert capsys.readouterr().out.count("Not reusing") == 1


# -- what leaves: the request as XCom and records keep it ----------------------------------------------


def data_uri(size: int, media_type: str = "image/png") -> tuple[str, bytes]:
    """A ``data:`` URI carrying ``size`` bytes, and the bytes."""
    media = b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)
    return f"data:{media_type};base64,{base64.b64encode(media).decode()}", media


def test_a_data_uri_request_leaves_a_small_xcom_and_record_and_is_still_reused(
    runway_conn, emulator, tmp_path
):
    image, media = data_uri(3 * 1024 * 1024)
    summary = {"media_type": "image/png", "length": len(media), "sha256": hashlib.sha256(media).hexdigest()}
    runway_task_id, pushed, _ = run_chain(tmp_path, image=image)
    [job] = emulator.jobs.values()
    assert job.body["image"] == image  # the service got the image whole
    xcom = json.dumps(pushed[refs.XCOM_RUNWAY_REQUEST])
    record = (tmp_path / f"{runway_task_id}.mp4.runway.json").read_text()
    assert len(xcom) < 2048 and len(record) < 2048
    assert json.loads(xcom)["request"]["image"] == json.loads(record)["request"]["image"] == summary
    # The fingerprint is still over the body as sent: the rerun finds the record and pays nothing.
    generate, _ = chain(tmp_path, image=image)
    assert json.loads(record)["fingerprint"] == spend.request_fingerprint(generate.route, job.body)
    second_id, again, _ = run_chain(tmp_path, image=image)
    assert second_id == runway_task_id and len(emulator.submissions()) == 1
    assert len(json.dumps(again[refs.XCOM_RUNWAY_REQUEST])) < 4096


def test_data_uris_are_summarised_at_any_depth_of_the_request():
    image, media = data_uri(1000)
    video, clip = data_uri(2000, "video/mp4")
    summary = {"media_type": "image/png", "length": 1000, "sha256": hashlib.sha256(media).hexdigest()}
    clip_summary = {"media_type": "video/mp4", "length": 2000, "sha256": hashlib.sha256(clip).hexdigest()}
    payloads = {
        "promptImage": routes.image_to_video(
            prompt_image=[{"uri": image, "position": "first"}, {"uri": IMAGE, "position": "last"}]
        ),
        "referenceImages": routes.text_to_image(
            prompt_text="@boat", reference_images=[{"uri": image, "tag": "boat"}]
        ),
        "character": routes.character_performance(character=image, reference_video=video),
    }
    recorded = {
        key: RequestRecord.of(
            route="/r", route_family="official", fingerprint="f" * 64, payload=payload, submitted_at=None
        ).request
        for key, payload in payloads.items()
    }
    assert recorded["promptImage"]["promptImage"] == [
        {"uri": summary, "position": "first"},
        {"uri": IMAGE, "position": "last"},
    ]
    assert recorded["referenceImages"]["referenceImages"] == [{"uri": summary, "tag": "boat"}]
    assert recorded["character"]["character"]["uri"] == summary
    assert recorded["character"]["reference"]["uri"] == clip_summary
    assert "base64" not in json.dumps(recorded)


def test_a_presigned_url_keeps_no_query_in_the_xcom_or_the_record(runway_conn, emulator, tmp_path):
    signed = (
        "https://my-bucket.s3.amazonaws.com/frames/boat.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20261204&X-Amz-Signature=0f3c9a7e1b#frame"
    )
    runway_task_id, pushed, _ = run_chain(tmp_path, image=signed)
    [job] = emulator.jobs.values()
    assert job.body["image"] == signed  # sent whole: the service needs the signature
    record = json.loads((tmp_path / f"{runway_task_id}.mp4.runway.json").read_text())
    for kept in (pushed[refs.XCOM_RUNWAY_REQUEST]["request"], record["request"]):
        assert kept["image"] == "https://my-bucket.s3.amazonaws.com/frames/boat.jpg"
    assert "X-Amz" not in json.dumps([pushed, record]) and 'frame"' not in json.dumps(record)


def test_a_successful_run_logs_its_result_url_without_the_query(runway_conn, emulator, tmp_path, capsys):
    generate, _ = chain(tmp_path)
    generate.options = job_options(not_found_seconds=0, queued_seconds=0, running_seconds=0, signed_urls=True)
    runway_task_id = generate.execute(
        {"ti": RecordingTaskInstance(), "task_state_store": MemoryTaskStateStore()}
    )
    [url] = RunwayHook().get_task(runway_task_id, RouteFamily.REVERSE).output_urls
    path, _, query = url.partition("?")
    assert "X-Amz-Signature=" in query  # the emulator signs its result URLs as S3 does
    out = capsys.readouterr().out
    # The URL ends the message: a space before the logger's fields (Airflow 3.1+) or the line's end (3.0).
    assert re.search(rf"Runway task {runway_task_id} succeeded: {re.escape(path)}(\s|$)", out, re.M)
    assert "X-Amz" not in out and query.rpartition("=")[2] not in out


def test_a_request_pushed_whole_by_an_earlier_provider_is_cut_when_read():
    """An XCom pushed before this provider cut requests still makes a small record downstream."""
    image, media = data_uri(1000)
    pushed = {
        "route": "/runway/pro/generate",
        "route_family": "reverse",
        "fingerprint": "f" * 64,
        "request": {"image": image, "last_image": "https://cdn.example.com/end.jpg?token=secret"},
    }
    request = RequestRecord.from_dict(pushed)
    assert request is not None and request.request == {
        "image": {"media_type": "image/png", "length": 1000, "sha256": hashlib.sha256(media).hexdigest()},
        "last_image": "https://cdn.example.com/end.jpg",
    }


@pytest.mark.parametrize("damage", ["size", "nesting"])
def test_a_record_lying_about_the_size_or_nested_too_deep_is_not_reused(tmp_path, damage):
    """The size the transfer would report comes from the record: it must be the object's. And a
    record nested deeper than Python reads is refused, not a crash."""
    folder, record = stored_video(tmp_path)
    text = json.dumps(record.to_dict())
    if damage == "size":
        text = json.dumps({**record.to_dict(), "bytes": 5_000_000})
    else:
        text = text.replace('"request": {', '"request": {"x": ' + "[" * 200_000 + "]" * 200_000 + ", ")
    write_records(folder, text)
    log = WarningLog()
    assert find_reusable(folder, FINGERPRINT, log) is None
    why = "no longer has the recorded sha256 and size" if damage == "size" else "nested too deep"
    assert len(log.warnings) == 1 and why in log.warnings[0]
