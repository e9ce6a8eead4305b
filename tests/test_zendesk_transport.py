"""ZendeskHttp's write-back PUT: prepared from a cached request, it must send what requests would."""

from __future__ import annotations

import requests
from zenpy import Zenpy

from connectors.zendesk.transport import ZendeskHttp


def test_the_put_is_prepared_as_requests_would_prepare_it():
    http = ZendeskHttp.from_zenpy(Zenpy(subdomain="acme", email="bot@example.com", token="t0k", disable_cache=True))
    session = http.session
    body = {"ticket": {"tags": ["vip", "é"], "comment": {"body": "note\n", "public": False}, "safe_update": True}}

    def same(path: str) -> None:
        got = http._prepared("PUT", path, body)
        want = session.prepare_request(requests.Request("PUT", f"{http.base_url}/api/v2/{path}", json=body))
        assert (got.method, got.url, got.body) == (want.method, want.url, want.body)
        assert dict(got.headers) == dict(want.headers)
        assert got.hooks == want.hooks and got.hooks["response"]  # the 429 hook among them

    same("tickets/42.json")
    session.cookies.set("__cfruid", "abc", domain="acme.zendesk.com")  # a cookie Zendesk set since
    same("tickets/43.json")
    session.auth = ("other@example.com/token", "t1")  # new credentials: prepared again
    same("tickets/44.json")
