"""The review example on a real Airflow: a reviewer's decision, answered through the REST API,
decides whether anything more is spent.

Counts come from the emulator's own record of requests; every wait has a deadline.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from runway_provider.testing import Emulator
from tests.cluster import AirflowCluster
from tests.hitl import answer_required_action

pytestmark = pytest.mark.system
REVIEW_DAG = "example_runway_review"
UPSCALE = "/runwayml/v1/video_upscale"
PUBLISH_BRANCH = ("publish", "fresh_draft_url", "upscale", "store_published")
REGENERATE_BRANCH = ("regenerate", "review_new_take")


def xcom(cluster: AirflowCluster, run_id: str, task_id: str, key: str = "return_value") -> Any:
    [(value,)] = cluster.query(
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ?",
        REVIEW_DAG,
        run_id,
        task_id,
        key,
    )
    return json.loads(value)


def states(cluster: AirflowCluster, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in cluster.task_instances(REVIEW_DAG, run_id)}


def creates_for(emulator: Emulator, prompt_text: str) -> list[tuple[str, Any]]:
    """(path, seed) of every generation of this prompt, in the order they were sent."""
    return [
        (request["path"], emulator.jobs[request["runway_task_id"]].body.get("seed"))
        for request in emulator.submissions()
        if emulator.jobs[request["runway_task_id"]].body.get("promptText") == prompt_text
    ]


def upscales(emulator: Emulator) -> list[dict[str, Any]]:
    return [request for request in emulator.create_requests() if request["path"] == UPSCALE]


def asset_events(cluster: AirflowCluster, api: requests.Session, run_id: str, task_id: str) -> list[Any]:
    answer = api.get(
        f"{cluster.base_url}/api/v2/assets/events",
        params={"source_dag_id": REVIEW_DAG, "source_run_id": run_id, "source_task_id": task_id},
        timeout=30,
    )
    answer.raise_for_status()
    return list(answer.json()["asset_events"])


def aliases_of(cluster: AirflowCluster, api: requests.Session, asset_id: int) -> list[str]:
    answer = api.get(f"{cluster.base_url}/api/v2/assets/{asset_id}", timeout=30)
    answer.raise_for_status()
    return [alias["name"] for alias in answer.json()["aliases"]]


def test_publish_upscales_once_after_approval_and_announces_the_published_video(
    cluster: AirflowCluster,
    api: requests.Session,
    cluster_emulator: Emulator,
    start_review: Any,
    review_library: Path,
) -> None:
    prompt, run_id = "A lantern floats over a dark lake.", "review_publish"
    request = start_review(run_id, prompt)

    draft_id = xcom(cluster, run_id, "generate")
    draft_uri = f"file://{review_library}/drafts/{draft_id}.mp4"
    assert xcom(cluster, run_id, "store_draft")["uri"] == draft_uri
    assert (review_library / "drafts" / f"{draft_id}.mp4").is_file()
    [draft_event] = asset_events(cluster, api, run_id, "store_draft")
    assert draft_event["uri"] == draft_uri
    assert aliases_of(cluster, api, draft_event["asset_id"]) == ["runway-drafts"]
    # The reviewer is shown the prompt, the stored draft and a link that plays the video.
    video_url = xcom(cluster, run_id, "generate", "runway_task")["video_url"]
    assert request["subject"] == f"Publish this draft? {prompt}"
    assert request["options"] == ["Publish", "Regenerate", "Discard"]
    assert f"**Prompt:** {prompt}" in request["body"]
    assert f"**Stored draft:** `{draft_uri}`" in request["body"]
    assert f"[Watch the draft]({video_url})" in request["body"]
    assert requests.get(video_url, timeout=30).headers["Content-Type"] == "video/mp4"
    # Until someone decides, only the draft has been paid for.
    assert creates_for(cluster_emulator, prompt) == [("/runwayml/v1/image_to_video", 42)]
    upscales_before = len(upscales(cluster_emulator))

    answer = answer_required_action(api, cluster.base_url, REVIEW_DAG, run_id, "review", "Publish")
    assert answer.status_code == 200, answer.text
    assert answer.json()["chosen_options"] == ["Publish"]
    assert answer.json()["responded_by"]["name"] == "admin"
    assert cluster.wait_for_run(REVIEW_DAG, run_id, timeout=300) == "success"

    after = states(cluster, run_id)
    assert {task: after[task] for task in PUBLISH_BRANCH} == dict.fromkeys(PUBLISH_BRANCH, "success")
    assert {task: after[task] for task in (*REGENERATE_BRANCH, "discard")} == dict.fromkeys(
        (*REGENERATE_BRANCH, "discard"), "skipped"
    )
    # Exactly one upscale, of this draft, and no other generation.
    [upscale] = upscales(cluster_emulator)[upscales_before:]
    assert upscale["http_status"] == 200
    upscale_job = cluster_emulator.jobs[upscale["runway_task_id"]]
    assert upscale_job.body == {"model": "upscale_v1", "videoUri": video_url}
    assert creates_for(cluster_emulator, prompt) == [("/runwayml/v1/image_to_video", 42)]
    # The upscaled video under published/, named like its draft, announced on its own alias.
    published = review_library / "published" / f"{draft_id}.mp4"
    stored = xcom(cluster, run_id, "store_published")
    assert stored["uri"] == f"file://{published}"
    assert stored["runway_task_id"] == upscale["runway_task_id"]
    assert hashlib.sha256(published.read_bytes()).hexdigest() == stored["sha256"]
    [event] = asset_events(cluster, api, run_id, "store_published")
    assert event["uri"] == stored["uri"]
    assert event["extra"] == {
        "runway_task_id": upscale["runway_task_id"],
        "sha256": stored["sha256"],
        "bytes": stored["bytes"],
    }
    assert aliases_of(cluster, api, event["asset_id"]) == ["runway-published"]


def test_regenerate_asks_again_about_a_new_take_and_discard_spends_nothing_more(
    cluster: AirflowCluster,
    api: requests.Session,
    cluster_emulator: Emulator,
    start_review: Any,
    await_review: Any,
    review_library: Path,
) -> None:
    prompt, run_id = "A kite climbs over windy dunes.", "review_regenerate"
    upscales_before = len(upscales(cluster_emulator))
    start_review(run_id, prompt)
    first_draft = xcom(cluster, run_id, "generate")

    answer = answer_required_action(api, cluster.base_url, REVIEW_DAG, run_id, "review", "Regenerate")
    assert answer.status_code == 200, answer.text
    assert cluster.wait_for_run(REVIEW_DAG, run_id, timeout=300) == "success"
    after = states(cluster, run_id)
    assert {task: after[task] for task in REGENERATE_BRANCH} == dict.fromkeys(REGENERATE_BRANCH, "success")
    assert {task: after[task] for task in (*PUBLISH_BRANCH, "discard")} == dict.fromkeys(
        (*PUBLISH_BRANCH, "discard"), "skipped"
    )

    # The new take is a new run of the same DAG: same prompt, a new seed, its own draft and review.
    runs = api.get(f"{cluster.base_url}/api/v2/dags/{REVIEW_DAG}/dagRuns", timeout=30).json()["dag_runs"]
    [take] = [run for run in runs if run["conf"].get("regenerated_from") == run_id]
    take_id, seed = take["dag_run_id"], take["conf"]["seed"]
    assert take["conf"]["prompt_text"] == prompt and seed != 42
    request = await_review(take_id)
    assert f"**Seed:** {seed} (a new take of run `{run_id}`)" in request["body"]
    second_draft = xcom(cluster, take_id, "generate")
    assert f"drafts/{second_draft}.mp4`" in request["body"]
    assert creates_for(cluster_emulator, prompt) == [
        ("/runwayml/v1/image_to_video", 42),
        ("/runwayml/v1/image_to_video", seed),
    ]

    answer = answer_required_action(api, cluster.base_url, REVIEW_DAG, take_id, "review", "Discard")
    assert answer.status_code == 200, answer.text
    assert cluster.wait_for_run(REVIEW_DAG, take_id, timeout=300) == "success"
    after = states(cluster, take_id)
    assert after["discard"] == "success"
    assert {task: after[task] for task in (*PUBLISH_BRANCH, *REGENERATE_BRANCH)} == dict.fromkeys(
        (*PUBLISH_BRANCH, *REGENERATE_BRANCH), "skipped"
    )
    # Neither decision sent an upscale or any other generation; both drafts stay, nothing is published.
    assert len(upscales(cluster_emulator)) == upscales_before
    assert len(creates_for(cluster_emulator, prompt)) == 2
    for draft in (first_draft, second_draft):
        assert (review_library / "drafts" / f"{draft}.mp4").is_file()
        assert not (review_library / "published" / f"{draft}.mp4").exists()
    # A decision is final: a second answer is refused.
    again = answer_required_action(api, cluster.base_url, REVIEW_DAG, take_id, "review", "Publish")
    assert again.status_code == 409
    # Unless the review is cleared (how a review failed by an early answer is recovered): Airflow then
    # drops the earlier answer and asks again.
    cleared = api.post(
        f"{cluster.base_url}/api/v2/dags/{REVIEW_DAG}/clearTaskInstances",
        json={
            "dry_run": False,
            "only_failed": False,
            "dag_run_id": take_id,
            "task_ids": ["review"],
            "include_downstream": True,
        },
        timeout=30,
    )
    assert cleared.status_code == 200, cleared.text
    request = await_review(take_id)
    assert request["task_instance"]["try_number"] == 2
    assert (request["response_received"], request["chosen_options"]) == (False, None)
    answer = answer_required_action(api, cluster.base_url, REVIEW_DAG, take_id, "review", "Discard")
    assert answer.status_code == 200, answer.text
    assert cluster.wait_for_run(REVIEW_DAG, take_id, timeout=300) == "success"
    assert len(upscales(cluster_emulator)) == upscales_before
    assert len(creates_for(cluster_emulator, prompt)) == 2
