"""The emulator on its own, over HTTP: it must behave like the service, or the other tests lie."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.testing.workload import PRESETS, Timeline, Workload
from tests.helpers import TEST_API_KEY, free_port

pytestmark = pytest.mark.unit

BODY = {
    "prompt": "A paper boat",
    "image": "https://example.com/a.jpg",
    "model": "gen4",
    "ratio": "1280:720",
    "callback_url": "https://hooks.example/cb",
}


def post(server: EmulatorServer, path: str, body: Any, key: str = TEST_API_KEY) -> requests.Response:
    return requests.post(
        server.base_url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_refuses_a_wrong_key(server):
    answer = post(server, "/runway/pro/generate", BODY, key="sk-other")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "comet_api_error"
    assert server.emulator.jobs == {}


def test_refuses_a_missing_callback_like_cometapi(server):
    answer = post(server, "/runway/pro/generate", {**BODY, "callback_url": ""})
    assert answer.status_code == 200
    assert answer.json() == {"code": "callback_url_empty", "msg": "callback_url_empty", "data": None}


@pytest.mark.parametrize(
    ("field", "named"),
    # Without an image the create is a text-only video, which needs options.seconds (and motion_vector).
    [("prompt", "prompt"), ("image", "options.seconds"), ("model", "model"), ("ratio", "ratio")],
)
def test_refuses_missing_required_fields(server, field, named):
    answer = post(server, "/runway/pro/generate", {k: v for k, v in BODY.items() if k != field})
    assert answer.status_code == 400
    assert named in answer.json()["error"]["message"]
    assert server.emulator.jobs == {}


def test_rejects_unknown_scenario_keys_by_name(server):
    answer = post(server, "/runway/pro/generate", {**BODY, "options": {"emulator": {"outcom": "failed"}}})
    assert answer.status_code == 400
    assert "outcom" in answer.json()["error"]["message"]


def test_moves_a_task_through_its_timeline(emulator, server):
    emulator.scenario = Scenario(not_found_seconds=0.3, queued_seconds=0.3, running_seconds=0.3)
    task_id = post(server, "/runway/pro/generate", BODY).json()["data"]["task_id"]
    seen = []
    deadline = time.time() + 5
    while time.time() < deadline:
        answer = post(server, "/runway/feed", {"task_id": task_id})
        data = answer.json()["data"]
        seen.append("task_not_exist" if answer.status_code == 400 else data["status"])
        if data and data["status"] == "SUCCESS":
            break
        time.sleep(0.05)
    ordered = list(dict.fromkeys(seen))
    assert ordered == ["task_not_exist", "QUEUED", "IN_PROGRESS", "SUCCESS"]
    final = post(server, "/runway/feed", {"task_id": task_id}).json()["data"]
    assert final["result_url"] == final["data"]["output"][0]
    assert final["progress"] == "100%"


def test_serves_a_real_mp4(emulator, server):
    emulator.scenario = Scenario(not_found_seconds=0, queued_seconds=0, running_seconds=0)
    task_id = post(server, "/runway/pro/generate", BODY).json()["data"]["task_id"]
    url = post(server, "/runway/feed", {"task_id": task_id}).json()["data"]["result_url"]
    video = requests.get(url, timeout=10)
    assert video.headers["Content-Type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp" and len(video.content) > 1000
    assert requests.get(server.base_url + "/_emulator/media/x.txt", timeout=10).status_code == 404


def test_never_appearing_task(emulator, server):
    task_id = post(
        server, "/runway/pro/generate", {**BODY, "options": {"emulator": {"outcome": "never_appears"}}}
    ).json()["data"]["task_id"]
    time.sleep(1.5)
    answer = post(server, "/runway/feed", {"task_id": task_id})
    assert answer.status_code == 400 and answer.json()["code"] == "task_not_exist"


def test_random_faults_are_repeatable_with_a_seed():
    def run() -> list[Any]:
        with EmulatorServer(
            Emulator(api_key=TEST_API_KEY, fault_rate=0.5, fault_kinds=("429", "503"), seed=7)
        ) as server:
            return [post(server, "/runway/feed", {"task_id": "x"}).status_code for _ in range(12)]

    first = run()
    assert first == run()
    assert {429, 503} & set(first) and 400 in first


def test_control_routes(emulator, server):
    post(server, "/runway/pro/generate", BODY)
    jobs = requests.get(server.base_url + "/_emulator/jobs", timeout=10).json()
    assert [job["prompt"] for job in jobs] == ["A paper boat"]
    configured = post(
        server, "/_emulator/config", {"scenario": {"outcome": "failed"}, "fault_rate": 0}
    ).json()
    assert configured["scenario"]["outcome"] == "failed"
    assert post(server, "/_emulator/config", {"scenario": {"shape": "xml"}}).status_code == 400
    recorded = requests.get(server.base_url + "/_emulator/requests", timeout=10).json()
    assert [r["path"] for r in recorded] == ["/runway/pro/generate"]  # control routes are not recorded
    post(server, "/_emulator/reset", {})
    assert emulator.jobs == {} and emulator.requests == []


def test_a_spent_balance_is_refused_as_cometapis_gateway_refuses_it(emulator, server):
    once = {**BODY, "options": {"emulator": {"create_faults": ["spent_balance"]}}}
    refused = post(server, "/runway/pro/generate", once)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "comet_api_error",
        "",
        "insufficient_user_quota",
    )
    assert error["message"].startswith("user quota is not enough (request id: ")
    assert emulator.jobs == {}
    assert post(server, "/runway/pro/generate", once).status_code == 200  # a create fault is used once
    # An account-wide spent balance refuses every create, of either family, until it is topped up.
    configured = post(server, "/_emulator/config", {"balance_spent": True}).json()
    assert configured["balance_spent"] is True
    assert post(server, "/runway/pro/generate", BODY).status_code == 403
    official = requests.post(
        server.base_url + "/runwayml/v1/image_to_video",
        json={"model": "gen4_turbo", "promptImage": "https://example.com/a.jpg"},
        headers={"Authorization": f"Bearer {TEST_API_KEY}", "X-Runway-Version": "2024-11-06"},
        timeout=10,
    )
    assert official.status_code == 403 and official.json()["error"]["code"] == "insufficient_user_quota"
    assert len(emulator.jobs) == 1
    assert post(server, "/_emulator/config", {"balance_spent": "yes"}).status_code == 400
    post(server, "/_emulator/config", {"balance_spent": False})
    assert post(server, "/runway/pro/generate", BODY).status_code == 200
    assert [r.get("fault") for r in emulator.create_requests()] == [
        "spent_balance",
        None,
        "spent_balance",
        "spent_balance",
        None,
    ]


def test_console_command_serves_a_spent_balance():
    port = free_port()
    command = [str(Path(sys.executable).parent / "runway-emulator"), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--api-key", TEST_API_KEY, "--balance-spent"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "Runway emulator on" in process.stdout.readline()
        answer = post(EmulatorServer(port=port), "/runway/pro/generate", BODY)
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "insufficient_user_quota"
    finally:
        process.terminate()
        process.wait(10)


def test_console_command_serves():
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "runway-emulator"),
        "--port",
        str(port),
        "--api-key",
        TEST_API_KEY,
    ]
    command += ["--scenario", json.dumps({"outcome": "failed"})]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "Runway emulator on" in process.stdout.readline()
        # The banner promises a listening socket: connect at once, without any retry.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        server = EmulatorServer(port=port)
        answer = post(server, "/runway/pro/generate", BODY)
        assert answer.json()["code"] == 200
    finally:
        process.terminate()
        process.wait(10)


def test_console_command_prints_the_connection_to_paste():
    """The export line works as printed: a shell that runs it has a connection the hook and the
    transfer accept, the emulator's own media host allowed."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "runway-emulator"), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert process.stdout.readline().startswith(f"Runway emulator on http://127.0.0.1:{port} ")
        assert "Connect Airflow" in process.stdout.readline()
        export = process.stdout.readline().rstrip("\n")
        shell = subprocess.run(
            ["bash", "-c", f'{export}\nprintf %s "$AIRFLOW_CONN_RUNWAY_DEFAULT"'],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(shell.stdout) == json.loads(EmulatorServer(port=port).connection_json())
        assert json.loads(shell.stdout)["extra"]["allowed_media_hosts"] == ["127.0.0.1"]
    finally:
        process.terminate()
        process.wait(10)


# --- realistic workload: each job its own timeline ---------------------------------------------

OFFICIAL_BODY = {"model": "gen4_turbo", "promptImage": "https://example.com/a.jpg"}
OFFICIAL_HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}", "X-Runway-Version": "2024-11-06"}


