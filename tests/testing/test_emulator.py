"""The emulator on its own, over HTTP: it must behave like the service, or the other tests lie."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from tests.helpers import TEST_API_KEY, free_port

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
