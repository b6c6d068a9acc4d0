"""The docs site builds strictly and really contains the example code it includes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.docs
def test_docs_build_strictly_with_examples_pulled_from_the_dags(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {path: path.read_text() for path in tmp_path.rglob("*.html")}
    assert not [path for path, text in pages.items() if "--8&lt;--" in text or "--8<--" in text]
    generate_page = re.sub(r"<[^>]+>", "", pages[tmp_path / "guides" / "generate" / "index.html"])
    example = (ROOT / "example_dags" / "example_runway_generate_deferrable.py").read_text()
    assert 'prompt="A lighthouse beam sweeps over a stormy sea at dusk."' in example
    assert "A lighthouse beam sweeps over a stormy sea at dusk." in generate_page
    review_page = re.sub(r"<[^>]+>", "", pages[tmp_path / "content-production" / "index.html"])
    review_example = (ROOT / "example_dags" / "example_runway_review.py").read_text()
    assert 'options=["Publish", "Regenerate", "Discard"]' in review_example
    assert 'options=["Publish", "Regenerate", "Discard"]' in review_page
    assert "RunwayUpscaleVideoOperator(" in review_example and "RunwayUpscaleVideoOperator(" in review_page
    # The questions a newcomer asks have pages: where to start, what to install, what it costs.
    assert (
        'href="https://www.cometapi.com/pricing/"' in pages[tmp_path / "cost-and-cancelling" / "index.html"]
    )
    first_dag = re.sub(r"<[^>]+>", "", pages[tmp_path / "first-dag" / "index.html"])
    assert "airflow db migrate" in first_dag and "airflow dags test first_runway_video" in first_dag
    assert "apache-airflow-providers-amazon s3fs" in pages[tmp_path / "install" / "index.html"]
    reference = re.sub(r"<[^>]+>", "", pages[tmp_path / "reference" / "index.html"])
    for name in ("RunwayHook", "RunwayGenerateOperator", "RunwayTaskSensor", "RunwayToObjectStorageOperator"):
        assert name in reference
    # The browser test's screenshots are shown where the UI is described.
    shown = {
        "connection": ("connection-form.png", "connection-extra-fields.png"),
        "guides/sensor": ("task-extra-link.png",),
        "content-production": ("required-actions.png", "review-decision.png"),
    }
    for page, images in shown.items():
        html = pages[tmp_path / page / "index.html"]
        for image in images:
            assert f'img/ui/{image}"' in html, (page, image)
            assert (tmp_path / "img" / "ui" / image).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.unit
def test_readme_shows_exactly_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    commands = [line.split("#")[0].split() for line in blocks[0].splitlines()]
    assert commands == [["make", "demo"], ["make", "test"]]