def official_create(server: EmulatorServer) -> str:
    answer = requests.post(
        server.base_url + "/runwayml/v1/image_to_video",
        json=OFFICIAL_BODY,
        headers=OFFICIAL_HEADERS,
        timeout=10,
    )
    return answer.json()["id"]


def official_task(server: EmulatorServer, task_id: str) -> dict[str, Any]:
    answer = requests.get(
        server.base_url + f"/runwayml/v1/tasks/{task_id}", headers=OFFICIAL_HEADERS, timeout=10
    )
    return answer.json()


def feed_create(server: EmulatorServer) -> str:
    """A reverse-format job answered in the feed's wrapper, whatever the default shape."""
    body = {**BODY, "options": {"emulator": {"shape": "wrapped"}}}
    return post(server, "/runway/pro/generate", body).json()["data"]["task_id"]


def bulk_timelines(workload: dict[str, Any], count: int) -> list[Timeline]:
    emulator = Emulator(api_key=TEST_API_KEY)
    with EmulatorServer(emulator) as server:
        post(server, "/_emulator/jobs", {"count": count, "scenario": {"workload": workload}})
    return [job.course for job in emulator.jobs.values()]


def test_workload_same_seed_same_draws():
    first = bulk_timelines({"seed": 11}, 20)
    assert first == bulk_timelines({"seed": 11}, 20)
    assert first != bulk_timelines({"seed": 12}, 20)
    assert len({t.running_seconds for t in first}) == 20  # every job its own generation time
    assert Workload(seed=11).draw(5) == first[5]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_workload_is_one_the_emulator_accepts(name):
    # The benchmark sends each preset as JSON: the emulator draws the same timelines from it.
    preset = PRESETS[name]
    assert bulk_timelines(preset.to_dict(), 5) == [preset.draw(i) for i in range(5)]


