"""Issue 20 §1, §2, §3, §6 on the ingress: strange text, anonymous and hostile requests, the log, readiness.

One `triage serve` app over real HTTP with Zendesk, Jira and Slack connected (their sandboxes, the
real zenpy / jira / slack-bolt), a real Redis and RQ worker, and the shipped model where text must
reach a tokenizer."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pipeline_support import RULES, SECRET, drain, runtime, serve, settings
from slack_support import SIGNING_SECRET, WATCHED, Slack, sandbox, slack_settings

from connectors.jira.sandbox import JiraSandbox
from connectors.jira.signature import IDENTIFIER_HEADER
from connectors.jira.signature import SIGNATURE_HEADER as JIRA_SIGNATURE
from connectors.jira.signature import sign as jira_sign
from connectors.slack.sandbox import SlackSandbox
from connectors.slack.sandbox import sign as slack_sign
from connectors.zendesk.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from worker.dlq import list_failed
from worker.events import clean_text
from worker.settings import JiraSettings, Secret

JIRA_SECRET = "jira-test-secret"
ODD = "Checkout is down\ud800 since 9am,\x00 this is unacceptable\x07 cafe\u0301 \ud83d\ude00"


@pytest.fixture
def jira() -> Iterator[JiraSandbox]:
    with JiraSandbox() as j:
        j.add_request_type("SUP", "Report a system problem")
        yield j


@pytest.fixture
def sb() -> Iterator[SlackSandbox]:
    s = sandbox()
    yield s
    s.stop()


def real_model(rt: Any) -> None:
    from model.runtime import DEFAULT_MODEL_DIR, TriageModel
    from worker.scoring import ModelScorer

    rt.__dict__["scorer"] = ModelScorer(TriageModel(DEFAULT_MODEL_DIR, threads=1))


@pytest.fixture
def stack(redis, redis_server, zd, jira, sb, tmp_path) -> Iterator[tuple[Any, httpx.Client, str]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    rt = runtime(settings(redis_server.url, str(rules), zd, api_keys=(Secret("k1"),), slack=slack_settings(sb),
                          jira=JiraSettings(jira.url, jira.email, Secret(jira.token), Secret(JIRA_SECRET),
                                            jira.bot_account_id)))
    real_model(rt)
    server, url = serve(rt)
    with httpx.Client(base_url=url, timeout=20) as http:
        yield rt, http, str(rules)
    server.should_exit = True


def zd_post(http: httpx.Client, payload: Any, ts: str | None = None, raw: bytes | None = None) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    ts = ts or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    headers = {SIGNATURE_HEADER: sign(SECRET, ts, body), TIMESTAMP_HEADER: ts.encode("latin-1")}  # "²": byte B2
    return http.post("/webhooks/zendesk", content=body, headers=headers)  # type: ignore[arg-type]


def jira_post(http: httpx.Client, payload: Any = None, raw: bytes | None = None) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    return http.post("/webhooks/jira", content=body, headers={JIRA_SIGNATURE: jira_sign(JIRA_SECRET, body),
                                                              IDENTIFIER_HEADER: os.urandom(8).hex()})


def nested(depth: int) -> bytes:
    """A JSON array nested `depth` deep (too deep for json.dumps to write)."""
    return b"[" * depth + b"1" + b"]" * depth


# -- §1: text is made clean once, at the edge ---------------------------------------------------------


def test_clean_text() -> None:
    assert clean_text("a\ud800b") == "a\ufffdb"  # a lone surrogate: legal JSON, not UTF-8
    assert clean_text("\ud83d\ude00") == "\U0001f600"  # a pair, as JSON may carry it, joined
    assert clean_text("a\x00b\x1bc\x85d\te\nf\r") == "a b c d\te\nf\r"
    assert clean_text("cafe\u0301") == "caf\u00e9"  # normal form C
    assert clean_text("plain ascii") == "plain ascii"
    clean_text(ODD).encode("utf-8")  # nothing left that cannot encode


def test_odd_text_from_every_helpdesk_is_triaged(stack, zd, jira, sb) -> None:
    """A ticket, an issue and a Slack message holding a lone surrogate, NUL and control characters:
    each one is scored by the real model and written back, nothing in the DLQ."""
    rt, http, _ = stack
    tid = zd.add_ticket("Checkout\ud800 down", ODD, requester="ops@northwind.example")["id"]
    body, headers = zd.signed_trigger(tid, SECRET)
    assert b"\\ud800" in body  # the JSON escape, as Zendesk sends it
    assert http.post("/webhooks/zendesk", content=body, headers=headers).status_code == 202
    key = jira.add_issue("SUP", "Checkout down\x00", ODD, request_type="Report a system problem")
    body, headers = jira.signed_webhook(key, JIRA_SECRET)
    assert http.post("/webhooks/jira", content=body, headers=headers).status_code == 202
    env = sb.user_message(WATCHED, ODD)
    assert Slack(http, sb).event(env).status_code == 200
    drain(rt)
    assert not list_failed(rt.enqueuer.queue)
    assert [c for c in zd.comments(tid) if not c["public"] and "Triage" in c["body"]]  # the rule's note
    assert [c for c in jira.comments(key) if c["author"] == jira.bot_account_id]
    assert [m for m in sb.messages(WATCHED, bot=True) if m.get("thread_ts") == env["event"]["ts"]]


def test_score_api_takes_odd_text(stack) -> None:
    _, http, _ = stack
    r = http.post("/v1/score", content=json.dumps({"texts": [ODD, "\x00", "\udfff"]}),
                  headers={"X-API-Key": "k1", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == 3


# -- §2: anonymous requests --------------------------------------------------------------------------


def raw_post(base_url: str, path: str, headers: dict[str, str], first_bytes: bytes) -> str:
    """Send a request's head and the first bytes of a body it says is much longer; the status line
    that comes back before the rest is sent (a server that waited for the whole body would time out)."""
    host, port = base_url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode() + b"\r\n" + first_bytes)
        return sock.recv(65536).split(b"\r\n", 1)[0].decode()


def test_score_api_checks_the_key_before_reading_the_body(stack) -> None:
    _, http, _ = stack
    url = str(http.base_url).rstrip("/")
    big = {"Content-Type": "application/json", "Content-Length": str(200_000_000)}
    assert " 401 " in raw_post(url, "/v1/score", big, b"x" * 65536)  # no key: refused before the body
    assert " 401 " in raw_post(url, "/v1/score", {**big, "X-API-Key": "wrong"}, b"x" * 65536)
    assert " 413 " in raw_post(url, "/v1/score", {**big, "X-API-Key": "k1"}, b"x" * 65536)  # declared too big
    chunks = (b"x" * 65536 for _ in range(32))  # 2 MB with no length: cut off while streaming
    r = http.post("/v1/score", content=chunks, headers={"X-API-Key": "k1"})
    assert r.status_code == 413 and "over" in r.json()["error"]
    r = http.post("/v1/score", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and "API key" in r.json()["error"]
    for body, status in ((b"{junk", 400), (nested(100_000), 400), (b'{"texts": 5}', 422),
                         (b'{"texts": []}', 422), (b"[]", 422)):
        r = http.post("/v1/score", content=body, headers={"X-API-Key": "k1"})
        assert r.status_code == status and r.json()["error"], (body[:20], r.text)


SLACK_JUNK = [
    ("{junk", "application/json"), (os.urandom(64).hex(), "application/x-www-form-urlencoded"),
    ("payload=%7Bjunk", "application/x-www-form-urlencoded"), ('{"a": [1, 2]', "application/x-www-form-urlencoded"),
    ("[" * 100_000 + "]" * 100_000, "application/json"),
    ("payload=" + "%5B" * 50_000, "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize("body, content_type", SLACK_JUNK, ids=["junk", "random", "payload-junk", "json-as-form",
                                                                 "deep", "deep-payload"])
def test_slack_refuses_anonymous_junk_before_parsing(stack, caplog, body, content_type) -> None:
    _, http, _ = stack
    caplog.set_level(logging.INFO)
    for headers in ({}, {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"},
                    slack_sign("not-the-secret", body.encode())):
        r = http.post("/slack/events", content=body.encode(), headers={"Content-Type": content_type, **headers})
        assert r.status_code == 401 and r.json()["error"], r.text
    assert not [rec for rec in caplog.records if rec.exc_info]  # no traceback for a client's mistake
    assert "junk" not in caplog.text and "[[[" not in caplog.text


@pytest.mark.parametrize("body, content_type", SLACK_JUNK, ids=["junk", "random", "payload-junk", "json-as-form",
                                                                 "deep", "deep-payload"])
def test_slack_answers_signed_junk_with_400(stack, caplog, body, content_type) -> None:
    _, http, _ = stack
    raw = body.encode()
    r = http.post("/slack/events", content=raw, headers={"Content-Type": content_type,
                                                         **slack_sign(SIGNING_SECRET, raw)})
    assert r.status_code in (400, 404) and r.json()["error"], r.text  # 404: a form Bolt has no listener for
    assert not [rec for rec in caplog.records if rec.exc_info]


def test_slack_timestamp_abc_and_zendesk_timestamp_superscript(stack) -> None:
    _, http, _ = stack
    r = http.post("/slack/events", content=b"{}", headers={"X-Slack-Request-Timestamp": "abc",
                                                           "X-Slack-Signature": "v0=abc"})
    assert r.status_code == 401 and "timestamp" in r.json()["error"]
    r = zd_post(http, {"kind": "x"}, ts="\u00b2")
    assert r.status_code == 401 and "timestamp" in r.json()["error"]
    r = zd_post(http, {"kind": "x"}, ts="1" * 400)
    assert r.status_code == 401


def test_slack_body_over_the_limit(stack) -> None:
    _, http, _ = stack
    r = http.post("/slack/events", content=b"x" * 1_100_000)
    assert r.status_code == 413


# -- §2: signed but hostile bodies -----------------------------------------------------------------------


def trigger(ticket_id: Any) -> dict[str, Any]:
    return {"kind": "helpdesk-triage/zendesk-trigger/v1",
            "ticket": {"id": ticket_id, "title": "t", "updated_at": "2024-05-14T09:12:30Z", "tags": ""},
            "comment": {"id": 5, "body": "the site is down", "author_id": 7}, "current_user_id": 7}


@pytest.mark.parametrize("raw", [
    b'{"kind": "helpdesk-triage/zendesk-trigger/v1", "ticket": {"id": NaN}, "comment": {"id": 1, "body": "x"}}',
    b'{"kind": "helpdesk-triage/zendesk-trigger/v1", "ticket": {"id": 1e999}, "comment": {"id": 1, "body": "x"}}',
    b'{"kind": "helpdesk-triage/zendesk-trigger/v1", "ticket": {"id": ' + b"9" * 5000 + b'}, "comment": {"id": 1}}',
    json.dumps(trigger("9" * 5000)).encode(),
    json.dumps(trigger("\u00b2")).encode(),
    json.dumps({**trigger(4), "comment": {"id": float("nan"), "body": "x", "author_id": "9" * 30}}).encode(),
], ids=["nan", "1e999", "5000-digits", "5000-digit-string", "superscript", "author-id"])
def test_zendesk_hostile_ids_get_422(stack, raw: bytes) -> None:
    rt, http, _ = stack
    r = zd_post(http, None, raw=raw)
    assert r.status_code in (400, 422) and r.json()["error"], r.text  # 400: the parser's own digit limit
    assert rt.enqueuer.queue.count == 0


def test_deep_bodies_get_400(stack) -> None:
    _, http, _ = stack
    deep = nested(100_000)
    assert zd_post(http, None, raw=deep).status_code == 400
    assert jira_post(http, raw=deep).status_code == 400
    r = jira_post(http, raw=nested(500))
    assert r.status_code == 400 and "nested" in r.json()["error"]


def test_jira_description_nested_440_deep(stack, jira) -> None:
    rt, http, _ = stack
    key = jira.add_issue("SUP", "Checkout down", "x", request_type="Report a system problem")
    payload = jira.webhook_payload(key, adf=True)
    node: dict[str, Any] = {"type": "text", "text": "down"}
    for _ in range(440):
        node = {"type": "blockquote", "content": [node]}
    payload["issue"]["fields"]["description"] = {"type": "doc", "version": 1, "content": [node]}
    r = jira_post(http, payload)
    assert r.status_code == 400 and "nested" in r.json()["error"]
    from connectors.jira.normalize import text_of

    assert text_of({"type": "doc", "content": [node]}) == ""  # the poller's path: no RecursionError either


# -- §3: no request body in the log ------------------------------------------------------------------------


def test_no_request_body_reaches_the_log(stack, sb, caplog) -> None:
    """Refused Slack requests, those Bolt itself refuses too (socket of its own), leave a line, not the body."""
    rt, http, _ = stack
    caplog.set_level(logging.DEBUG)
    secret_words = "customer-card-4242 their very private words"
    env = sb.user_message(WATCHED, secret_words)
    body, headers = sb.signed_event("not-the-secret", env)
    for _ in range(3):
        assert http.post("/slack/events", content=body, headers=headers).status_code == 401
    old = slack_sign(SIGNING_SECRET, body, int(time.time()) - 600)  # a genuine message replayed late
    assert http.post("/slack/events", content=body, headers={**headers, **old}).status_code == 401
    # Bolt's own verification, as Socket Mode or a direct dispatch would meet it
    from slack_bolt import BoltRequest

    rt.slack_app().dispatch(BoltRequest(body=body.decode(), headers={k.lower(): v for k, v in headers.items()}))
    assert secret_words not in caplog.text and "customer-card" not in caplog.text
    assert any("withheld" in r.getMessage() for r in caplog.records)  # Bolt's line, cut down


# -- §6: readiness sees the rules file; the docs can be switched off -------------------------------------


def test_readyz_reports_a_broken_rules_file(stack) -> None:
    _, http, rules = stack
    assert http.get("/readyz").json()["checks"]["rules"] == "ok"
    with open(rules, "a") as f:
        f.write("  - name: broken\n    when: {urgency: sky-high}\n")
    time.sleep(1.1)  # the reloader looks at most once a second, as in a worker
    r = http.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["rules"].startswith("invalid:"), r.text
    with open(rules, "w") as f:
        f.write(RULES)
    time.sleep(1.1)
    assert http.get("/readyz").json()["checks"]["rules"] == "ok"


def test_docs_can_be_switched_off(redis, redis_server, zd, tmp_path) -> None:
    from pipeline_support import serve_app

    from worker import bootstrap
    from worker.settings import load_settings

    assert load_settings({"TRIAGE_API_DOCS": "off"}, dotenv=None).api_docs is False
    assert load_settings({}, dotenv=None).api_docs is True
    with pytest.raises(Exception, match="TRIAGE_API_DOCS"):
        load_settings({"TRIAGE_API_DOCS": "maybe"}, dotenv=None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    rt = runtime(settings(redis_server.url, str(rules), zd, api_docs=False, api_keys=(Secret("k1"),)))
    server, url = serve_app(bootstrap.http_app(rt))
    try:
        with httpx.Client(base_url=url) as http:
            for path in ("/docs", "/redoc", "/openapi.json"):
                assert http.get(path).status_code == 404
            assert http.get("/healthz").status_code == 200
            assert http.post("/v1/score", json={"texts": ["the site is down"]},
                             headers={"X-API-Key": "k1"}).status_code == 200
    finally:
        server.should_exit = True


# -- issue 15 §5: settings parse once and carry the result ------------------------------------------------


def test_jira_priority_map_is_parsed_once(monkeypatch) -> None:
    from connectors.jira import normalize
    from worker import bootstrap
    from worker.errors import ConfigError
    from worker.settings import load_settings

    calls: list[str] = []
    parse = normalize.PriorityMap.parse.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(normalize.PriorityMap, "parse",
                        classmethod(lambda cls, text, *a: calls.append(text) or parse(cls, text, *a)))
    env = {"JIRA_URL": "https://acme.atlassian.net", "JIRA_EMAIL": "bot@acme.example", "JIRA_API_TOKEN": "t",
           "JIRA_PRIORITY_MAP": "low=P4,normal=P3,high=P2,urgent=P1"}
    s = load_settings(env, dotenv=None)
    assert bootstrap.jira_priorities(s) is bootstrap.jira_priorities(s) is s.jira.priorities
    assert s.jira.priorities.name_for("urgent") == "P1" and len(calls) == 1
    with pytest.raises(ConfigError, match="JIRA_PRIORITY_MAP"):
        load_settings({**env, "JIRA_PRIORITY_MAP": "urgent"}, dotenv=None)


def test_the_model_folder_comes_from_settings(monkeypatch, tmp_path) -> None:
    from model.runtime import DEFAULT_MODEL_DIR, TriageModel
    from worker.errors import ConfigError
    from worker.settings import model_dir_setting

    monkeypatch.setenv("TRIAGE_MODEL_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="TRIAGE_MODEL_DIR"):
        model_dir_setting()
    assert model_dir_setting({"TRIAGE_MODEL_DIR": str(DEFAULT_MODEL_DIR)}) == str(DEFAULT_MODEL_DIR)
    assert TriageModel.load().version  # the runtime reads no variable: the shipped model
