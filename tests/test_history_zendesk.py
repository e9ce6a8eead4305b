"""`triage history pull zendesk`: the real zenpy client against the sandbox's history (solved tickets,
audits in which agents overrode the bot, CSAT), checked against Zendesk's OpenAPI description."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_zendesk_spec import openapi, spec_problems  # noqa: F401  (openapi: a fixture)
from zenpy import Zenpy

from connectors.zendesk.history import ZendeskHistory, pull, who_set
from connectors.zendesk.sandbox import ZendeskSandbox
from connectors.zendesk.sandbox_history import SYNTHETIC_DIR, generated_team, load_history, synthetic_team
from worker.errors import VendorUnavailable
from worker.history import DatasetWriter, HistoryRow, read_rows, summary

NOW = time.time()
SINCE = datetime.fromtimestamp(NOW - 400 * 86400, UTC)


@pytest.fixture
def zd(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskSandbox]:
    with ZendeskSandbox() as sandbox:
        for name, value in sandbox.env.items():
            monkeypatch.setenv(name, value)
        load_history(sandbox, generated_team(90), now=NOW)
        yield sandbox


def client() -> Zenpy:
    return Zenpy(subdomain="sandbox", email="bot@example.com", token="t", disable_cache=True)


def history(zd: ZendeskSandbox, **kwargs) -> ZendeskHistory:
    waits: list[float] = []
    h = ZendeskHistory(client(), zd.bot_user_id, per_page=kwargs.pop("per_page", 20), sleep=waits.append, **kwargs)
    h.waits = waits  # type: ignore[attr-defined]
    return h


def truth(zd: ZendeskSandbox) -> dict[str, tuple[str, str]]:
    """ticket -> (final priority, the bot's first priority or "") from the sandbox's own audits."""
    out: dict[str, tuple[str, str]] = {}
    for audit in zd.audits:
        for event in audit["events"]:
            if event.get("field_name") == "priority":
                key = f"zendesk:{audit['ticket_id']}"
                final, bot = out.get(key, ("", ""))
                if audit["author_id"] == zd.bot_user_id and not bot:
                    bot = event["value"]
                out[key] = (event["value"], bot)
    return out


def test_pull_pages_through_solved_tickets_with_corrections_from_audits(zd: ZendeskSandbox, tmp_path: Path) -> None:
    out = tmp_path / "zendesk.jsonl"
    result = pull(history(zd), out, since=SINCE, progress=False)
    solved = {f"zendesk:{i}" for i, t in zd.tickets.items() if t["status"] == "solved"}
    rows = {r.id: r for r in read_rows(out)}
    assert set(rows) == solved and result.total == len(solved) == result.written
    # zenpy sends per_page on the first page only: 20, then the rest (Zendesk's default page is 1000)
    assert result.pages == 2 and any("cursor" in r.query for r in zd.requests)
    assert result.skipped == {"not solved": len(zd.tickets) - len(solved)} or len(solved) == len(zd.tickets)
    expected = truth(zd)
    kinds = set()
    for row_id, row in rows.items():
        final, bot = expected[row_id]
        assert row.priority == final
        got = row.label("urgency")
        assert got is not None
        label, provenance, weight = got
        assert label == {"urgent": "high", "high": "high", "normal": "medium", "low": "low"}[final]
        want = "agent-set" if not bot else "bot-unchanged" if bot == final else "agent-corrected-bot"
        assert provenance == want and row.bot_priority == bot
        kinds.add(provenance)
        if row.csat:
            assert row.label("sentiment")[:2] == ({"good": "satisfied", "bad": "frustrated"}[row.csat], "csat")
        assert row.group and row.type and row.text
    assert kinds == {"agent-set", "bot-unchanged", "agent-corrected-bot"}
    weights = {p: w for r in rows.values() for (_, p, w) in [r.label("urgency")]}
    assert weights["agent-corrected-bot"] > weights["agent-set"] > weights["bot-unchanged"]
    s = summary(rows.values())
    assert sum(s["urgency"]["labels"].values()) == len(rows)


def test_429_waits_retry_after_and_the_pull_completes(zd: ZendeskSandbox, tmp_path: Path) -> None:
    zd.fail_next(429, times=2, retry_after=7, path=r"incremental")
    zd.fail_next(429, times=1, retry_after=3, path=r"/audits")
    h = history(zd)
    result = pull(h, tmp_path / "z.jsonl", since=SINCE, progress=False)
    assert result.rate_limited == 3 and sorted(h.waits) == [3, 7, 7]  # type: ignore[attr-defined]
    assert result.total == sum(1 for t in zd.tickets.values() if t["status"] == "solved")
    assert [r.status for r in zd.requests].count(429) == 3


def test_a_crash_resumes_from_the_saved_cursor_and_writes_nothing_twice(zd: ZendeskSandbox, tmp_path: Path) -> None:
    out = tmp_path / "z.jsonl"
    solved = sorted(i for i, t in zd.tickets.items() if t["status"] == "solved")
    zd.fail_next(503, times=None, path=rf"tickets/{solved[50]}/audits")  # page 3 fails for good
    with pytest.raises(VendorUnavailable):
        pull(history(zd, max_retries=1), out, since=SINCE, progress=False)
    state = json.loads((tmp_path / "z.jsonl.state.json").read_text())
    before = read_rows(out)
    assert state["cursor"] and not state["done"] and state["rows"] == len(before) > 0
    zd.clear_faults()
    # and a crash after the rows were written but before the cursor moved: the page comes again
    (tmp_path / "z.jsonl.state.json").write_text(json.dumps({**state, "cursor": None}))
    result = pull(history(zd), out, since=SINCE, progress=False)
    lines = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(lines) == len(set(lines)) == len(solved) == result.total
    assert result.written == len(solved) - len(before)
    again = pull(history(zd), out, since=SINCE, progress=False)  # a finished pull: nothing new
    assert again.written == 0 and again.total == len(solved)


def test_scrubbing_removes_emails_phones_and_cards_before_anything_is_stored(zd: ZendeskSandbox,
                                                                            tmp_path: Path) -> None:
    t = zd.add_ticket("Card 4111 1111 1111 1111 charged twice",
                      "Mail me at jane.doe@example.com or call +44 20 7946 0958. Order 12345 on 2024-05-14.",
                      created_at=NOW - 3600)
    zd.edit_ticket(t["id"], priority="high", status="solved")
    rows = {r.id: r for r in (pull(history(zd), tmp_path / "a.jsonl", since=SINCE, progress=False) and
                              read_rows(tmp_path / "a.jsonl"))}
    row = rows[f"zendesk:{t['id']}"]
    assert row.subject == "Card [card] charged twice"
    assert row.text == "Mail me at [email] or call [phone]. Order 12345 on 2024-05-14."
    raw = (tmp_path / "a.jsonl").read_text()
    assert "jane.doe" not in raw and "4111" not in raw and "7946" not in raw
    kept = {r.id: r for r in (pull(history(zd, scrub_text=False), tmp_path / "b.jsonl", since=SINCE,
                                   progress=False) and read_rows(tmp_path / "b.jsonl"))}
    assert "jane.doe@example.com" in kept[f"zendesk:{t['id']}"].text


def test_history_calls_match_the_spec(openapi, zd: ZendeskSandbox, tmp_path: Path) -> None:  # noqa: F811
    pull(history(zd), tmp_path / "z.jsonl", since=SINCE, progress=False)
    records = zd.requests
    paths = {r.path.split("/")[-1] for r in records}
    assert {"cursor.json", "audits.json", "groups.json"} <= paths
    problems, _ = spec_problems(openapi, records)
    assert not problems, "\n".join(problems[:10])


def test_who_set_reads_who_set_the_priority_and_the_group() -> None:
    def audit(n: int, author: str, *events: tuple[str, str]) -> dict:
        return {"id": n, "author_id": author, "created_at": f"2026-01-0{n}T00:00:00Z",
                "events": [{"type": "Change", "field_name": f, "value": v} for f, v in events]}

    bot, agent = "1", "2"
    assert who_set([audit(1, bot, ("priority", "low")), audit(2, agent, ("priority", "urgent"))],
                           bot) == ("urgent", "agent-corrected-bot", "low")
    assert who_set([audit(1, bot, ("priority", "low"))], bot) == ("low", "bot-unchanged", "low")
    assert who_set([audit(1, agent, ("priority", "high"))], bot) == ("high", "agent-set", "")
    assert who_set([audit(1, agent, ("status", "solved"))], bot) == ("", "", "")
    # the group, read the same way: what the routing head learns, weighed by who routed the ticket
    assert who_set([audit(1, bot, ("group_id", "5")), audit(2, agent, ("group_id", "7"))], bot,
                           "group_id") == ("7", "agent-corrected-bot", "5")
    assert who_set([audit(1, bot, ("group_id", "5"), ("priority", "low"))], bot, "group_id")[1] == \
        "bot-unchanged"


def test_dataset_writer_skips_ids_already_written_and_repairs_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    row = HistoryRow("zendesk:1", "zendesk", "2026-01-01T00:00:00Z", "s", "t")
    w = DatasetWriter(path)
    assert w.write([row, row]) == 1
    w.close()
    with path.open("a") as f:
        f.write('{"id": "zendesk:2", "te')  # a crash mid-line
    w = DatasetWriter(path)
    assert w.write([row, HistoryRow("zendesk:3", "zendesk", "", "s", "t")]) == 1
    w.close()
    assert [r.id for r in read_rows(path)] == ["zendesk:1", "zendesk:3"] or \
        pytest.fail(path.read_text())


@pytest.mark.skipif(not SYNTHETIC_DIR.is_dir(), reason="synthetic ticket set not present beside the repository")
def test_the_synthetic_team_reads_english_rows_with_priority_queue_and_type() -> None:
    team = synthetic_team(limit=200)
    assert len(team) == 200 and {t.priority for t in team} == {"high", "medium", "low"}
    assert all(t.queue and t.body for t in team)
    assert len({t.body for t in team}) == 200


def test_cli_pulls_a_sandbox_team_and_says_what_next(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    out = tmp_path / "team.jsonl"
    assert main(["history", "pull", "zendesk", "--sandbox", "60", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"next: triage learn --data {out}" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["urgency"]["labels"]
    assert 50 <= len(read_rows(out)) <= 60
    assert main(["history", "pull", "zendesk", "--sandbox", "5", "--weight", "agent-set=x"]) == 1
    assert "not a number" in capsys.readouterr().err


def test_the_sandbox_history_in_suggest_mode_reads_back_accepted_and_rejected_suggestions(tmp_path: Path) -> None:
    """suggest_share: the bot left suggest-mode notes (priority and group) that agents then accepted or
    rejected; the pull labels them so, and the other tickets are those of suggest_share 0."""
    team = generated_team(120)
    with ZendeskSandbox() as plain:
        load_history(plain, team, now=NOW)
        plain_bot = {t: plain.tickets[t].get("tags") for t in plain.tickets}
    with ZendeskSandbox() as sandbox, pytest.MonkeyPatch.context() as mp:
        for name, value in sandbox.env.items():
            mp.setenv(name, value)
        load_history(sandbox, team, now=NOW, suggest_share=0.5)
        rows = {r.id: r for r in [*_pulled(sandbox, tmp_path)]}
    suggested = [r for r in rows.values() if r.suggested]
    assert suggested and all(set(r.suggested) == {"priority", "group"} for r in suggested)
    outcomes = {o for r in suggested for o in r.suggestion_outcome.values()}
    assert outcomes == {"accepted", "rejected"}
    for r in suggested:
        label, provenance, _ = r.label("urgency")
        assert provenance == f"suggestion-{r.suggestion_outcome['priority']}"
        assert (r.suggested["priority"] == r.priority) == (r.suggestion_outcome["priority"] == "accepted")
        assert r.label("group")[1] == f"suggestion-{r.suggestion_outcome['group']}"
    # tickets the bot set a priority on are the same as without suggestions (its own random stream)
    bot_set = {f"zendesk:{t}" for t, tags in plain_bot.items() if any(str(x).startswith("triage_priority_")
                                                                      for x in tags or ())}
    assert bot_set and all(rows[k].bot_priority for k in bot_set if k in rows)


def _pulled(zd: ZendeskSandbox, tmp_path: Path) -> list[HistoryRow]:
    out = tmp_path / "suggest.jsonl"
    pull(history(zd), out, since=SINCE, progress=False)
    return read_rows(out)