def test_the_images_preset_is_made_in_seconds_and_the_short_videos_in_minutes():
    images = [PRESETS["images"].draw(i) for i in range(300)]
    assert all(t.total_seconds <= 21 and t.throttled_seconds == 0 for t in images)
    videos = [PRESETS["short_videos"].draw(i) for i in range(300)]
    assert all(60 <= t.running_seconds <= 120 for t in videos)


def test_workload_draws_stay_in_their_ranges_and_shares():
    workload = Workload(seed=1, throttled_share=0.25, stall_share=0.5, no_progress_share=0.1)
    timelines = [workload.draw(i) for i in range(2000)]
    assert all(0 <= t.not_found_seconds <= 3 and 0 <= t.queued_seconds <= 60 for t in timelines)
    assert all(30 <= t.running_seconds <= 240 and 0.7 <= t.curve <= 1.4 for t in timelines)
    throttled = [t for t in timelines if t.throttled_seconds > 0]
    assert 0.2 < len(throttled) / 2000 < 0.3
    assert all(10 <= t.throttled_seconds <= 120 for t in throttled)
    assert 0.45 < sum(t.stall_length > 0 for t in timelines) / 2000 < 0.55
    assert 0.07 < sum(not t.reports_progress for t in timelines) / 2000 < 0.13


def test_timeline_goes_through_every_phase_in_order():
    timeline = Timeline(not_found_seconds=2, throttled_seconds=10, queued_seconds=5, running_seconds=100)
    assert [timeline.phase(t)[0] for t in (0, 1.9, 2, 11.9, 12, 16.9, 17, 116.9, 117, 500)] == [
        "not_found",
        "not_found",
        "throttled",
        "throttled",
        "queued",
        "queued",
        "running",
        "running",
        "done",
        "done",
    ]
    assert timeline.phase(3) == ("throttled", None)
    assert timeline.phase(117) == ("done", 1.0)
    assert timeline.total_seconds == 117


def test_timeline_progress_is_non_linear_stalls_and_changes_once_per_tick():
    convex = Timeline(0, 0, 0, 100, curve=1.5, progress_tick_seconds=5)
    assert convex.progress(50) == round(0.5**1.5, 2)  # behind the elapsed fraction
    assert convex.progress(50) == convex.progress(54.9)  # one value per tick
    assert convex.progress(55) > convex.progress(54.9)
    stalled = Timeline(0, 0, 0, 100, stall_start=0.4, stall_length=0.2)
    assert stalled.progress(40) == stalled.progress(59) == 0.5
    assert stalled.progress(80) == 0.75  # catches up: the run still ends on time
    assert Timeline(0, 0, 0, 100, reports_progress=False).progress(50) is None


def test_timeline_noise_is_bounded_repeatable_and_sometimes_goes_back():
    noisy = Timeline(0, 0, 0, 200, noise=0.03, progress_tick_seconds=5, noise_seed=9)
    values = [noisy.progress(t) for t in range(0, 200)]
    assert all(0 <= v <= 0.99 for v in values)
    assert values == [noisy.progress(t) for t in range(0, 200)]
    assert any(later < earlier for earlier, later in itertools.pairwise(values))
    assert max(abs(v - t / 200) for t, v in enumerate(values)) < 0.2


def test_plain_scenario_keeps_its_linear_progress():
    plain = Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=4).plain_timeline()
    assert plain.progress(1) == 0.25
    assert plain.phase(1.5) == ("queued", None)


