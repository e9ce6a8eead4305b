"""The sandbox helpdesk itself: Zendesk's update semantics, fault injection, samples."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from test_zendesk_spec import openapi as spec_fixture  # noqa: F401 - the spec, a fixture
from test_zendesk_spec import spec_problems

from connectors.zendesk.sandbox import ZendeskSandbox


@pytest.fixture
def zd() -> Iterator[ZendeskSandbox]:
    with ZendeskSandbox(email="bot@example.com", token="tok") as sandbox:
        yield sandbox


def call(zd: ZendeskSandbox, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{zd.url}/api/v2/{path}", auth=("bot@example.com/token", "tok"),
                            timeout=5, **kw)


def test_update_semantics(zd: ZendeskSandbox) -> None:
    t = zd.add_ticket("Hi", "Hello", tags=["a", "b"])
    put = call(zd, "PUT", f"tickets/{t['id']}.json", json={"ticket": {"additional_tags": ["C d"]}})
    assert put.status_code == 200 and put.json()["ticket"]["tags"] == ["a", "b", "c", "d"]
    assert put.json()["ticket"]["updated_at"] > t["updated_at"]
    assert put.json()["audit"]["events"][0] == {
        "id": put.json()["audit"]["events"][0]["id"], "type": "Change", "field_name": "tags",
        "value": "a b c d", "previous_value": "a b"}
    assert call(zd, "PUT", f"tickets/{t['id']}.json", json={"ticket": {"remove_tags": ["a"]}}).json()[
        "ticket"]["tags"] == ["b", "c", "d"]
    assert call(zd, "PUT", f"tickets/{t['id']}.json", json={"ticket": {"tags": ["x"]}}).json()[
        "ticket"]["tags"] == ["x"]  # plain `tags` replaces, as in Zendesk


def test_safe_update_conflict(zd: ZendeskSandbox) -> None:
    t = zd.add_ticket("Hi", "Hello")
    zd.edit_ticket(t["id"], priority="high")  # an agent, meanwhile
    stale = {"ticket": {"priority": "low", "safe_update": True, "updated_stamp": t["updated_at"]}}
    put = call(zd, "PUT", f"tickets/{t['id']}.json", json=stale)
    assert put.status_code == 409 and put.json()["error"] == "UpdateConflict"
    assert zd.tickets[t["id"]]["priority"] == "high"
    assert zd.audits[-1]["author_id"] != zd.bot_user_id


def test_validation_errors(zd: ZendeskSandbox) -> None:
    t = zd.add_ticket("Hi", "Hello")
    put = call(zd, "PUT", f"tickets/{t['id']}.json", json={"ticket": {"priority": "critical", "group_id": 1}})
    assert put.status_code == 422 and put.json()["error"] == "RecordInvalid"
    assert set(put.json()["details"]) == {"priority", "group"}
    assert call(zd, "GET", "tickets/1.json").status_code == 404
    assert call(zd, "GET", "nope.json").status_code == 404


def test_auth_and_faults(zd: ZendeskSandbox) -> None:
    assert requests.get(f"{zd.url}/api/v2/users/me.json", timeout=5).status_code == 401
    assert requests.get(f"{zd.url}/api/v2/users/me.json", auth=("bot@example.com/token", "bad"),
                        timeout=5).status_code == 401
    zd.fail_next(429, times=2, retry_after=3, path="users")
    answers = [call(zd, "GET", "users/me.json") for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    zd.fail_next(500, times=None, method="PUT")
    assert call(zd, "GET", "users/me.json").status_code == 200
    assert all(call(zd, "PUT", "tickets/1.json", json={}).status_code == 500 for _ in range(3))
    zd.clear_faults()
    assert call(zd, "PUT", "tickets/1.json", json={"ticket": {}}).status_code == 404
    assert zd.requests[-1].headers["Authorization"] == "Basic <redacted>"


def test_incremental_export_pages(zd: ZendeskSandbox) -> None:
    ids = [zd.add_ticket(f"T{i}", "x", created_at=1_700_000_000 + i)["id"] for i in range(3)]
    first = call(zd, "GET", "incremental/tickets/cursor.json", params={"start_time": 1_700_000_001,
                                                                     "per_page": 1}).json()
    assert [t["id"] for t in first["tickets"]] == [ids[1]] and first["end_of_stream"] is False
    rest = call(zd, "GET", "incremental/tickets/cursor.json", params={"cursor": first["after_cursor"]}).json()
    assert [t["id"] for t in rest["tickets"]] == [ids[2]] and rest["end_of_stream"] is True
    zd.add_comment(ids[0], "follow-up")  # an update re-exports the ticket after the cursor
    again = call(zd, "GET", "incremental/tickets/cursor.json", params={"cursor": rest["after_cursor"]}).json()
    assert [t["id"] for t in again["tickets"]] == [ids[0]]
    assert call(zd, "GET", "incremental/tickets/cursor.json").status_code == 400


def test_samples_and_on_update(zd: ZendeskSandbox) -> None:
    ids = zd.load_samples()
    tickets = zd.tickets
    assert len(ids) == 15 and {tickets[i]["via"]["channel"] for i in ids} >= {"email", "web", "api", "chat"}
    assert sum(len(zd.comments(i)) > 1 for i in ids) >= 3
    assert any(not c["public"] for i in ids for c in zd.comments(i))
    seen: list[tuple[int, int]] = []
    zd.on_update = lambda ticket, audit: seen.append((ticket["id"], audit["author_id"]))
    call(zd, "PUT", f"tickets/{ids[0]}.json", json={"ticket": {"priority": "urgent"}})
    assert seen == [(ids[0], zd.bot_user_id)]


def test_connections_stay_open_and_latency_delays_each_answer(zd: ZendeskSandbox) -> None:
    t = zd.add_ticket("Hi", "Hello")
    with requests.Session() as s:
        s.auth = ("bot@example.com/token", "tok")
        first = s.get(f"{zd.url}/api/v2/tickets/{t['id']}.json", timeout=5)
        zd.latency_s = 0.2  # a helpdesk across the internet
        started = time.monotonic()
        second = s.get(f"{zd.url}/api/v2/tickets/{t['id']}.json", timeout=5)
        assert time.monotonic() - started >= 0.2
    assert first.status_code == second.status_code == 200
    assert first.raw.version == 11 and first.headers.get("Connection") != "close"  # HTTP/1.1 keep-alive



def test_agent_search_through_the_real_client_matches_the_spec(zd: ZendeskSandbox, spec_fixture: Any) -> None:  # noqa: F811
    """The Slack app's agent check (connectors.zendesk.transport.is_agent) on zenpy's session, each
    request and answer checked against Zendesk's OpenAPI description."""
    from zenpy import Zenpy

    from connectors.zendesk.transport import ZendeskHttp, is_agent

    zd.add_user("Ann Agent", "ann@example.com", role="agent")
    zd.add_user("Sam Suspended", "sam@example.com", role="agent", suspended=True)
    zd.add_user("Eve End-user", "eve@example.com")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in zd.env.items():
            mp.setenv(k, v)
        http = ZendeskHttp.from_zenpy(Zenpy(subdomain="sandbox", email="bot@example.com", token="tok",
                                            disable_cache=True))
        assert is_agent(http, "ANN@example.com") and is_agent(http, "ann@example.com", every_ticket=True)
        zd.add_user("Gail Groups", "gail@example.com", role="agent", ticket_restriction="groups")
        assert is_agent(http, "gail@example.com") and not is_agent(http, "gail@example.com", every_ticket=True)
        assert [is_agent(http, e) for e in ("sam@example.com", "eve@example.com", "nobody@example.com", "")] == \
            [False, False, False, False]
    records = [r for r in zd.requests if "users/search" in r.path]
    assert len(records) == 7 and records[0].query["query"] == ["email:ann@example.com"]
    problems, _ = spec_problems(spec_fixture, records)
    assert not problems, problems
