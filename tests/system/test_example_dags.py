"""The example DAGs under a real `airflow dags test`, against the emulator over HTTP."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import airflow
import pytest
import requests

from runway_provider.testing import Emulator, EmulatorServer, Scenario
from runway_provider.testing.sandbox import AirflowSandbox
from tests.cluster import AirflowCluster
from tests.helpers import TEST_API_KEY, free_port
from tests.hitl import answer_required_action, wait_for_required_action

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dags


@pytest.fixture(scope="module")
def dag_server() -> Iterator[EmulatorServer]:
    emulator = Emulator(
        api_key=TEST_API_KEY, scenario=Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=2)
    )
    with EmulatorServer(emulator) as server:
        yield server


@pytest.fixture(scope="module")
def sandbox(dag_server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> AirflowSandbox:
    home = tmp_path_factory.mktemp("airflow-home")
    return AirflowSandbox(
        home=home,
        dags_folder=ROOT / "example_dags",
        connection=dag_server.connection_json(),
        # Run conf may name places under this root only: every test's tmp_path lies in it.
        env={"RUNWAY_EXAMPLES_ROOT": f"file://{tmp_path_factory.getbasetemp()}/"},
    )


@pytest.fixture(autouse=True)
def fresh_emulator(dag_server: EmulatorServer) -> None:
    dag_server.emulator.reset()
    dag_server.emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=2)


# Airflow 3.0 and 3.1's Task SDK client logs every Variable it does not find at ERROR
# (airflow/sdk/api/client.py:322 in 3.0.6, :387 in 3.1.8; at debug from 3.2): there, the first read
# of a task instance's submission record (compat.VariableStateStore) finds none yet. The Execution
# API has no other way to ask whether a Variable exists (GET, PUT and DELETE only).
RECORD_NOT_FOUND = re.compile(
    r"\[error\s*\] Variable not found .* key=runway_submission:[0-9a-f]{64} status_code=404$"
)
LOGS_MISSING_VARIABLES = tuple(int(part) for part in airflow.__version__.split(".")[:2]) < (3, 2)


def assert_no_error_lines(output: str) -> None:
    """A successful run logs no ERROR line (Airflow's own "XCom not found" included)."""
    errors = [
        line
        for line in output.splitlines()
        if re.search(r"\[error\s*\]|\bERROR\b", line)
        and not (LOGS_MISSING_VARIABLES and RECORD_NOT_FOUND.search(line))
    ]
    assert errors == [], errors[:5]


def assert_no_key_anywhere(sandbox: AirflowSandbox, output: str) -> None:
    assert TEST_API_KEY not in output
    for table in ("xcom", "rendered_task_instance_fields", "trigger", "task_instance", "log"):
        assert TEST_API_KEY not in sandbox.database_text(table), table
    for path in sandbox.home.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ""):
            assert TEST_API_KEY not in path.read_text(errors="replace"), path


def test_generate_then_deferrable_sensor(sandbox, dag_server):
    # Long enough to outlast the sensor's start: Airflow 3.0's `dags test` takes seconds to start a task.
    dag_server.emulator.scenario = Scenario(not_found_seconds=1, queued_seconds=1, running_seconds=8)
    dag_id = "example_runway_generate_and_sense"
    result = sandbox.dags_test(dag_id)
    assert result.returncode == 0, result.output[-4000:]
    assert_no_error_lines(result.output)
    [runway_task_id] = sandbox.xcom(dag_id, "generate")
    assert sandbox.xcom(dag_id, "generate", "runway_task_id") == [runway_task_id]
    [runway_task] = sandbox.xcom(dag_id, "wait_for_video")
    assert runway_task["runway_task_id"] == runway_task_id
    assert runway_task["video_url"] == f"{dag_server.base_url}/_emulator/media/{runway_task_id}.mp4"
    assert sandbox.xcom(dag_id, "report") == [runway_task["video_url"]]
    # Airflow 3 resolves extra links on the worker when the task finishes and keeps them in XCom.
    assert sandbox.xcom(dag_id, "wait_for_video", "_link_RunwayVideoLink") == [runway_task["video_url"]]
    assert sandbox.xcom(dag_id, "generate", "_link_RunwayVideoLink") == [""]  # it did not wait
    assert [s["runway_task_id"] for s in dag_server.emulator.submissions()] == [runway_task_id]
    # The sensor waited in the trigger (several polls), not by holding a worker in poke mode.
    assert "Runway task" in result.output and "deferring" in result.output
    assert_no_key_anywhere(sandbox, result.output)


