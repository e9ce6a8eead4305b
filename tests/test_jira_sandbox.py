"""The local Jira Cloud itself: edit semantics, JSM comments, JQL subset, search pages, faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from test_jira_spec import openapi as spec_fixture  # noqa: F401 - the spec, a fixture
from test_jira_spec import spec_problems

from connectors.jira.normalize import adf_document
from connectors.jira.sandbox import TEAM_FIELD, JiraSandbox


@pytest.fixture
def jira() -> Iterator[JiraSandbox]:
    with JiraSandbox() as sandbox:
        sandbox.add_user("Tom Becker", "tom@example.com")
        yield sandbox


def call(jira: JiraSandbox, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{jira.url}{path}", auth=(jira.email, jira.token), timeout=5, **kw)


def test_edit_semantics_and_changelog(jira: JiraSandbox) -> None:
    key = jira.add_issue("SUP", "Hi", "Hello", labels=["a", "b"])
    before = jira.issue(key)["fields"]["updated"]
    put = call(jira, "PUT", f"/rest/api/3/issue/{key}",
               json={"update": {"labels": [{"add": "c"}, {"remove": "a"}]}, "fields": {"priority": {"name": "High"}}})
    assert put.status_code == 204 and put.content == b""
    assert jira.labels(key) == ["b", "c"] and jira.priority(key) == "High"
    after = jira.issue(key)["fields"]["updated"]
    assert after > before
    [history] = jira.histories(key)
    assert {i["field"] for i in history["items"]} == {"labels", "priority"}
    assert history["author"]["accountId"] == jira.bot_account_id
    bad = call(jira, "PUT", f"/rest/api/3/issue/{key}", json={"fields": {"priority": {"name": "Critical"},
                                                                          "customfield_99999": "x"},
                                                               "update": {"labels": [{"add": "two words"}]}})
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"priority", "customfield_99999", "labels"}
    assert jira.labels(key) == ["b", "c"]  # nothing applied from a refused edit
    assert call(jira, "PUT", f"/rest/api/3/issue/{key}", json={"fields": {"labels": ["z"]}}).status_code == 204
    assert jira.labels(key) == ["z"]  # plain fields.labels replaces, as in Jira


def test_assignee_and_select_fields(jira: JiraSandbox) -> None:
    key = jira.add_issue("SUP", "Hi", "Hello")
    tom = jira.account_id("tom@example.com")
    assert call(jira, "PUT", f"/rest/api/3/issue/{key}/assignee", json={"accountId": tom}).status_code == 204
    customer = jira.issue(key)["fields"]["reporter"]["accountId"]
    refused = call(jira, "PUT", f"/rest/api/3/issue/{key}/assignee", json={"accountId": customer})
    assert refused.status_code == 400 and "assignee" in refused.json()["errors"]
    assert call(jira, "PUT", f"/rest/api/3/issue/{key}/assignee", json={"accountId": None}).status_code == 204
    assert jira.assignee(key) is None
    assert call(jira, "PUT", f"/rest/api/3/issue/{key}",
                json={"fields": {TEAM_FIELD: {"value": "Billing"}}}).status_code == 204
    assert jira.issue(key)["fields"][TEAM_FIELD]["value"] == "Billing"


def test_comments_platform_and_jsm(jira: JiraSandbox) -> None:
    key = jira.add_issue("SUP", "Hi", "Hello")
    assert call(jira, "POST", f"/rest/api/3/issue/{key}/comment", json={"body": "plain"}).status_code == 400
    made = call(jira, "POST", f"/rest/api/3/issue/{key}/comment", json={"body": adf_document("note")})
    assert made.status_code == 201 and made.json()["jsdPublic"] is True
    internal = call(jira, "POST", f"/rest/servicedeskapi/request/{key}/comment", json={"body": "x", "public": False})
    assert internal.status_code == 201 and internal.json()["public"] is False
    page = call(jira, "GET", f"/rest/api/3/issue/{key}/comment", params={"orderBy": "-created"}).json()
    assert [c["jsdPublic"] for c in page["comments"]] == [False, True] and page["total"] == 2
    jira.add_project("DEV", service_desk=False)
    dev = jira.add_issue("DEV", "Bug", "Crash")
    assert call(jira, "POST", f"/rest/servicedeskapi/request/{dev}/comment", json={"body": "x"}).status_code == 404
    desks = call(jira, "GET", "/rest/servicedeskapi/servicedesk").json()["values"]
    assert [d["projectKey"] for d in desks] == ["SUP"]


def test_jql_subset_and_pages(jira: JiraSandbox) -> None:
    keys = [jira.add_issue("SUP", f"T{i}", "x", labels=["vip"] if i % 2 else []) for i in range(5)]
    jira.add_issue("OPS", "other", "x")

    def search(jql: str, **params: Any) -> requests.Response:
        return call(jira, "GET", "/rest/api/3/search/jql", params={"jql": jql, **params})

    first = search("project = SUP ORDER BY key DESC", maxResults=2, fields="summary").json()
    assert [i["key"] for i in first["issues"]] == [keys[4], keys[3]] and first["isLast"] is False
    assert set(first["issues"][0]["fields"]) == {"summary"}
    rest = search("project = SUP ORDER BY key DESC", maxResults=10, nextPageToken=first["nextPageToken"]).json()
    assert [i["key"] for i in rest["issues"]] == keys[2::-1] and rest["isLast"] is True
    assert "nextPageToken" not in rest and set(rest["issues"][0]) == {"expand", "id", "self", "key"}
    assert search("project = SUP", nextPageToken=first["nextPageToken"]).status_code == 400  # other query
    assert len(search('(project in (SUP, OPS)) AND labels = vip AND updated >= "-5m"').json()["issues"]) == 2
    assert len(search("project = SUP AND labels != vip").json()["issues"]) == 3
    assert search("project = SUP OR project = OPS").status_code == 400
    assert search("nosuchfield = 1").status_code == 400
    jira.hide_from_search(keys[0])
    assert keys[0] not in [i["key"] for i in search("project = SUP", maxResults=50).json()["issues"]]


def test_auth_faults_and_records(jira: JiraSandbox) -> None:
    assert requests.get(f"{jira.url}/rest/api/3/myself", timeout=5).status_code == 401
    assert requests.get(f"{jira.url}/rest/api/3/myself", auth=(jira.email, "bad"), timeout=5).status_code == 401
    jira.fail_next(429, times=2, retry_after=3, path="myself")
    answers = [call(jira, "GET", "/rest/api/3/myself") for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200] and answers[0].headers["Retry-After"] == "3"
    assert jira.requests[-1].headers["Authorization"] == "Basic <redacted>"
    assert call(jira, "GET", "/rest/api/3/issue/NOPE-1").status_code == 404


def test_webhook_payloads_and_on_change(jira: JiraSandbox) -> None:
    key = jira.add_issue("SUP", "Hi", "Hello")
    comment = jira.add_comment(key, "more")
    created = jira.webhook_payload(key)
    assert created["webhookEvent"] == "jira:issue_created" and created["issue"]["fields"]["description"] == "Hello"
    commented = jira.webhook_payload(key, "comment_created", comment_id=comment)
    assert set(commented["issue"]["fields"]) == {"summary", "issuetype", "project", "assignee", "priority", "status"}
    assert commented["comment"]["body"] == "more"
    assert commented["user"]["accountId"] == commented["comment"]["author"]["accountId"]
    seen: list[dict[str, Any]] = []
    jira.on_change = seen.append
    call(jira, "PUT", f"/rest/api/3/issue/{key}", json={"update": {"labels": [{"add": "x"}]}})
    call(jira, "PUT", f"/rest/api/3/issue/{key}", json={"update": {"labels": [{"add": "x"}]}})  # no change: no event
    assert [(p["webhookEvent"], p["user"]["accountId"]) for p in seen] == [("jira:issue_updated", jira.bot_account_id)]
    assert seen[0]["changelog"]["items"][0]["field"] == "labels"


def test_browse_check_through_the_real_client_matches_the_spec(jira: JiraSandbox, spec_fixture: Any) -> None:  # noqa: F811
    """The Slack app's check (JiraApi.can_browse) with the real jira client: agents browse, a portal
    customer only their own request, an unknown issue is Jira's 404; checked against the spec."""
    from connectors.jira.transport import JiraApi
    from worker.errors import VendorRejected

    jira.add_user("Cora Customer", "cora@example.org", account_type="customer")
    key = jira.add_issue("SUP", "Checkout down", "It is down")
    own = jira.add_issue("SUP", "My invoice", "Where is it?", reporter="cora@example.org")
    api = JiraApi.connect(jira.url, jira.email, jira.token)
    assert api.can_browse("TOM@example.com", key) and api.can_browse("tom@example.com")
    assert not api.can_browse("cora@example.org", key) and not api.can_browse("nobody@example.com", key)
    assert not api.can_browse("cora@example.org", own)  # a customer is not an agent, even on their own request
    with pytest.raises(VendorRejected):
        api.can_browse("tom@example.com", "SUP-999")
    records = [r for r in jira.requests if r.path.startswith("/rest/api/3/user/") and r.status == 200]
    assert {r.path for r in records} == {"/rest/api/3/user/viewissue/search", "/rest/api/3/user/search"}
    problems, _ = spec_problems(spec_fixture, records)
    assert not problems, problems
