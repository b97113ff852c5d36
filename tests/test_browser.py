"""The whole loop, as a curator does it: scripts/demo.sh starts the stack, a real Chromium
(Playwright) logs in to Label Studio, rates, skips and updates; the webhook stores each
decision in SQLite within 5 s; `hitl report` and `hitl export` then show them.

A screenshot is saved on failure (the path is in the failure message). With
HITL_SCREENSHOT_DIR set, screenshots of the review page and the report are kept there.
"""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from hitl import store
from hitl.cli import cli
from hitl.review import studio

from .conftest import Demo
from .helpers import wait_for
from .helpers.browser import bottom_button, launch, log_in, sync_playwright
from .helpers.labelstudio import studio_api

pytestmark = [pytest.mark.slow, pytest.mark.studio]  # scripts/demo.sh, with its Label Studio


def read_credentials(path: Path) -> dict[str, str]:
    return dict(re.findall(r"export (\w+)=(\S+)", path.read_text()))


@pytest.fixture(scope="module")
def demo(demo_folder):
    """scripts/demo.sh on free ports in the session's demo folder; Ctrl+C (SIGINT) at the end."""
    out = demo_folder
    running = Demo(out)
    process = running.process
    studio_port, serve_port = running.studio_port, running.serve_port
    credentials = read_credentials(out / "credentials.env")
    yield {"out": out, "db": out / "hitl.db", "url": f"http://127.0.0.1:{studio_port}", "serve_port": serve_port,
           "studio_port": studio_port, "process": process, **credentials}
    if process.poll() is None:  # Ctrl+C, as a person stops the demo
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)


def rating(db_path: Path, task_id: int):
    db = store.connect(db_path)
    rows = list(db["ratings"].rows_where("task_id = ? AND deleted = 0", [task_id]))
    return rows[0] if rows else None


def test_a_curator_reviews_in_the_browser(chromium, demo, tmp_path):
    client = studio_api(demo["url"], demo["LABEL_STUDIO_API_KEY"])
    project = next(p for p in client.projects.list(title="hero-hitl demo") if p.title == "hero-hitl demo")
    tasks = sorted(client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
    first, second = tasks[0], tasks[1]
    prefilled = next(p for p in client.predictions.list(task=first.id) if p.model_version == project.model_version)
    prefilled_stars = next(r for r in prefilled.result if r["type"] == "rating")["value"]["rating"]
    shots = Path(os.environ.get("HITL_SCREENSHOT_DIR") or tmp_path)

    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            log_in(page, demo["url"], demo["LABEL_STUDIO_USERNAME"], demo["LABEL_STUDIO_PASSWORD"])

            # the first task of the labeling stream: the image is shown, the model's stars prefilled
            page.goto(f"{demo['url']}/projects/{project.id}/data?labeling=1")
            bottom_button(page, "Submit").wait_for(timeout=60000)
            image = page.locator("img[src^='blob:'], img[src*='/data/local-files/']").first
            image.wait_for(timeout=30000)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                                   timeout=30000)
            assert page.locator(".ant-rate-star-full").count() == prefilled_stars
            assert page.get_by_text(first.data["species"]).first.is_visible()
            if os.environ.get("HITL_SCREENSHOT_DIR"):
                page.screenshot(path=str(shots / "review.png"))

            # the curator disagrees: 9 stars and hero
            page.locator("li.ant-rate-star").nth(8).click()
            assert page.locator(".ant-rate-star-full").count() == 9
            page.locator("input[type=radio][name=hero]").check()
            bottom_button(page, "Submit").click()
            stored = wait_for(lambda: rating(demo["db"], first.id))
            assert stored, "the webhook did not store the rating within 5 s"
            assert (stored["stars"], stored["hero"], stored["skipped"], stored["mode"]) == (9, 1, 0, "assisted")
            assert stored["image_id"] == first.data["image_id"]
            assert stored["annotator_email"] == demo["LABEL_STUDIO_USERNAME"]

            # the stream moves on to the second task: skip it
            bottom_button(page, "Skip").wait_for(timeout=30000)
            page.wait_for_timeout(500)
            bottom_button(page, "Skip").click()
            skipped = wait_for(lambda: rating(demo["db"], second.id))
            assert skipped and skipped["skipped"] == 1 and skipped["stars"] is None

            # back to the first task: change the rating to 5 stars and update
            page.goto(f"{demo['url']}/projects/{project.id}/data?task={first.id}")
            bottom_button(page, "Update").wait_for(timeout=60000)
            page.locator("li.ant-rate-star").nth(4).click()
            bottom_button(page, "Update").click()
            updated = wait_for(lambda: (r := rating(demo["db"], first.id)) and r["stars"] == 5 and r)
            assert updated, f"the update did not land within 5 s: {rating(demo['db'], first.id)}"
            assert updated["hero"] == 1
            history = store.connect(demo["db"])["rating_history"].count_where(
                "task_id = ? AND change = 'updated'", [first.id])
            assert history >= 1
        except Exception:
            path = shots / "failure.png"
            page.screenshot(path=str(path), full_page=True)
            raise AssertionError(f"browser step failed; screenshot: {path}")
        finally:
            browser.close()

    # the report and the export show those ratings
    runner = CliRunner()
    report_dir = demo["out"] / "report"
    result = runner.invoke(cli, ["--db", str(demo["db"]), "report", "--out", str(report_dir), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    html = (report_dir / "report.html").read_text()
    assert first.data["image_id"] in (report_dir / "disagreements.csv").read_text()
    assert demo["LABEL_STUDIO_USERNAME"] in html
    export_dir = demo["out"] / "heroes"
    result = runner.invoke(cli, ["--db", str(demo["db"]), "export", "--out", str(export_dir)])
    assert result.exit_code == 0, result.output
    manifest = (export_dir / "manifest.csv").read_text()
    assert first.data["image_id"] in manifest and second.data["image_id"] not in manifest
    if os.environ.get("HITL_SCREENSHOT_DIR"):
        with sync_playwright() as playwright:
            browser = launch(playwright, chromium)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto((report_dir / "report.html").as_uri())
            page.screenshot(path=str(shots / "report.png"))
            browser.close()


def test_ctrl_c_stops_both_servers(demo):
    process = demo["process"]
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    assert wait_for(lambda: studio.port_is_free("127.0.0.1", demo["studio_port"])
                    and studio.port_is_free("127.0.0.1", demo["serve_port"]), timeout=30)