def test_generate_and_wait_in_one_deferrable_task(sandbox, dag_server):
    dag_id = "example_runway_generate_deferrable"
    result = sandbox.dags_test(dag_id)
    assert result.returncode == 0, result.output[-4000:]
    assert_no_error_lines(result.output)
    [runway_task_id] = sandbox.xcom(dag_id, "generate_and_wait")
    [runway_task] = sandbox.xcom(dag_id, "generate_and_wait", "runway_task")
    assert runway_task["status"] == "SUCCEEDED" and runway_task["runway_task_id"] == runway_task_id
    assert sandbox.xcom(dag_id, "generate_and_wait", "_link_RunwayVideoLink") == [runway_task["video_url"]]
    [job] = dag_server.emulator.jobs.values()
    assert job.body["style"] == "cinematic" and job.body["image"] == "https://example.com/paper-boat.jpg"
    assert_no_key_anywhere(sandbox, result.output)


def test_mapped_batch(sandbox, dag_server):
    dag_id = "example_runway_mapped_batch"
    result = sandbox.dags_test(dag_id)
    assert result.returncode == 0, result.output[-4000:]
    assert_no_error_lines(result.output)
    ids = sandbox.xcom(dag_id, "generate")
    assert len(ids) == 3 and len(set(ids)) == 3
    prompts = sorted(job.body["prompt"] for job in dag_server.emulator.jobs.values())
    from example_dags.example_runway_mapped_batch import PROMPTS

    assert prompts == sorted(PROMPTS)
    tasks = sandbox.xcom(dag_id, "wait_for_video")
    assert [t["runway_task_id"] for t in tasks] == ids
    [urls] = sandbox.xcom(dag_id, "collect")
    assert urls == [t["video_url"] for t in tasks]


def test_failed_generation_fails_the_run_with_the_task_id(sandbox, dag_server):
    dag_server.emulator.scenario = Scenario(
        not_found_seconds=0.5,
        queued_seconds=0.5,
        running_seconds=0.5,
        outcome="failed",
        failure="Blurry frame",
    )
    dag_id = "example_runway_generate_deferrable"
    result = sandbox.dags_test(dag_id)
    [submission] = dag_server.emulator.submissions()
    states = sandbox.task_states(dag_id)
    assert states[("generate_and_wait", -1)] == "failed"
    assert "RunwayBadOutputError" in result.output  # the emulator fails with INTERNAL.BAD_OUTPUT.CODE01
    assert submission["runway_task_id"] in result.output and "Blurry frame" in result.output
    # The id of the failed generation stays in XCom for whoever investigates.
    assert sandbox.xcom(dag_id, "generate_and_wait", "runway_task_id") == [submission["runway_task_id"]]


def test_bad_input_fails_the_run_without_any_request(sandbox, dag_server):
    dag_id = "example_runway_generate_and_sense"
    result = sandbox.dags_test(dag_id, "--conf", json.dumps({"image_url": "not-a-url"}))
    assert sandbox.task_states(dag_id)[("generate", -1)] == "failed"
    assert "Invalid `image`" in result.output
    assert dag_server.emulator.requests == []


@pytest.mark.parametrize(
    ("dag_id", "conf_key", "value"),
    [
        ("example_runway_content_batch", "destination", "{root}/../escaped/"),
        ("example_runway_content_batch", "destination", "s3://aws_default@another-bucket/runway/"),
        ("example_runway_content_batch", "sheet", "/etc/passwd"),
        ("example_runway_review", "destination", "file:///tmp/elsewhere/"),
    ],
    ids=["dot-dot", "another connection", "a sheet elsewhere", "review elsewhere"],
)
def test_run_conf_outside_the_examples_root_is_refused_before_anything_is_sent(
    sandbox, dag_server, tmp_path_factory, dag_id, conf_key, value
):
    root = tmp_path_factory.getbasetemp()
    value = value.format(root=f"file://{root}")
    result = sandbox.dags_test(dag_id, "--conf", json.dumps({conf_key: value}))
    states = sandbox.task_states(dag_id)
    assert states[("check_run_conf", -1)] == "failed", result.output[-4000:]
    assert {state for (task, _), state in states.items() if task != "check_run_conf"} <= {
        "upstream_failed",
        "skipped",
        None,
    }
    assert (
        f"Run conf `{conf_key}` ({value!r}) is outside RUNWAY_EXAMPLES_ROOT (file://{root}/)" in result.output
    )
    assert dag_server.emulator.requests == [] and dag_server.emulator.media_requests == []
    assert not (root.parent / "escaped").exists()


