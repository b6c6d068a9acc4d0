"""Waits that take real seconds by design: what they prove is a pace on the wall clock.

Kind ``timing``: in-process like the unit tests, but each waits out seconds that no test setting
can shorten without changing what is measured, so ``make check`` leaves them to ``make test``.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.timing

IMAGE = "https://example.com/first.jpg"


def test_a_text_to_image_task_is_seen_within_five_seconds_of_its_end(runway_conn, emulator, context):
    from runway_provider.operators.runway import RunwayTextToImageOperator
    from runway_provider.testing import Scenario

    # A seconds-long image, waited on with no poll_interval given: the video pace (first poll 15 to
    # 30 s after submission) would see it 10 s or more after its end.
    emulator.scenario = Scenario(not_found_seconds=0.5, queued_seconds=1.0, running_seconds=4.0)
    op = RunwayTextToImageOperator(
        task_id="frame",
        prompt_text="@harbour at dawn",
        reference_images=[{"uri": IMAGE, "tag": "harbour"}],
        wait_for_completion=True,
        not_found_grace=5,
    )
    runway_task_id = op.execute(context)
    seen = time.time()
    ended = emulator.jobs[runway_task_id].finishes_at
    assert ended <= seen <= ended + 5
