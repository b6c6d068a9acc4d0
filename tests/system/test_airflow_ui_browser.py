"""The provider in the Airflow UI, in a real browser: Playwright driving Debian's Chromium, headless.

It logs in through Airflow's login page, fills the connection form for the Runway type, opens a
finished task's page and answers the review example's required action. The screenshots it takes are the ones in the docs: ``make screenshots``
writes them to docs/img/ui/ (``RUNWAY_SCREENSHOTS``); otherwise they go to a temporary folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from runway_provider.testing import Emulator, EmulatorServer
from tests.cluster import AirflowCluster
from tests.helpers import ADMIN_PASSWORD, EXAMPLE_DAG, TEST_API_KEY
from tests.hitl import hitl_url

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("RUNWAY_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# offline machine refuses; --no-sandbox because CI runs as root.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REVIEW_DAG = "example_runway_review"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("RUNWAY_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"No Chromium at {CHROMIUM}: `make test` installs Debian's chromium package; "
            "elsewhere set RUNWAY_CHROMIUM to a Chromium or Chrome binary."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, cluster: AirflowCluster) -> Iterator[Page]:
    """A page of a fresh browser context, logged in through Airflow's login page."""
    from playwright.sync_api import expect

    context = browser.new_context(base_url=cluster.base_url, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto("/")
    expect(page).to_have_url(f"{cluster.base_url}/auth/login?next=%2F")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{cluster.base_url}/")
    yield page
    context.close()


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one


def test_the_connection_form_offers_the_runway_type_with_its_fields(
    page: Page,
    cluster: AirflowCluster,
    api: requests.Session,
    cluster_emulator_server: EmulatorServer,
    screenshots: Path,
) -> None:
    from playwright.sync_api import expect

    page.goto("/connections")
    page.get_by_role("button", name="Add Connection").click()
    form = page.get_by_role("dialog")
    form.get_by_label("Connection ID").fill("runway_from_ui")
    form.get_by_role("combobox", name="Connection Type").fill("Runway")
    page.get_by_role("option", name="Runway (CometAPI)").click()

    base_url, api_key = form.get_by_label("Base URL"), form.get_by_label("API key")
    expect(base_url).to_have_attribute("placeholder", "https://api.cometapi.com")
    expect(api_key).to_have_attribute("placeholder", "Your CometAPI key")
    expect(api_key).to_have_attribute("type", "password")
    for hidden in ("Login", "Port", "Schema", "Host", "Password"):
        expect(form.get_by_text(hidden, exact=True)).to_have_count(0)
    form.screenshot(path=screenshots / "connection-form.png")

    base_url.fill(cluster_emulator_server.base_url)
    api_key.fill(TEST_API_KEY)
    form.get_by_role("button", name="Extra Fields", exact=True).click()
    # Airflow labels these inputs without tying label to input, so they are found by name.
    for label in ("X-Runway-Version", "Default callback URL", "Request timeout (seconds)"):
        expect(form.get_by_text(label, exact=True)).to_be_visible()
    expect(form.locator("input[name=element_runway_version]")).to_have_value("2024-11-06")
    expect(form.locator("input[name=element_timeout]")).to_have_value("60")
    callback_url = f"{cluster_emulator_server.base_url}/_emulator/callback"
    form.locator("input[name=element_callback_url]").fill(callback_url)
    form.screenshot(path=screenshots / "connection-extra-fields.png")
    form.get_by_role("button", name="Save").click()
    expect(page.get_by_role("cell", name="runway_from_ui", exact=True)).to_be_visible()

    # What the form saved is what the hook reads: the REST API shows it, the CLI tests it.
    saved = api.get(f"{cluster.base_url}/api/v2/connections/runway_from_ui", timeout=30).json()
    assert (saved["conn_type"], saved["host"], saved["password"]) == (
        "runway",
        cluster_emulator_server.base_url,
        "***",
    )
    assert json.loads(saved["extra"]) == {
        "runway_version": "2024-11-06",
        "callback_url": callback_url,
        "timeout": 60,
    }
    done = cluster.airflow("connections", "test", "runway_from_ui")
    assert "Connection success!" in done.stdout, done.stdout + done.stderr
    for name in ("connection-form.png", "connection-extra-fields.png"):
        assert_png(screenshots / name)


def test_a_finished_task_page_links_to_its_video(
    page: Page, cluster: AirflowCluster, finished_example_run: str, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    [(video_url,)] = cluster.query(
        "SELECT json_extract(value, '$.video_url') FROM xcom "
        "WHERE dag_id = ? AND run_id = ? AND task_id = 'wait_for_video' AND key = 'return_value'",
        EXAMPLE_DAG,
        finished_example_run,
    )
    page.goto(f"/dags/{EXAMPLE_DAG}/runs/{finished_example_run}/tasks/wait_for_video/details")
    link = page.get_by_role("link", name="Runway video")
    expect(link).to_have_attribute("href", video_url)
    expect(page.get_by_text("RunwayTaskSensor", exact=True).first).to_be_visible()
    page.screenshot(path=screenshots / "task-extra-link.png")
    assert_png(screenshots / "task-extra-link.png")

    video = page.request.get(video_url)
    assert video.status == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.body()[4:8] == b"ftyp"


def test_a_reviewer_sees_the_draft_and_decides_on_the_required_actions_page(
    page: Page,
    cluster: AirflowCluster,
    api: requests.Session,
    cluster_emulator: Emulator,
    start_review: Callable[..., dict[str, Any]],
    review_library: Path,
    screenshots: Path,
) -> None:
    from playwright.sync_api import expect

    run_id = "review_in_the_browser"
    request = start_review(run_id, "A paper boat drifts down a rain-soaked street at dusk.")
    [(draft_uri, video_url)] = cluster.query(
        "SELECT json_extract(d.value, '$.uri'), json_extract(g.value, '$.video_url') FROM xcom d JOIN xcom g "
        "ON g.dag_id = d.dag_id AND g.run_id = d.run_id AND g.task_id = 'generate' AND g.key = 'runway_task' "
        "WHERE d.dag_id = ? AND d.run_id = ? AND d.task_id = 'store_draft' AND d.key = 'return_value'",
        REVIEW_DAG,
        run_id,
    )

    # Browse -> Required Actions lists what waits for a person.
    page.goto("/required_actions")
    row = page.get_by_role("row").filter(has_text=run_id)
    expect(row.get_by_text("Choice Required")).to_be_visible()
    expect(row.get_by_role("link", name=request["subject"])).to_be_visible()
    # The list and its first row; the rest of the page is empty.
    page.screenshot(
        path=screenshots / "required-actions.png", clip={"x": 0, "y": 0, "width": 1280, "height": 250}
    )

    # The review itself: what was asked for, where the draft is stored, a link that plays it.
    row.get_by_role("link", name="review", exact=True).click()
    expect(page).to_have_url(
        f"{cluster.base_url}/dags/{REVIEW_DAG}/runs/{run_id}/tasks/review/required_actions"
    )
    expect(page.get_by_text(draft_uri, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Watch the draft")).to_have_attribute("href", video_url)
    for option in ("Publish", "Regenerate", "Discard"):
        expect(page.get_by_role("button", name=option, exact=True)).to_be_enabled()
    page.screenshot(path=screenshots / "review-decision.png")
    for name in ("required-actions.png", "review-decision.png"):
        assert_png(screenshots / name)

    # Discarding in the UI records the reviewer and ends the run without an upscale.
    upscales_before = [r for r in cluster_emulator.create_requests() if r["path"].endswith("/video_upscale")]
    page.get_by_role("button", name="Discard", exact=True).click()
    expect(page.get_by_text("Response received at")).to_be_visible()
    assert cluster.wait_for_run(REVIEW_DAG, run_id, timeout=300) == "success"
    answered = api.get(hitl_url(cluster.base_url, REVIEW_DAG, run_id, "review"), timeout=30).json()
    assert answered["chosen_options"] == ["Discard"]
    assert answered["responded_by_user"]["name"] == "admin"
    upscales = [r for r in cluster_emulator.create_requests() if r["path"].endswith("/video_upscale")]
    assert upscales == upscales_before
    draft = Path(draft_uri.removeprefix("file://"))
    assert draft.parent == review_library / "drafts" and draft.is_file()
    assert not (review_library / "published" / draft.name).exists()