def test_workload_progress_the_way_each_route_family_reports_it(emulator, server):
    # One long run, sped up: every answer below is about the same running job.
    running = {"seed": 2, "not_found_seconds": [0, 0], "throttled_share": 0, "queued_seconds": [0, 0]}
    running |= {"running_seconds": [3000, 3000], "curve": [1, 1], "noise": 0, "progress_tick_seconds": 0}
    emulator.scenario = Scenario(workload=running, time_scale=1000, shape="official")
    official_id = official_create(server)
    feed_id = feed_create(server)
    time.sleep(0.3)
    official = official_task(server, official_id)
    assert official["status"] == "RUNNING"
    assert isinstance(official["progress"], float) and 0 < official["progress"] < 1
    data = post(server, "/runway/feed", {"task_id": feed_id}).json()["data"]
    assert data["status"] == "IN_PROGRESS"
    assert re.fullmatch(r"[1-9]\d?%", data["progress"])
    assert data["data"]["progress"] == int(data["progress"].rstrip("%")) / 100


def test_workload_throttled_and_silent_jobs(emulator, server):
    throttled = {
        "seed": 3,
        "not_found_seconds": [0, 0],
        "throttled_share": 1,
        "throttled_seconds": [999, 999],
    }
    emulator.scenario = Scenario(workload=throttled, shape="official")
    official_id = official_create(server)
    feed_id = feed_create(server)
    assert official_task(server, official_id)["status"] == "THROTTLED"
    data = post(server, "/runway/feed", {"task_id": feed_id}).json()["data"]
    # new-api's wrapper has no throttled status: QUEUED outside, Runway's THROTTLED inside.
    assert (data["status"], data["data"]["status"]) == ("QUEUED", "THROTTLED")
    silent = {"seed": 3, "not_found_seconds": [0, 0], "throttled_share": 0, "queued_seconds": [0, 0]}
    emulator.scenario = Scenario(workload={**silent, "no_progress_share": 1}, shape="official")
    official_id = official_create(server)
    feed_id = feed_create(server)
    official = official_task(server, official_id)
    assert official["status"] == "RUNNING" and "progress" not in official
    data = post(server, "/runway/feed", {"task_id": feed_id}).json()["data"]
    assert (data["status"], data["progress"]) == ("IN_PROGRESS", "0%")


def test_time_scale_compresses_a_job(emulator, server):
    emulator.scenario = Scenario(not_found_seconds=10, queued_seconds=20, running_seconds=70, time_scale=400)
    task_id = post(server, "/runway/pro/generate", BODY).json()["data"]["task_id"]
    job = emulator.jobs[task_id]
    assert job.finishes_at - job.created_at == pytest.approx(100 / 400)
    created = post(
        server, "/_emulator/jobs", {"count": 3, "scenario": {"workload": {"seed": 4}, "time_scale": 10}}
    )
    finish_times = created.json()["finish_times"]
    bulk = list(emulator.jobs.values())[1:]
    assert [f - job.created_at for f, job in zip(finish_times, bulk, strict=True)] == pytest.approx(
        [Workload(seed=4).draw(i).total_seconds / 10 for i in range(3)]
    )


@pytest.mark.parametrize(
    ("scenario", "named"),
    [
        ({"workload": {"sede": 1}}, "sede"),
        ({"workload": {"running_seconds": [240, 30]}}, "running_seconds"),
        ({"workload": {"throttled_share": 2}}, "throttled_share"),
        ({"workload": {"noise": "lots"}}, "noise"),
        ({"workload": {"seed": 1.5}}, "seed"),
        ({"workload": [1, 2]}, "workload"),
        ({"time_scale": 0}, "time_scale"),
        ({"time_scale": "fast"}, "time_scale"),
    ],
)
def test_rejects_a_bad_workload_by_name(server, scenario, named):
    answer = post(server, "/_emulator/config", {"scenario": scenario})
    assert answer.status_code == 400
    assert named in answer.json()["error"]["message"]


def test_bulk_jobs_of_either_route_family(emulator, server):
    scenario = {"not_found_seconds": 0, "shape": "official"}
    [official_id] = post(
        server, "/_emulator/jobs", {"count": 1, "scenario": scenario, "official": True}
    ).json()["runway_task_ids"]
    [feed_id] = post(server, "/_emulator/jobs", {"count": 1, "scenario": scenario}).json()["runway_task_ids"]
    assert official_task(server, official_id)["status"] == "PENDING"
    assert official_task(server, feed_id)["code"] == "task_not_exist"  # each family knows its own
    assert post(server, "/runway/feed", {"task_id": official_id}).json()["code"] == "task_not_exist"