def test_official_routes(sandbox, dag_server):
    dag_id = "example_runway_official_routes"
    result = sandbox.dags_test(dag_id)
    assert result.returncode == 0, result.output[-4000:]
    assert_no_error_lines(result.output)
    states = sandbox.task_states(dag_id)
    assert set(states.values()) == {"success"}, states
    [source] = sandbox.xcom(dag_id, "wait_image_to_video")
    restyle = next(
        job for job in dag_server.emulator.jobs.values() if job.body.get("promptText", "").startswith("Turn")
    )
    assert restyle.body["videoUri"] == source["video_url"] and restyle.official
    assert {job.body["model"] for job in dag_server.emulator.jobs.values()} == {
        "gen4_image",
        "gen4_turbo",
        "gen4_aleph",
        "upscale_v1",
        "act_two",
    }
    assert len(dag_server.emulator.submissions()) == 5
    [storyboard] = sandbox.xcom(dag_id, "storyboard", "runway_task")
    assert storyboard["video_url"].endswith(".png") and storyboard["route_family"] == "official"


def test_reverse_routes(sandbox, dag_server):
    dag_id = "example_runway_reverse_routes"
    result = sandbox.dags_test(dag_id)
    assert result.returncode == 0, result.output[-4000:]
    assert_no_error_lines(result.output)
    paths = sorted(r["path"] for r in dag_server.emulator.submissions())
    assert paths == ["/runway/pro/act_one", "/runway/pro/generate", "/runway/pro/video2video"]
    [text_only] = [
        job
        for job in dag_server.emulator.jobs.values()
        if job.body.get("prompt", "").startswith("A lighthouse")
    ]
    assert "image" not in text_only.body
    assert text_only.body["options"]["seconds"] == 5 and text_only.body["ratio"] == "16:9"
    for task_id in ("text_to_video", "video2video", "act_one"):
        [task] = sandbox.xcom(dag_id, task_id, "runway_task")
        assert task["status"] == "SUCCEEDED"


def test_review_waits_for_an_answer_from_an_api_server_on_the_same_home(sandbox, dag_server, tmp_path):
    """Under `airflow dags test` the review waits for a person as on a real Airflow: the run stays
    parked until an api-server on the same metadata database records an answer (UI or REST).
    This is how a user tries the example offline; answering "Publish" runs the paid branch too."""
    dag_id = "example_runway_review"
    library = tmp_path / "library"
    sandbox.migrate()
    api_server = AirflowCluster(
        home=sandbox.home,
        dags_folder=sandbox.dags_folder,
        connection=sandbox.env["AIRFLOW_CONN_RUNWAY_DEFAULT"],
        api_port=free_port(),
    )
    output = tmp_path / "dags-test.log"
    conf = json.dumps({"destination": f"file://{library}/"})
    with output.open("w") as out:
        dags_test = subprocess.Popen(
            [sys.executable, "-m", "airflow", "dags", "test", dag_id, "--conf", conf],
            env=sandbox.env,
            cwd=sandbox.home,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def still_running() -> None:
        api_server.check_running()
        assert dags_test.poll() is None, output.read_text()[-4000:]

    try:
        api_server.start_api_server()  # every visitor is an admin: no login on this throwaway home
        api = requests.Session()
        request = wait_for_required_action(
            api, api_server.base_url, dag_id, "~", "review", timeout=300, alive=still_running
        )
        # Nothing paid beyond the draft while the run waits for the reviewer.
        assert [r["path"] for r in dag_server.emulator.create_requests()] == ["/runwayml/v1/image_to_video"]
        run_id = request["task_instance"]["dag_run_id"]
        answer = answer_required_action(api, api_server.base_url, dag_id, run_id, "review", "Publish")
        assert answer.status_code == 200, answer.text
        assert dags_test.wait(300) == 0, output.read_text()[-4000:]
    finally:
        if dags_test.poll() is None:
            dags_test.kill()
            dags_test.wait(30)
        api_server.stop()

    log = output.read_text()
    assert "Waiting for Human-in-the-loop input for tasks: ['review']" in log
    assert_no_error_lines(log)
    states = sandbox.task_states(dag_id)
    assert {task for (task, _), state in states.items() if state == "skipped"} == {
        "regenerate",
        "review_new_take",
        "discard",
    }
    assert {state for state in states.values() if state != "skipped"} == {"success"}
    [draft_id] = sandbox.xcom(dag_id, "generate")
    [upscale_id] = sandbox.xcom(dag_id, "upscale")
    paths = [r["path"] for r in dag_server.emulator.create_requests()]
    assert paths == ["/runwayml/v1/image_to_video", "/runwayml/v1/video_upscale"]
    published = library / "published" / f"{draft_id}.mp4"
    [stored] = sandbox.xcom(dag_id, "store_published")
    assert stored["uri"] == f"file://{published}" and stored["runway_task_id"] == upscale_id
    assert hashlib.sha256(published.read_bytes()).hexdigest() == stored["sha256"]
    assert (library / "drafts" / f"{draft_id}.mp4").is_file()
    assert_no_key_anywhere(sandbox, log)
