"""Label Studio in a real Chromium, driven by Playwright as a curator uses it. The browser is the
`chromium` fixture's (tests/conftest.py), which marks the test that takes it `browser`."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def sync_playwright():
    """Playwright's synchronous API (a context manager), imported when a browser test first starts one,
    not by every pytest worker that collects the browser tests."""
    from playwright.sync_api import sync_playwright as start

    return start()


def launch(playwright, chromium: Path):
    """A headless Chromium from ``chromium`` (Playwright downloads no browser here)."""
    return playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)


@contextmanager
def curator_page(chromium: Path, url: str, username: str, password: str, failure_dir: Path):
    """A Chromium page logged in to Label Studio at ``url``; a failing step inside the block is
    one AssertionError naming it, with a screenshot and the page's HTML left in ``failure_dir``."""
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            log_in(page, url, username, password)
            yield page
        except Exception as exc:
            page.screenshot(path=str(failure_dir / "failure.png"), full_page=True)
            (failure_dir / "failure.html").write_text(page.content())
            raise AssertionError(f"browser step failed ({exc}); screenshot: {failure_dir / 'failure.png'}") from exc
        finally:
            browser.close()


def log_in(page, url: str, username: str, password: str) -> None:
    page.goto(url + "/user/login/")
    page.fill("input[name=email]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle", timeout=30000)
    assert "/user/login" not in page.url, "the login was refused"


def bottom_button(page, word: str):
    """Submit, Skip, Update in Label Studio's bottom bar (each also has a dropdown beside it)."""
    return page.locator("button[data-testid^='bottombar-']", has_text=word).first
