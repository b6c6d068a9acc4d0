"""What each stored record says was billed (records.billed_for), read once from the route and request."""

from __future__ import annotations

import json

import pytest

from runway_provider import routes
from runway_provider.records import RECORD_SUFFIX, StoredResult, billed_for
from tests.test_records import run_chain

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("route", "request_fields", "billed"),
    [
        (
            routes.GENERATE.path,
            {"prompt": "p", "model": "gen4", "ratio": "1280:720", "options": {"seconds": 10}},
            {"model": "gen4", "output": "video", "ratio": "1280:720", "seconds": 10},
        ),
        (
            routes.IMAGE_TO_VIDEO.path,
            {"model": "gen4_turbo", "ratio": "720:1280", "duration": 5},
            {"model": "gen4_turbo", "output": "video", "ratio": "720:1280", "seconds": 5},
        ),
        (
            routes.TEXT_TO_IMAGE.path,
            {"model": "gen4_image", "ratio": "1920:1080"},
            {"model": "gen4_image", "output": "image", "ratio": "1920:1080", "images": 1},
        ),
        # The length follows the input video: the request does not say it.
        (
            routes.UPSCALE_VIDEO.path,
            {"model": "upscale_v1", "videoUri": "https://example.com/v.mp4"},
            {"model": "upscale_v1", "output": "video", "ratio": None, "seconds": None},
        ),
        # A route outside the table: an image only when its path says so.
        (
            "/runwayml/v1/sketch_to_image",
            {"model": "m", "duration": True},
            {"model": "m", "output": "image", "ratio": None, "images": 1},
        ),
        (
            "/runway/pro/new_thing",
            {"duration": True},
            {"model": None, "output": "video", "ratio": None, "seconds": None},
        ),
    ],
)
def test_billed_for_reads_route_model_length_and_ratio(route, request_fields, billed):
    assert billed_for(route, request_fields) == {"route": route, **billed}


def test_a_stored_record_carries_what_was_billed(runway_conn, emulator, tmp_path):
    runway_task_id, _, _ = run_chain(tmp_path)
    record = json.loads((tmp_path / f"{runway_task_id}.mp4{RECORD_SUFFIX}").read_text())
    assert record["billed"] == {
        "route": "/runway/pro/generate",
        "model": "gen4",
        "output": "video",
        "ratio": "1280:720",
        "seconds": None,
    }
    assert StoredResult.from_dict(record).billed == record["billed"]


def test_a_record_written_before_billed_existed_still_reads():
    record = {
        "name": "a.mp4",
        "uri": "file:///a.mp4",
        "runway_task_id": "t",
        "sha256": "0" * 64,
        "bytes": 1,
        "content_type": "video/mp4",
        "stored_at": 1.0,
    }
    assert StoredResult.from_dict(record).billed is None
    with pytest.raises(ValueError, match="billed"):
        StoredResult.from_dict({**record, "billed": "10 seconds"})
