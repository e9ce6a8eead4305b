"""The Slack sandbox's users.info and usergroups.users.list (what the agent check reads), through the
real slack_sdk client, each answer checked against Slack's own OpenAPI description (Swagger 2.0:
JSON Schema draft 4 with the spec's definitions) when ../shared/specs has it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from connectors.slack.api import SlackApi
from connectors.slack.sandbox import SlackSandbox
from worker.errors import VendorAuthError, VendorRejected

ROOT = Path(__file__).resolve().parent.parent
SPEC_NAME = "slack_web_openapi_v2.json"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    for base in (ROOT.parent / "shared" / "specs", ROOT / "shared" / "specs"):
        if (base / SPEC_NAME).is_file():
            return json.loads((base / SPEC_NAME).read_text(encoding="utf-8"))
    pytest.skip(f"{SPEC_NAME} not found in ../shared/specs (nor shared/specs) of the repository")


@pytest.fixture
def sb() -> Iterator[SlackSandbox]:
    s = SlackSandbox().start()
    s.add_user("U0AGENT001", "agent@example.com", name="agent")
    s.add_user("U0GONE0001", "gone@example.com", deleted=True)
    s.add_usergroup("S0SUPPORT1", ["U0AGENT001"])
    yield s
    s.stop()


def problems(spec: dict[str, Any], pointer: str, body: Any) -> list[str]:
    """What in `body` breaks the schema at JSON pointer `pointer` of the spec."""
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    registry = Registry().with_resource("urn:slack-spec", Resource(contents=spec, specification=DRAFT4))
    validator = Draft4Validator({"$ref": f"urn:slack-spec#{pointer}"}, registry=registry)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(body)]


def test_users_info_and_usergroups_match_the_spec(sb: SlackSandbox, spec: dict[str, Any]) -> None:
    api = SlackApi(WebClient(token=sb.token, base_url=sb.api_url))
    assert api.user_email("U0AGENT001") == "agent@example.com"
    assert api.user_email("U0GONE0001") == ""  # a deactivated account is nobody
    assert api.usergroup_members("S0SUPPORT1") == {"U0AGENT001"}
    with pytest.raises(VendorRejected, match="user_not_found"):
        api.user_email("U0NOBODY01")
    info = sb.calls_to("users.info")[0]
    assert not problems(spec, "/paths/~1users.info/get/responses/200/schema", info.response)
    assert not problems(spec, "/definitions/objs_user/items/0", info.response["user"])  # a non-enterprise user
    [groups] = sb.calls_to("usergroups.users.list")
    assert not problems(spec, "/paths/~1usergroups.users.list/get/responses/200/schema", groups.response)
    broken = {**info.response["user"], "profile": {"email": "x@example.com"}}  # the check does catch things
    assert problems(spec, "/definitions/objs_user/items/0", broken)


def test_no_email_without_the_scope(sb: SlackSandbox) -> None:
    api = SlackApi(WebClient(token=sb.token, base_url=sb.api_url))
    sb.scopes.discard("users:read.email")
    assert api.user_email("U0AGENT001") == ""
    sb.scopes.discard("usergroups:read")
    with pytest.raises(VendorAuthError, match="usergroups:read"):
        api.usergroup_members("S0SUPPORT1")
