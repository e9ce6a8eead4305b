"""`triage history pull jira`: JQL search with changelog through the real `jira` client against the
sandbox: corrections read from the changelog, pages, 429, resume, scrubbing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_jira_spec import openapi, spec_problems  # noqa: F401  (openapi: a fixture)

from connectors.jira.history import JiraHistory, pull, who_set
from connectors.jira.sandbox import JiraSandbox
from connectors.jira.transport import JiraApi
from worker.errors import VendorUnavailable
from worker.history import read_rows


@pytest.fixture
def jira() -> Iterator[JiraSandbox]:
    with JiraSandbox() as sandbox:
        sandbox.add_user("Alex Agent", "alex@example.com")
        start = time.time() - 86400
        for i in range(12):
            key = sandbox.add_issue("SUP", f"Issue {i}", f"Message {i}: call +44 20 7946 0958",
                                    reporter=f"c{i}@example.com", priority="Medium", created_at=start + i)
            if i % 3 == 0:  # the bot set High; an agent put it back to Low: a correction
                sandbox.edit_issue(key, by=sandbox.email, priority="High")
                sandbox.edit_issue(key, by="alex@example.com", priority="Low")
            elif i % 3 == 1:  # the bot set it and nobody changed it
                sandbox.edit_issue(key, by=sandbox.email, priority="Highest")
        yield sandbox


def history(jira: JiraSandbox, **kwargs) -> JiraHistory:
    api = JiraApi.connect(jira.url, jira.email, jira.token, timeout=5)
    waits: list[float] = []
    h = JiraHistory(api, jira.bot_account_id, "project = SUP", per_page=5, sleep=waits.append, **kwargs)
    h.waits = waits  # type: ignore[attr-defined]
    return h


def test_pull_reads_corrections_from_the_changelog(jira: JiraSandbox, tmp_path: Path) -> None:
    result = pull(history(jira), tmp_path / "j.jsonl", progress=False)
    rows = {r.id: r for r in read_rows(tmp_path / "j.jsonl")}
    assert result.pages == 3 and result.total == 12 == len(rows)
    first, second, third = rows["jira:SUP-1"], rows["jira:SUP-2"], rows["jira:SUP-3"]
    assert first.label("urgency")[:2] == ("low", "agent-corrected-bot") and first.bot_priority == "High"
    assert second.label("urgency")[:2] == ("high", "bot-unchanged")
    assert third.label("urgency")[:2] == ("medium", "agent-set") and third.bot_priority == ""
    assert third.text == "Message 2: call [phone]" and third.created_at.endswith("Z")
    assert all("expand" in r.query and r.query["expand"] == ["changelog"] for r in jira.requests
               if r.path == "/rest/api/3/search/jql")


def test_who_chose_the_request_type_is_read_from_the_changelog_as_the_priority_is() -> None:
    def history(n: int, author: str, field: str, to: str) -> dict:
        return {"id": str(n), "author": {"accountId": author}, "created": f"2026-01-0{n}T00:00:00.000+0000",
                "items": [{"field": field, "toString": to}]}

    bot, agent = "bot-1", "agent-2"
    moved = [history(1, bot, "Customer Request Type", "Get IT help"),
             history(2, agent, "Customer Request Type", "Report an incident")]
    assert who_set(moved, bot, "Report an incident", "request_type") == (
        "Report an incident", "agent-corrected-bot", "Get IT help")
    assert who_set(moved[:1], bot, "Get IT help", "request_type")[1] == "bot-unchanged"
    assert who_set([], bot, "Get IT help", "request_type")[1] == "agent-set"  # as the customer filed it
    assert who_set(moved, bot, "High")[1] == "agent-set"  # the priority's own changelog: none


def test_429_waits_and_a_crash_resumes_without_duplicates(jira: JiraSandbox, tmp_path: Path) -> None:
    jira.fail_next(429, times=1, retry_after=4, path="search/jql")
    h = history(jira)
    out = tmp_path / "j.jsonl"
    result = pull(h, out, progress=False)
    assert result.rate_limited == 1 and h.waits[0] == 4  # type: ignore[attr-defined]
    out.unlink()
    (tmp_path / "j.jsonl.state.json").unlink()
    calls = {"n": 0}
    h2 = history(jira, max_retries=0)
    page = h2.page

    def failing(token: str | None):  # the second page fails for good: a crash mid-pull
        calls["n"] += 1
        if calls["n"] == 2:
            raise VendorUnavailable("Jira could not serve GET search/jql (503)")
        return page(token)

    h2.page = failing  # type: ignore[method-assign]
    with pytest.raises(VendorUnavailable):
        pull(h2, out, progress=False)
    state = json.loads((tmp_path / "j.jsonl.state.json").read_text())
    assert state["token"] and state["rows"] == 5
    again = pull(history(jira), out, progress=False)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert again.resumed and len(ids) == len(set(ids)) == 12



def test_history_calls_match_the_jira_spec(openapi, jira: JiraSandbox, tmp_path: Path) -> None:  # noqa: F811
    pull(history(jira), tmp_path / "j.jsonl", progress=False)
    searches = [r for r in jira.requests if r.path == "/rest/api/3/search/jql"]
    problems, _ = spec_problems(openapi, searches)
    assert searches and not problems, "\n".join(problems[:5])


def test_cli_pulls_jira_with_the_configured_credentials(jira: JiraSandbox, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    for name in ("ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JIRA_URL", jira.url)
    monkeypatch.setenv("JIRA_EMAIL", jira.email)
    monkeypatch.setenv("JIRA_API_TOKEN", jira.token)
    monkeypatch.setenv("JIRA_WEBHOOK_SECRET", "s" * 32)
    monkeypatch.chdir(tmp_path)
    code = main(["history", "pull", "jira", "--jql", "project = SUP", "--out", str(tmp_path / "j.jsonl")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "12 rows" in err and len(read_rows(tmp_path / "j.jsonl")) == 12
    assert main(["history", "pull", "jira", "--jql", "project = SUP ORDER BY key"]) == 1
    assert "ORDER BY" in capsys.readouterr().err


def test_the_jira_sandbox_serves_a_team_history_with_corrections(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    out = tmp_path / "jira.jsonl"
    assert main(["history", "pull", "jira", "--sandbox", "80", "--out", str(out)]) == 0
    assert "80 rows" in capsys.readouterr().err
    rows = read_rows(out)
    provenance = {r.label("urgency")[1] for r in rows}
    assert provenance == {"agent-set", "agent-corrected-bot", "bot-unchanged"}
    assert all(r.group for r in rows)  # request types from the team's queues
    created = [r.created_at for r in rows]
    assert created == sorted(created) and created[0] < created[-1]
    for r in rows:
        if r.label("urgency")[1] == "agent-corrected-bot":
            assert r.bot_priority and r.bot_priority != r.priority
