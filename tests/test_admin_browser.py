"""The admin console in a real browser: Playwright driving Debian's chromium (scripts/test installs
it) against a running `serve` app on a real Redis. Every page renders with no console error; without
a session every page lands on the sign-in; a rule edit with an error shows its line; a dry run lists
the changes; a requeue works. TRIAGE_SCREENSHOTS=docs saves each page under docs/screenshots/."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from rq.registry import FailedJobRegistry

from worker.bootstrap import http_app

sys.path.insert(0, str(Path(__file__).parent))
from admin_support import RULES, TOKEN, runtime, seed  # noqa: E402
from pipeline_support import serve_app  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("chromium not found: scripts/test installs Debian's chromium package")
        pytest.skip("chromium not found: `apt-get install chromium` (scripts/test does)")
    return path


@pytest.fixture
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright not installed: it is in the dev extra (scripts/setup --dev)")
        pytest.skip("pip install playwright (the dev extra)")
    executable = chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def site(redis, redis_server, tmp_path):
    rt = runtime(redis_server.url, tmp_path / "rules.yaml")
    job_id = seed(rt)
    server, url = serve_app(http_app(rt))
    yield rt, url, job_id
    server.should_exit = True


def shots(tmp_path: Path) -> Path:
    if os.environ.get("TRIAGE_SCREENSHOTS") == "docs":
        out = REPO / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path


def test_the_console_in_chromium(browser, site, tmp_path):
    from playwright.sync_api import expect

    rt, url, job_id = site
    out = shots(tmp_path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))

    page.goto(f"{url}/admin/feed")
    assert "/admin/login" in page.url
    page.screenshot(path=str(out / "admin-login.png"))
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/admin/feed")

    page.goto(f"{url}/admin/")
    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator("svg rect").count() > 10 and "test-model-v3" in page.content()
    page.screenshot(path=str(out / "admin-overview.png"), full_page=True)

    page.goto(f"{url}/admin/feed")
    assert page.locator("table.feed tbody tr").count() == 43
    page.select_option("select[name=label]", "unsure")  # htmx swaps the rows and pushes the URL
    page.wait_for_url("**label=unsure**")
    expect(page.locator("table.feed tbody tr")).to_have_count(5)  # (our CSP forbids eval: no wait_for_function)
    page.select_option("select[name=label]", "")
    expect(page.locator("table.feed tbody tr")).to_have_count(43)
    page.screenshot(path=str(out / "admin-feed.png"), full_page=True)

    page.goto(f"{url}/admin/rules")
    page.fill("#text", RULES.replace('then: {group: "Tier 2"}', "then: {priority: sky-high}"))
    page.click("button:has-text('Check')")
    error = page.locator("#rules-result .error")
    error.wait_for()
    assert "line 7" in error.inner_text()
    assert "sky-high" in page.locator("pre.lines .bad").inner_text()
    page.screenshot(path=str(out / "admin-rules-error.png"), full_page=True)
    page.fill("#text", RULES.replace("then: {priority: urgent}", "then: {priority: high}"))
    page.click("button:has-text('Dry run')")
    page.locator("table.dry").wait_for()
    assert page.locator("table.dry tbody tr").count() == 10
    assert "urgent → high" in page.locator("table.dry").inner_text()
    page.screenshot(path=str(out / "admin-rules-dry-run.png"), full_page=True)
    assert Path(rt.settings.rules_path).read_text() == RULES  # a dry run saves nothing

    page.goto(f"{url}/admin/feedback")
    assert "Agents' changes to bot-set values" in page.content()
    page.screenshot(path=str(out / "admin-feedback.png"), full_page=True)

    page.goto(f"{url}/admin/dlq")
    page.screenshot(path=str(out / "admin-dead-letters.png"), full_page=True)
    page.click(f"a[href='/admin/dlq/{job_id}']")
    assert "zendesk:777:9" in page.content() and "secret" not in page.content()
    page.click("button:has-text('Requeue this job')")
    page.wait_for_url("**/admin/dlq?message=*")
    assert f"Requeued {job_id}" in page.locator(".ok").inner_text()
    assert FailedJobRegistry(queue=rt.enqueuer.queue).count == 0 and rt.enqueuer.queue.count == 1
    assert errors == []


def test_without_signing_in_every_page_lands_on_the_sign_in(browser, site):
    _, url, job_id = site
    page = browser.new_page()
    for path in ["/admin/", "/admin/feed", "/admin/rules", "/admin/feedback", "/admin/dlq", f"/admin/dlq/{job_id}"]:
        page.goto(url + path)
        assert "/admin/login" in page.url, path
        assert page.locator("#token").count() == 1
    r = page.request.post(f"{url}/admin/dlq/{job_id}/requeue")
    assert r.status == 401


def test_the_console_works_without_javascript(browser, site):
    rt, url, job_id = site
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{url}/admin/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.goto(f"{url}/admin/feed")
    page.select_option("select[name=source]", "jira")
    page.click("button:has-text('Filter')")  # a plain GET form
    assert "source=jira" in page.url
    assert page.locator("table.feed tbody tr").count() == 8
    page.goto(f"{url}/admin/rules")
    page.fill("#text", "rules:\n  - name: x\n    then: {priority: sky-high}\n")
    page.click("button:has-text('Check')")  # a plain POST: the whole page comes back with the error
    assert "line 3" in page.locator(".error").first.inner_text()
    page.goto(f"{url}/admin/dlq/{job_id}")
    page.click("button:has-text('Requeue this job')")
    assert f"Requeued {job_id}" in page.locator(".ok").inner_text()
    assert FailedJobRegistry(queue=rt.enqueuer.queue).count == 0
    context.close()
