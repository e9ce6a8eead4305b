"""The admin console over HTTP (no browser): sign-in, sessions, CSRF, rate limit, every page, rules
check / dry run / save, dead-letter requeue. The browser tests: tests/test_admin_browser.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rq.registry import FailedJobRegistry

from worker.bootstrap import http_app

sys.path.insert(0, str(Path(__file__).parent))
from admin_support import RULES, TOKEN, runtime, seed  # noqa: E402

PAGES = ["/admin/", "/admin/feed", "/admin/rules", "/admin/feedback", "/admin/dlq", "/admin/feedback/export.csv"]


@pytest.fixture
def console(redis, redis_server, tmp_path):
    rt = runtime(redis_server.url, tmp_path / "rules.yaml")
    job_id = seed(rt)
    client = TestClient(http_app(rt), base_url="https://testserver")
    return rt, client, job_id


def sign_in(client: TestClient) -> str:
    r = client.post("/admin/login", data={"token": TOKEN, "next": "/admin/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie and "Path=/admin" in cookie
    page = client.get("/admin/rules").text
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]


def test_without_a_session_pages_redirect_and_actions_answer_401(console):
    rt, client, job_id = console
    for path in PAGES + [f"/admin/dlq/{job_id}"]:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/admin/login?next="), path
        assert client.get(path, headers={"HX-Request": "true"}).status_code == 401, path
    for path in ["/admin/rules/check", "/admin/rules/dryrun", "/admin/rules/save", f"/admin/dlq/{job_id}/requeue",
                 "/admin/logout"]:
        assert client.post(path, data={"text": RULES}).status_code == 401, path
    client.cookies.set("triage_admin", "forged.9999999999.0000", path="/admin")
    assert client.get("/admin/", follow_redirects=False).status_code == 303
    assert FailedJobRegistry(queue=rt.enqueuer.queue).count == 1  # nothing was requeued


def test_a_wrong_token_is_refused_and_sign_in_is_rate_limited(console):
    _, client, _ = console
    for _ in range(5):
        r = client.post("/admin/login", data={"token": "wrong"})
        assert r.status_code == 401 and "not the admin token" in r.text
    r = client.post("/admin/login", data={"token": TOKEN})
    assert r.status_code == 429 and "Too many sign-in attempts" in r.text


def test_a_next_target_outside_the_console_is_ignored(console):
    _, client, _ = console
    r = client.post("/admin/login", data={"token": TOKEN, "next": "//evil.example/admin"}, follow_redirects=False)
    assert r.headers["location"] == "/admin/"


def test_every_page_renders_with_its_data_and_no_ticket_text(console):
    _, client, job_id = console
    sign_in(client)
    overview = client.get("/admin/")
    assert overview.status_code == 200 and "test-model-v3" in overview.text and "<svg" in overview.text
    assert re.search(r"<th>priority</th><td>1</td><td>0</td><td>100%</td>", overview.text)  # suggestions settled
    assert "Content-Security-Policy" in overview.headers and "script-src 'self'" in overview.headers[
        "content-security-policy"]
    feed = client.get("/admin/feed").text
    assert "https://acme.zendesk.com/agent/tickets/1039" in feed and "changed by agent" in feed
    jira = client.get("/admin/feed?source=jira").text
    assert "acme.zendesk.com/agent/tickets/1001" not in jira and "jira 1000" in jira
    part = client.get("/admin/feed?label=unsure", headers={"HX-Request": "true"}).text
    assert part.startswith('<div id="feed-rows">') and "<html" not in part and "abstained: sentiment" in part
    assert "urgent" in client.get("/admin/rules").text
    fb = client.get("/admin/feedback").text
    assert "priority" in fb and "low" in fb  # the override
    dlq = client.get("/admin/dlq").text
    assert job_id[:12] in dlq and "422 invalid group" in dlq
    job = client.get(f"/admin/dlq/{job_id}").text
    assert "zendesk:777:9" in job and "secret" not in job  # no ticket text unless kept
    csv = client.get("/admin/feedback/export.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert client.get("/admin/static/htmx.min.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/admin/static/../app.py").status_code == 404


def test_actions_need_the_csrf_token(console):
    rt, client, job_id = console
    csrf = sign_in(client)
    assert client.post(f"/admin/dlq/{job_id}/requeue").status_code == 403
    assert client.post(f"/admin/dlq/{job_id}/requeue", data={"csrf": "0" * 64}).status_code == 403
    r = client.post(f"/admin/dlq/{job_id}/requeue", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "Requeued" in r.headers["location"]
    assert FailedJobRegistry(queue=rt.enqueuer.queue).count == 0 and rt.enqueuer.queue.count == 1
    again = client.post(f"/admin/dlq/{job_id}/requeue", data={"csrf": csrf}, follow_redirects=True)
    assert "not in the dead-letter queue" in again.text


def test_a_rules_error_points_at_its_line_and_is_never_saved(console):
    rt, client, _ = console
    csrf = sign_in(client)
    bad = RULES.replace("then: {group: \"Tier 2\"}", "then: {priority: sky-high}")
    r = client.post("/admin/rules/save", data={"csrf": csrf, "text": bad})
    assert r.status_code == 422 and "line 7" in r.text
    assert 'class="bad"' in r.text and "sky-high" in r.text
    assert Path(rt.settings.rules_path).read_text() == RULES
    ok = client.post("/admin/rules/check", data={"csrf": csrf, "text": RULES}, headers={"HX-Request": "true"})
    assert ok.status_code == 200 and "Valid: 2 rules" in ok.text and "<html" not in ok.text


def test_a_dry_run_lists_what_would_change_ticket_by_ticket(console):
    _, client, _ = console
    csrf = sign_in(client)
    edited = RULES.replace("then: {priority: urgent}", "then: {priority: high}")
    r = client.post("/admin/rules/dryrun", data={"csrf": csrf, "text": edited, "n": "100"})
    assert r.status_code == 200
    m = re.search(r"Dry run: (\d+) of the last (\d+) decisions would change", r.text)
    assert m and int(m.group(1)) == 10 and int(m.group(2)) == 43
    assert "priority</strong>: urgent &rarr; high" in r.text
    same = client.post("/admin/rules/dryrun", data={"csrf": csrf, "text": RULES})
    assert "No decision would change" in same.text


def test_save_keeps_a_backup_and_the_workers_reload(console):
    rt, client, _ = console
    csrf = sign_in(client)
    edited = RULES + "  - name: vip-note\n    when: {tags_present: [vip]}\n    then: {note: true}\n"
    r = client.post("/admin/rules/save", data={"csrf": csrf, "text": edited})
    assert r.status_code == 200 and "Saved 3 rules" in r.text
    path = Path(rt.settings.rules_path)
    assert path.read_text() == edited
    [backup] = list(path.parent.glob("rules.yaml.bak-*"))
    assert backup.read_text() == RULES
    from worker.rules_file import load_rules

    assert [r.name for r in load_rules(path).rules] == ["urgent", "vip", "vip-note"]


def test_the_console_is_off_without_a_token(redis, redis_server, tmp_path):
    from worker.bootstrap import build
    from worker.settings import Settings

    client = TestClient(http_app(build(Settings(redis_url=redis_server.url))))
    r = client.get("/admin/")
    assert r.status_code == 404 and "TRIAGE_ADMIN_TOKEN" in r.text


def test_signing_out_ends_the_session(console):
    _, client, _ = console
    csrf = sign_in(client)
    r = client.post("/admin/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.clear()
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_redis_down_is_a_503_that_says_so(tmp_path):
    from worker.admin.auth import COOKIE, Auth
    from worker.local_redis import free_port

    rt = runtime(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "rules.yaml")
    client = TestClient(http_app(rt))
    r = client.post("/admin/login", data={"token": TOKEN})
    assert r.status_code == 503 and "Redis unreachable" in r.text and "Traceback" not in r.text
    client.cookies.set(COOKIE, Auth(TOKEN, rt.redis).new_cookie(), path="/admin")
    for path in ("/admin/", "/admin/feed", "/admin/dlq"):
        r = client.get(path)
        assert r.status_code == 503 and "check REDIS_URL" in r.text, path
