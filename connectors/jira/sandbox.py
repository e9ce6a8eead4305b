"""A local Jira Cloud (with Jira Service Management) for tests: no site needed.

Speaks the subset helpdesk-triage and the `jira` client use, with the JSON shapes of the Jira Cloud
platform REST API v3 OpenAPI description (tests/test_jira_spec.py checks every call against it):

    GET  /rest/api/3/serverInfo                   versionNumbers, deploymentType "Cloud"
    GET  /rest/api/3/field                        system fields + request type, organizations, a
                                                  select list, a text area, a number, a user picker
    GET  /rest/api/3/myself                       the bot (every API call acts as it)
    GET  /rest/api/3/user/search                  query matches display name or email
    GET  /rest/api/3/search/jql                   jql (subset: AND of =, !=, in, not in, >=, >, <=, <
                                                  on project, issuetype, status, labels, key,
                                                  priority, assignee, reporter, created, updated;
                                                  ORDER BY), nextPageToken, maxResults, fields
    GET  /rest/api/3/issue/{idOrKey}              fields, expand=changelog (oldest 100 histories)
    PUT  /rest/api/3/issue/{idOrKey}              fields / update (labels add/remove/set, priority,
                                                  assignee, request type, custom fields); 204
    PUT  /rest/api/3/issue/{idOrKey}/assignee     {"accountId"}; 204
    GET  /rest/api/3/issue/{idOrKey}/changelog    startAt, maxResults
    GET  /rest/api/3/issue/{idOrKey}/comment      startAt, maxResults, orderBy
    POST /rest/api/3/issue/{idOrKey}/comment      ADF body, visibility
    GET  /rest/api/3/priority
    POST /rest/servicedeskapi/request/{idOrKey}/comment    {"body", "public"}: JSM internal comments
    GET  /rest/servicedeskapi/servicedesk         and .../servicedesk/{id}/requesttype

Issues live in memory; descriptions and comments are stored as text and served as ADF. Every change
moves `updated` forward and records a changelog history. `requests` records each call, `fail_next`
injects errors (429 with Retry-After, 5xx, 401, ...), `hide_from_search` keeps an issue out of search
results until `index` (Jira's search index lags behind writes), and `on_change` receives the webhook
payload(s) Jira would send after each change made through the API (the bot's own write-backs).

    with JiraSandbox() as jira:
        key = jira.add_issue("SUP", "Checkout down", "Nothing loads", reporter="ops@acme.example")
        client = JIRA(jira.url, basic_auth=(jira.email, jira.token), options={"rest_api_version": "3"})
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.jira.normalize import AUTOMATION_KIND, adf_document, adf_text
from connectors.sandbox_http import JsonHandler, RecordingSandbox

Json = dict[str, Any]
Reply = tuple[int, Any]
AUTOMATION_BODY = Path(__file__).with_name("automation_body.json")

PRIORITIES = (("1", "Highest"), ("2", "High"), ("3", "Medium"), ("4", "Low"), ("5", "Lowest"))
DEFAULT_PRIORITY = "3"
REQUEST_TYPE_FIELD = "customfield_10010"
ORGANIZATIONS_FIELD = "customfield_10002"
TEAM_FIELD = "customfield_10050"  # a select list: the field a JSM queue filters on
NOTE_FIELD = "customfield_10060"  # a multi-line text field (ADF in REST v3)
SCORE_FIELD = "customfield_10070"  # a number
OWNER_FIELD = "customfield_10080"  # a user picker
TEAM_OPTIONS = (("10101", "Tier 1"), ("10102", "Tier 2"), ("10103", "Billing"))
COMMENT_EMBED_LIMIT = 20  # comments embedded in an issue's `comment` field (oldest first)
CHANGELOG_EMBED_LIMIT = 100


class ApiError(Exception):
    def __init__(self, status: int, messages: Iterable[str] = (), errors: Mapping[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body: Json = {"errorMessages": list(messages), "errors": dict(errors or {})}


def jira_time(ts: float) -> str:
    """Jira's timestamp format: 2024-05-14T09:12:30.123+0000 (UTC here)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def _one(query: Mapping[str, list[str]], name: str, default: str = "") -> str:
    values = query.get(name) or [default]
    return values[-1]


def _int(query: Mapping[str, list[str]], name: str, default: int) -> int:
    raw = _one(query, name)
    if not raw:
        return default
    if not raw.lstrip("-").isdigit():
        raise ApiError(400, [f"The value '{raw}' is invalid for {name}."])
    return int(raw)


class JiraSandbox(RecordingSandbox):
    thread_name = "jira-sandbox"

    def __init__(self, *, email: str = "triage-bot@example.com", token: str = "sandbox-token",
                 bot_name: str = "Triage Bot", clock: Callable[[], float] = time.time):
        self.email, self.token = email, token
        self.on_change: Callable[[Json], None] | None = None
        self.deployment_type = "Cloud"  # what serverInfo says ("Server": a Data Center site)
        self._clock = clock
        super().__init__()
        self._ids = {"issue": 10000, "comment": 10400, "history": 10700, "project": 10000, "desk": 0,
                     "request_type": 10, "organization": 0, "account": 0}
        self._users: dict[str, Json] = {}
        self._projects: dict[str, Json] = {}
        self._request_types: dict[str, Json] = {}
        self._organizations: dict[str, Json] = {}
        self._issues: dict[str, Json] = {}  # key -> stored issue
        self._unindexed: set[str] = set()
        self.bot_account_id = self.add_user(bot_name, email, account_type="atlassian")

    # -- lifecycle -------------------------------------------------------------------------------


    @property
    def url(self) -> str:
        if self._server is None:
            return "https://sandbox.atlassian.net"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- inspection and control -------------------------------------------------------------------

    def hide_from_search(self, key: str) -> None:
        """Keep an issue out of search results (as if Jira had not indexed it yet)."""
        with self._lock:
            self._unindexed.add(key)

    def index(self, key: str) -> None:
        with self._lock:
            self._unindexed.discard(key)

    def issue(self, key: str) -> Json:
        """The issue as GET /rest/api/3/issue/{key} returns it (all fields, every comment)."""
        with self._lock:
            issue = self._issue(key)
            return self._issue_json(issue, ["*all"], changelog=False, comment_limit=None)

    def labels(self, key: str) -> list[str]:
        with self._lock:
            return list(self._issue(key)["labels"])

    def priority(self, key: str) -> str:
        with self._lock:
            return dict(PRIORITIES)[self._issue(key)["priority"]]

    def assignee(self, key: str) -> str | None:
        with self._lock:
            return self._issue(key)["assignee"]

    def field(self, key: str, field_id: str) -> Any:
        with self._lock:
            return copy.deepcopy(self._issue(key)["custom"].get(field_id))

    def request_type(self, key: str) -> str:
        with self._lock:
            rt = self._issue(key)["request_type"]
            return self._request_types[rt]["name"] if rt else ""

    def comments(self, key: str) -> list[Json]:
        """Stored comments, oldest first: id, author (accountId), body (text), public, created."""
        with self._lock:
            return copy.deepcopy(self._issue(key)["comments"])

    def histories(self, key: str) -> list[Json]:
        with self._lock:
            return [self._history_json(h) for h in self._issue(key)["histories"]]

    def account_id(self, email: str) -> str:
        with self._lock:
            return self._user_by_email(email)["accountId"]

    # -- seeding ------------------------------------------------------------------------------------

    def add_user(self, name: str, email: str, *, account_type: str = "atlassian") -> str:
        """A user (an agent: "atlassian"; a portal customer: "customer"); returns its accountId."""
        with self._lock:
            for user in self._users.values():
                if user["emailAddress"] == email.lower():
                    return str(user["accountId"])
            self._ids["account"] += 1
            digest = hashlib.sha1(email.lower().encode()).hexdigest()[:16]
            account = f"557058:{self._ids['account']:04d}{digest}" if account_type == "atlassian" \
                else f"qm:{digest}:{self._ids['account']:04d}"
            self._users[account] = {"accountId": account, "accountType": account_type, "displayName": name,
                                    "emailAddress": email.lower(), "active": True, "timeZone": "Europe/Paris"}
            return account

    def add_project(self, key: str, name: str = "", *, service_desk: bool = True) -> Json:
        with self._lock:
            if key in self._projects:
                return copy.deepcopy(self._projects[key])
            self._ids["project"] += 1
            project: Json = {"id": str(self._ids["project"]), "key": key, "name": name or key.title(),
                             "projectTypeKey": "service_desk" if service_desk else "software", "desk": None}
            if service_desk:
                self._ids["desk"] += 1
                project["desk"] = str(self._ids["desk"])
            self._projects[key] = project
            return copy.deepcopy(project)

    def add_request_type(self, project: str, name: str, issue_type: str = "Service request") -> str:
        with self._lock:
            desk = (self._projects.get(project) or self.add_project(project))["desk"]
            if desk is None:
                raise ValueError(f"{project} is not a service desk project")
            for rt in self._request_types.values():
                if rt["serviceDeskId"] == desk and rt["name"].lower() == name.lower():
                    return str(rt["id"])
            self._ids["request_type"] += 1
            rt_id = str(self._ids["request_type"])
            self._request_types[rt_id] = {"id": rt_id, "name": name, "serviceDeskId": desk,
                                          "issueType": issue_type}
            return rt_id

    def add_organization(self, name: str) -> str:
        with self._lock:
            for org in self._organizations.values():
                if org["name"] == name:
                    return str(org["id"])
            self._ids["organization"] += 1
            org_id = str(self._ids["organization"])
            self._organizations[org_id] = {"id": org_id, "name": name}
            return org_id

    def add_issue(self, project: str, summary: str, description: str = "", *,
                  reporter: str = "customer@example.com", issue_type: str = "",
                  request_type: str = "", priority: str = "Medium", labels: Iterable[str] = (),
                  assignee: str = "", organization: str = "", created_at: float | None = None,
                  indexed: bool = True) -> str:
        """Create an issue as its reporter would (on the portal for a JSM project); returns its key.
        `assignee` is an agent's email; `request_type` a name (created when missing)."""
        with self._lock:
            proj = self._project(project) if project in self._projects else self.add_project(project)
            service_desk = proj["desk"] is not None
            reporter_id = self.add_user(reporter.split("@")[0].replace(".", " ").title(), reporter,
                                        account_type="customer" if service_desk else "atlassian")
            ts = self._clock() if created_at is None else created_at
            self._ids["issue"] += 1
            number = sum(1 for k in self._issues if k.startswith(f"{project}-")) + 1
            key = f"{project}-{number}"
            rt = self.add_request_type(project, request_type) if request_type else (
                self.add_request_type(project, "Get IT help") if service_desk else None)
            self._issues[key] = {
                "id": str(self._ids["issue"]), "key": key, "project": project, "summary": summary,
                "description": description,
                "issuetype": issue_type or (self._request_types[rt]["issueType"] if rt else "Task"),
                "status": "Waiting for support" if service_desk else "To Do",
                "priority": self._priority_id(priority), "labels": list(dict.fromkeys(labels)),
                "assignee": self._user_by_email(assignee)["accountId"] if assignee else None,
                "reporter": reporter_id, "request_type": rt,
                "organizations": [self.add_organization(organization)] if organization else [],
                "custom": {}, "created": ts, "updated": ts, "comments": [], "histories": []}
            if not indexed:
                self._unindexed.add(key)
            return key

    def add_comment(self, key: str, body: str, *, author: str = "", public: bool = True,
                    created_at: float | None = None) -> str:
        """A comment by a person (an email; the reporter by default); returns its id."""
        with self._lock:
            issue = self._issue(key)
            account = self._user_by_email(author)["accountId"] if author else issue["reporter"]
            return str(self._comment(issue, account, body, public, created_at)["id"])

    def edit_issue(self, key: str, *, by: str = "", **changes: Any) -> None:
        """Change an issue as an agent would in Jira (`by`: the agent's email, else the first agent
        that is not the bot): priority="High", assignee="agent@..." (or None), labels=[...],
        summary="...", request_type="Billing question", team="Tier 1" (the select list)."""
        with self._lock:
            issue = self._issue(key)
            if by:
                author = self._user_by_email(by)["accountId"]
            else:
                agents = [u for u in self._users.values()
                          if u["accountType"] == "atlassian" and u["accountId"] != self.bot_account_id]
                author = agents[0]["accountId"] if agents else self.add_user("Alex Agent", "agent@example.com")
            items = []
            for name, value in changes.items():
                if name == "priority":
                    items.append(self._set(issue, "priority", self._priority_id(value)))
                elif name == "assignee":
                    account = self._user_by_email(value)["accountId"] if value else None
                    items.append(self._set(issue, "assignee", account))
                elif name == "labels":
                    items.append(self._set(issue, "labels", list(value)))
                elif name == "summary":
                    items.append(self._set(issue, "summary", value))
                elif name == "request_type":
                    items.append(self._set(issue, "request_type", self.add_request_type(issue["project"], value)))
                elif name == "team":
                    option = next(o for o in TEAM_OPTIONS if o[1] == value)
                    items.append(self._set(issue, TEAM_FIELD, {"id": option[0], "value": option[1]}))
                else:
                    raise ValueError(f"edit_issue cannot change {name}")
            self._history(issue, author, [i for i in items if i])

    # -- webhooks -----------------------------------------------------------------------------------

    def webhook_payload(self, key: str, event: str = "jira:issue_created", *, user: str | None = None,
                        comment_id: str | None = None, changelog: Json | None = None,
                        adf: bool = False) -> Json:
        """A Jira Cloud admin webhook body for an issue. `user`: who acted (accountId; default: the
        comment's author, else the reporter). Bodies are wiki-markup strings unless `adf`."""
        with self._lock:
            issue = self._issue(key)
            comment = next((c for c in issue["comments"] if str(c["id"]) == str(comment_id)), None) \
                if comment_id else None
            actor = user or (comment["author"] if comment else issue["reporter"])
            payload: Json = {
                "timestamp": int(self._clock() * 1000), "webhookEvent": event,
                "user": self._user_json(actor),
                "issue": self._webhook_issue(issue, slim=event == "comment_created", adf=adf)}
            if event == "jira:issue_created":
                payload["issue_event_type_name"] = "issue_created"
            elif event == "jira:issue_updated":
                payload["issue_event_type_name"] = "issue_commented" if comment else "issue_generic"
                if changelog is not None:
                    payload["changelog"] = changelog
            if comment is not None:
                payload["comment"] = self._comment_json(issue, comment, adf=adf, api="2")
            return payload

    def signed_webhook(self, key: str, secret: str, event: str = "jira:issue_created", *,
                       identifier: str | None = None, **kw: Any) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the signed webhook request Jira sends for an issue."""
        from connectors.jira.signature import IDENTIFIER_HEADER, SIGNATURE_HEADER, sign

        body = json.dumps(self.webhook_payload(key, event, **kw)).encode()
        ident = identifier or hashlib.sha1(body).hexdigest()
        return body, {SIGNATURE_HEADER: sign(secret, body), IDENTIFIER_HEADER: ident,
                      "X-Atlassian-Webhook-Flow": "Primary", "Content-Type": "application/json"}

    def automation_payload(self, key: str, comment_id: str | None = None, initiator: str | None = None) -> Json:
        """automation_body.json rendered for an issue as Jira Automation would (smart values that do
        not apply, e.g. {{comment.id}} on "Work item created", render empty)."""
        with self._lock:
            issue = self._issue(key)
            comment = next((c for c in issue["comments"] if str(c["id"]) == str(comment_id)), None) \
                if comment_id else None
            values = {
                "issue.key": key, "issue.summary.jsonEncode": issue["summary"],
                "issue.description.jsonEncode": issue["description"],
                "issue.created.jiraDateTime": jira_time(issue["created"]),
                "comment.id": str(comment["id"]) if comment else "",
                "comment.body.jsonEncode": comment["body"] if comment else "",
                "comment.internal": ("false" if comment["public"] else "true") if comment else "",
                "comment.author.accountId": comment["author"] if comment else "",
                "initiator.accountId": initiator or (comment["author"] if comment else issue["reporter"]),
            }
        template = AUTOMATION_BODY.read_text(encoding="utf-8")
        missing = set(re.findall(r"\{\{([^}]+)\}\}", template)) - set(values)
        if missing:
            raise KeyError(f"automation_body.json uses smart values the sandbox does not render: {sorted(missing)}")
        rendered = re.sub(r"\{\{([^}]+)\}\}", lambda m: json.dumps(values[m.group(1)])[1:-1], template)
        payload: Json = json.loads(rendered)
        assert payload["kind"] == AUTOMATION_KIND
        return payload

    # -- HTTP ---------------------------------------------------------------------------------------

    _ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
        (method, re.compile(f"^{pattern}$"), name) for method, pattern, name in (
            ("GET", r"/rest/api/3/serverInfo", "_server_info"),
            ("GET", r"/rest/api/3/field", "_list_fields"),
            ("GET", r"/rest/api/3/myself", "_myself"),
            ("GET", r"/rest/api/3/user/search", "_search_users"),
            ("GET", r"/rest/api/3/user/viewissue/search", "_search_browsers"),
            ("GET", r"/rest/api/3/priority", "_list_priorities"),
            ("GET", r"/rest/api/3/search/jql", "_search"),
            ("GET", r"/rest/api/3/issue/([^/]+)", "_get_issue"),
            ("PUT", r"/rest/api/3/issue/([^/]+)", "_edit_issue"),
            ("PUT", r"/rest/api/3/issue/([^/]+)/assignee", "_assign"),
            ("GET", r"/rest/api/3/issue/([^/]+)/changelog", "_get_changelog"),
            ("GET", r"/rest/api/3/issue/([^/]+)/comment", "_get_comments"),
            ("POST", r"/rest/api/3/issue/([^/]+)/comment", "_add_comment"),
            ("POST", r"/rest/servicedeskapi/request/([^/]+)/comment", "_add_request_comment"),
            ("GET", r"/rest/servicedeskapi/servicedesk", "_list_desks"),
            ("GET", r"/rest/servicedeskapi/servicedesk/([^/]+)/requesttype", "_list_request_types"),
        ))

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: Any) -> tuple[Reply, dict[str, str]]:
        """Serve one request: (status, JSON body or None) and extra response headers. Records it."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        extra: dict[str, str] = {}
        changes: list[Json] = []
        try:
            fault = self._take_fault(method, parts.path)
            if fault is not None:
                if fault.retry_after is not None:
                    extra["Retry-After"] = f"{fault.retry_after:g}"
                raise ApiError(fault.status, [_FAULT_MESSAGES.get(fault.status, "Injected failure")])
            self._authenticate(headers)
            status, payload = self._route(method, parts.path, query, body, changes)
        except ApiError as e:
            status, payload = e.status, e.body
        self._record(method, parts.path, query, body, headers, status, payload)
        if self.on_change is not None:
            for change in changes:
                self.on_change(change)
        return (status, payload), extra

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any, changes: list[Json]) -> Reply:
        for route_method, pattern, name in self._ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                handler: Callable[..., Reply] = getattr(self, name)
                return handler(*match.groups(), query=query, body=body, changes=changes)
        raise ApiError(404, ["Not found"])

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not auth.lower().startswith("basic "):
            raise ApiError(401, ["Client must be authenticated to access this resource."])
        try:
            user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            user, secret = "", ""
        if (user.lower(), secret) != (self.email.lower(), self.token):
            raise ApiError(401, ["Client must be authenticated to access this resource."])

    # -- endpoints: platform --------------------------------------------------------------------------

    def _server_info(self, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        now = self._clock()
        return 200, {"baseUrl": self.url, "displayUrl": self.url, "version": "1001.0.0-SNAPSHOT",
                     "versionNumbers": [1001, 0, 0], "deploymentType": self.deployment_type, "buildNumber": 100289,
                     "buildDate": "2025-01-06T00:00:00.000+0000", "serverTime": jira_time(now),
                     "scmInfo": "8b1b8e2c4c1f", "serverTitle": "Jira"}

    def _list_fields(self, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        def system(fid: str, name: str, kind: str, items: str | None = None, **flags: bool) -> Json:
            schema: Json = {"type": kind, "system": fid}
            if items:
                schema["items"] = items
            return {"id": fid, "key": fid, "name": name, "custom": False, "orderable": flags.get("orderable", True),
                    "navigable": True, "searchable": True, "clauseNames": [fid], "schema": schema}

        def custom(fid: str, name: str, kind: str, plugin: str, items: str | None = None) -> Json:
            schema: Json = {"type": kind, "custom": plugin, "customId": int(fid.split("_")[1])}
            if items:
                schema["items"] = items
            return {"id": fid, "key": fid, "name": name, "custom": True, "orderable": True, "navigable": True,
                    "searchable": True, "clauseNames": [f"cf[{fid.split('_')[1]}]", name], "schema": schema}

        plugins = "com.atlassian.jira.plugin.system.customfieldtypes"
        return 200, [
            system("summary", "Summary", "string"), system("description", "Description", "string"),
            system("labels", "Labels", "array", "string"), system("priority", "Priority", "priority"),
            system("assignee", "Assignee", "user"), system("reporter", "Reporter", "user"),
            system("status", "Status", "status", orderable=False), system("issuetype", "Issue Type", "issuetype"),
            system("project", "Project", "project"), system("created", "Created", "datetime", orderable=False),
            system("updated", "Updated", "datetime", orderable=False),
            system("comment", "Comment", "comments-page"),
            custom(REQUEST_TYPE_FIELD, "Request Type", "sd-customerrequesttype",
                   "com.atlassian.servicedesk:vp-origin"),
            custom(ORGANIZATIONS_FIELD, "Organizations", "array",
                   "com.atlassian.servicedesk:sd-customer-organizations", "sd-customerorganization"),
            custom(TEAM_FIELD, "Support team", "option", f"{plugins}:select"),
            custom(NOTE_FIELD, "Escalation note", "string", f"{plugins}:textarea"),
            custom(SCORE_FIELD, "Impact score", "number", f"{plugins}:float"),
            custom(OWNER_FIELD, "Escalation owner", "user", f"{plugins}:userpicker"),
        ]

    def _myself(self, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        with self._lock:
            return 200, {**self._user_json(self.bot_account_id), "locale": "en_US"}

    def _search_users(self, *, query: dict[str, list[str]], body: Any, changes: list[Json]) -> Reply:
        text = _one(query, "query").lower()
        if not text and not _one(query, "accountId"):
            raise ApiError(400, ["One of 'query' or 'accountId' parameters must be provided."])
        start, size = _int(query, "startAt", 0), min(_int(query, "maxResults", 50), 1000)
        with self._lock:
            found = [self._user_json(u["accountId"]) for u in self._users.values()
                     if (text and (text in u["displayName"].lower() or u["emailAddress"].startswith(text)))
                     or u["accountId"] == _one(query, "accountId")]
        return 200, found[start:start + size]

    def _search_browsers(self, *, query: dict[str, list[str]], body: Any, changes: list[Json]) -> Reply:
        """Users matching `query` who may browse the issue (`issueKey`) or the project (`projectKey`):
        agents ("atlassian" accounts) browse every issue, a portal customer only the requests they reported."""
        text = _one(query, "query").lower()
        key, project = _one(query, "issueKey"), _one(query, "projectKey")
        if not key and not project:
            raise ApiError(400, ["Either 'issueKey' or 'projectKey' must be provided."])
        with self._lock:
            issue = self._issue(key) if key else None
            if project and project not in self._projects:
                raise ApiError(404, [f"No project could be found with key '{project}'."])
            found = [self._user_json(u["accountId"]) for u in self._users.values()
                     if u["active"] and (not text or text in u["displayName"].lower()
                                         or u["emailAddress"].startswith(text))
                     and (u["accountType"] == "atlassian"
                          or (issue is not None and issue["reporter"] == u["accountId"]))]
        return 200, found[: min(_int(query, "maxResults", 50), 1000)]

    def _list_priorities(self, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        return 200, [{**self._priority_json(pid), "description": name, "statusColor": "#cccccc",
                      "isDefault": pid == DEFAULT_PRIORITY} for pid, name in PRIORITIES]

    def _search(self, *, query: dict[str, list[str]], body: Any, changes: list[Json]) -> Reply:
        jql = _one(query, "jql")
        size = _int(query, "maxResults", 50)
        if not 1 <= size <= 5000:
            raise ApiError(400, ["maxResults must be between 1 and 5000."])
        fields = [f for v in query.get("fields", []) for f in v.split(",") if f] or ["id"]
        size = min(size, 100) if fields != ["id"] else size
        start = 0
        token = _one(query, "nextPageToken")
        digest = hashlib.sha1(jql.encode()).hexdigest()[:12]
        if token:
            try:
                offset, token_digest = base64.urlsafe_b64decode(token.encode()).decode().split(":")
                start = int(offset)
            except ValueError:
                raise ApiError(400, ["The nextPageToken is invalid."]) from None
            if token_digest != digest:
                raise ApiError(400, ["The nextPageToken does not belong to this query."])
        matcher, order = _parse_jql(jql, self)
        expand = _one(query, "expand")
        with self._lock:
            hits = [i for k, i in self._issues.items() if k not in self._unindexed and matcher(i)]
            for field, ascending in reversed(order):
                hits.sort(key=partial(_sort_key, field=field), reverse=not ascending)
            page = hits[start:start + size]
            issues = [self._issue_json(i, fields, changelog="changelog" in expand) for i in page]
        more = start + size < len(hits)
        out: Json = {"issues": issues, "isLast": not more}
        if more:
            out["nextPageToken"] = base64.urlsafe_b64encode(f"{start + size}:{digest}".encode()).decode()
        return 200, out

    def _get_issue(self, id_or_key: str, *, query: dict[str, list[str]], body: Any, changes: list[Json]) -> Reply:
        fields = [f for v in query.get("fields", []) for f in v.split(",") if f] or ["*all"]
        with self._lock:
            issue = self._issue(id_or_key)
            return 200, self._issue_json(issue, fields, changelog="changelog" in _one(query, "expand"))

    def _edit_issue(self, id_or_key: str, *, query: dict[str, list[str]], body: Any, changes: list[Json]) -> Reply:
        if not isinstance(body, dict):
            raise ApiError(400, ["The request body is not an object."])
        with self._lock:
            issue = self._issue(id_or_key)
            new = self._validated_edit(issue, body.get("fields") or {}, body.get("update") or {})
            items = [item for name, value in new.items() if (item := self._set(issue, name, value))]
            if not items:
                return 204, None
            history = self._history(issue, self.bot_account_id, items)
            changes.append(self.webhook_payload(issue["key"], "jira:issue_updated", user=self.bot_account_id,
                                                changelog={"id": history["id"], "items": history["items"]}))
        return 204, None

    def _assign(self, id_or_key: str, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        if not isinstance(body, dict) or "accountId" not in body:
            raise ApiError(400, ["The request body needs an accountId (null to unassign)."])
        with self._lock:
            issue = self._issue(id_or_key)
            account = body["accountId"]
            if account is not None and (account not in self._users
                                        or self._users[account]["accountType"] != "atlassian"):
                raise ApiError(400, [], {"assignee": f"User '{account}' cannot be assigned issues."})
            item = self._set(issue, "assignee", account)
            if item:
                history = self._history(issue, self.bot_account_id, [item])
                changes.append(self.webhook_payload(issue["key"], "jira:issue_updated", user=self.bot_account_id,
                                                    changelog={"id": history["id"], "items": history["items"]}))
        return 204, None

    def _get_changelog(self, id_or_key: str, *, query: dict[str, list[str]], body: Any, changes: list[Json]) -> Reply:
        start, size = _int(query, "startAt", 0), min(_int(query, "maxResults", 100), 100)
        with self._lock:
            issue = self._issue(id_or_key)
            values = [self._history_json(h) for h in issue["histories"]]
        out: Json = {"self": f"{self.url}/rest/api/3/issue/{issue['key']}/changelog?startAt={start}&maxResults={size}",
                     "maxResults": size, "startAt": start, "total": len(values),
                     "isLast": start + size >= len(values), "values": values[start:start + size]}
        if not out["isLast"]:
            out["nextPage"] = (f"{self.url}/rest/api/3/issue/{issue['key']}/changelog"
                               f"?startAt={start + size}&maxResults={size}")
        return 200, out

    def _get_comments(self, id_or_key: str, *, query: dict[str, list[str]], body: Any, changes: list[Json]) -> Reply:
        order = _one(query, "orderBy", "created")
        if order not in ("created", "-created", "+created"):
            raise ApiError(400, [f"orderBy '{order}' is not supported."])
        start, size = _int(query, "startAt", 0), min(_int(query, "maxResults", 100), 100)
        with self._lock:
            issue = self._issue(id_or_key)
            comments = sorted(issue["comments"], key=lambda c: (c["created"], int(c["id"])),
                              reverse=order == "-created")
            page = [self._comment_json(issue, c) for c in comments[start:start + size]]
        return 200, {"startAt": start, "maxResults": size, "total": len(comments), "comments": page}

    def _add_comment(self, id_or_key: str, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        doc = body.get("body") if isinstance(body, dict) else None
        if not isinstance(doc, dict) or doc.get("type") != "doc":
            raise ApiError(400, [], {"comment": "Comment body is not valid! (REST v3 wants an ADF document)"})
        text = adf_text(doc).strip()
        if not text:
            raise ApiError(400, [], {"comment": "Comment body can not be empty!"})
        with self._lock:
            issue = self._issue(id_or_key)
            visibility = body.get("visibility") if isinstance(body.get("visibility"), dict) else None
            comment = self._comment(issue, self.bot_account_id, text, True, None, visibility=visibility)
            changes.append(self.webhook_payload(issue["key"], "comment_created", user=self.bot_account_id,
                                                comment_id=comment["id"]))
            return 201, self._comment_json(issue, comment)

    # -- endpoints: Jira Service Management -----------------------------------------------------------

    def _add_request_comment(self, id_or_key: str, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"].strip():
            raise ApiError(400, ["The comment body is required."])
        if "public" in body and not isinstance(body["public"], bool):
            raise ApiError(400, ["public must be true or false."])
        with self._lock:
            issue = self._issue(id_or_key)
            if self._projects[issue["project"]]["desk"] is None:
                raise ApiError(404, [f"The request {issue['key']} is not a customer request."])
            comment = self._comment(issue, self.bot_account_id, body["body"], bool(body.get("public", True)), None)
            changes.append(self.webhook_payload(issue["key"], "comment_created", user=self.bot_account_id,
                                                comment_id=comment["id"]))
            author = self._users[self.bot_account_id]
            ms = int(comment["created"] * 1000)
            return 201, {
                "id": str(comment["id"]), "body": comment["body"], "public": comment["public"],
                "author": {"accountId": author["accountId"], "emailAddress": author["emailAddress"],
                           "displayName": author["displayName"], "active": True, "timeZone": author["timeZone"],
                           "_links": {"jiraRest": f"{self.url}/rest/api/2/user?accountId={author['accountId']}",
                                      "self": f"{self.url}/rest/api/2/user?accountId={author['accountId']}"}},
                "created": {"iso8601": jira_time(comment["created"]), "jira": jira_time(comment["created"]),
                            "friendly": "Today", "epochMillis": ms},
                "_links": {"self": f"{self.url}/rest/servicedeskapi/request/{issue['id']}/comment/{comment['id']}"}}

    def _list_desks(self, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        with self._lock:
            values = [{"id": p["desk"], "projectId": p["id"], "projectName": p["name"], "projectKey": p["key"],
                       "_links": {"self": f"{self.url}/rest/servicedeskapi/servicedesk/{p['desk']}"}}
                      for p in self._projects.values() if p["desk"] is not None]
        return 200, _jsm_page(values, f"{self.url}/rest/servicedeskapi/servicedesk")

    def _list_request_types(self, desk: str, *, query: Any, body: Any, changes: list[Json]) -> Reply:
        with self._lock:
            if desk not in {p["desk"] for p in self._projects.values()}:
                raise ApiError(404, [f"Service desk {desk} does not exist."])
            values = [self._request_type_json(rt) for rt in self._request_types.values() if rt["serviceDeskId"] == desk]
        return 200, _jsm_page(values, f"{self.url}/rest/servicedeskapi/servicedesk/{desk}/requesttype")

    # -- edits -----------------------------------------------------------------------------------------

    def _validated_edit(self, issue: Json, fields: Any, update: Any) -> Json:
        """The stored values an edit asks for, or a 400 like Jira's (errors by field id)."""
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise ApiError(400, ["fields and update must be objects."])
        new: Json = {}
        errors: dict[str, str] = {}
        labels = list(issue["labels"])
        for name, value in fields.items():
            if name == "labels":
                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                    labels = list(dict.fromkeys(value))
                else:
                    errors["labels"] = "labels must be a list of strings"
            elif name == "priority":
                pid = self._priority_ref(value)
                if pid is None:
                    errors["priority"] = "Specify a valid 'id' or 'name' for Priority"
                else:
                    new["priority"] = pid
            elif name == "assignee":
                errors["assignee"] = "Use the assignee resource"  # not on the sandbox's edit screen
            elif name == "summary" and isinstance(value, str) and value.strip():
                new["summary"] = value
            elif name == REQUEST_TYPE_FIELD:
                desk = self._projects[issue["project"]]["desk"]
                rt = self._request_types.get(str(value)) if isinstance(value, (str, int)) else None
                if rt is None or rt["serviceDeskId"] != desk:
                    errors[name] = "The request type you specified is not valid for this project."
                else:
                    new["request_type"] = rt["id"]
            elif name == TEAM_FIELD:
                option = None
                if isinstance(value, dict):
                    option = next((o for o in TEAM_OPTIONS if value.get("id") == o[0] or value.get("value") == o[1]),
                                  None)
                if value is not None and option is None:
                    shown = value.get("value") if isinstance(value, dict) else value
                    errors[name] = f"Option value '{shown}' is not valid"
                else:
                    new[name] = {"id": option[0], "value": option[1]} if option else None
            elif name == NOTE_FIELD:
                if value is not None and not (isinstance(value, dict) and value.get("type") == "doc"):
                    errors[name] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
                else:
                    new[name] = value
            elif name == SCORE_FIELD:
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    errors[name] = "Operation value must be a number"
                else:
                    new[name] = value
            elif name == OWNER_FIELD:
                account = value.get("accountId") if isinstance(value, dict) else None
                if value is not None and account not in self._users:
                    errors[name] = f"Specify a valid value for {name}"
                else:
                    new[name] = account
            else:
                errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
        for name, ops in update.items():
            if not isinstance(ops, list):
                errors[name] = "update operations must be a list"
                continue
            for op in ops:
                if name == "labels" and isinstance(op, dict) and len(op) == 1:
                    verb, value = next(iter(op.items()))
                    if verb == "add" and isinstance(value, str):
                        labels = labels if value in labels else [*labels, value]
                    elif verb == "remove" and isinstance(value, str):
                        labels = [lb for lb in labels if lb != value]
                    elif verb == "set" and isinstance(value, list):
                        labels = list(dict.fromkeys(value))
                    else:
                        errors["labels"] = f"Unsupported label operation {verb!r}"
                elif name == "priority" and isinstance(op, dict) and "set" in op:
                    pid = self._priority_ref(op["set"])
                    if pid is None:
                        errors["priority"] = "Specify a valid 'id' or 'name' for Priority"
                    else:
                        new["priority"] = pid
                else:
                    errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
        bad = [lb for lb in labels if not lb or any(ch.isspace() for ch in lb) or len(lb) > 255]
        if bad:
            errors["labels"] = f"The label '{bad[0]}' contains spaces which is invalid."
        if errors:
            raise ApiError(400, [], errors)
        new["labels"] = labels
        return new

    def _set(self, issue: Json, name: str, value: Any) -> Json | None:
        """Store a field; the changelog item (None when unchanged)."""
        if name in (TEAM_FIELD, NOTE_FIELD, SCORE_FIELD, OWNER_FIELD):
            before = issue["custom"].get(name)
            if before == value:
                return None
            issue["custom"][name] = value
            return {"field": self._field_name(name), "fieldtype": "custom", "fieldId": name,
                    "from": None, "fromString": _display(before), "to": None, "toString": _display(value)}
        before = issue[name]
        if before == value:
            return None
        issue[name] = value
        if name == "priority":
            names = dict(PRIORITIES)
            return {"field": "priority", "fieldtype": "jira", "fieldId": "priority", "from": before,
                    "fromString": names[before], "to": value, "toString": names[value]}
        if name == "assignee":
            return {"field": "assignee", "fieldtype": "jira", "fieldId": "assignee",
                    "from": before, "fromString": self._users[before]["displayName"] if before else None,
                    "to": value, "toString": self._users[value]["displayName"] if value else None}
        if name == "labels":
            return {"field": "labels", "fieldtype": "jira", "fieldId": "labels", "from": None,
                    "fromString": " ".join(before), "to": None, "toString": " ".join(value)}
        if name == "request_type":
            return {"field": "Request Type", "fieldtype": "custom", "fieldId": REQUEST_TYPE_FIELD,
                    "from": before, "fromString": self._request_types[before]["name"] if before else None,
                    "to": value, "toString": self._request_types[value]["name"]}
        return {"field": name, "fieldtype": "jira", "fieldId": name, "from": None,
                "fromString": str(before), "to": None, "toString": str(value)}

    def _history(self, issue: Json, author: str, items: list[Json]) -> Json:
        ts = self._touch(issue)
        self._ids["history"] += 1
        history = {"id": str(self._ids["history"]), "author": author, "created": ts, "items": items}
        issue["histories"].append(history)
        return self._history_json(history)

    def _comment(self, issue: Json, author: str, body: str, public: bool, at: float | None,
                 visibility: Json | None = None) -> Json:
        ts = self._touch(issue, at)
        self._ids["comment"] += 1
        comment: Json = {"id": str(self._ids["comment"]), "author": author, "body": body, "public": public,
                         "created": ts}
        if visibility:
            comment["visibility"] = {k: visibility[k] for k in ("type", "value", "identifier") if k in visibility}
        issue["comments"].append(comment)
        return comment

    def _touch(self, issue: Json, at: float | None = None) -> float:
        """Move `updated` forward (at least a millisecond per change) and return it."""
        ts = max(self._clock() if at is None else at, issue["updated"] + 0.001)
        issue["updated"] = ts
        return ts

    # -- rendering ---------------------------------------------------------------------------------

    def _issue_json(self, issue: Json, fields: list[str], changelog: bool,
                    comment_limit: int | None = COMMENT_EMBED_LIMIT) -> Json:
        out: Json = {"expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
                     "id": issue["id"], "self": f"{self.url}/rest/api/3/issue/{issue['id']}", "key": issue["key"]}
        wanted = set(fields)
        if wanted != {"id"}:
            every = self._fields_json(issue, comment_limit)
            take_all = "*all" in wanted or "*navigable" in wanted
            out["fields"] = {k: v for k, v in every.items()
                             if take_all and not k.startswith("-") or k in wanted}
            for f in wanted:
                if f.startswith("-"):
                    out["fields"].pop(f[1:], None)
        if changelog:
            histories = [self._history_json(h) for h in issue["histories"]]
            out["changelog"] = {"startAt": 0, "maxResults": min(len(histories), CHANGELOG_EMBED_LIMIT),
                                "total": len(histories), "histories": histories[:CHANGELOG_EMBED_LIMIT]}
        return out

    def _fields_json(self, issue: Json, comment_limit: int | None) -> Json:
        project = self._projects[issue["project"]]
        comments = sorted(issue["comments"], key=lambda c: (c["created"], int(c["id"])))
        shown = comments if comment_limit is None else comments[:comment_limit]
        rt = self._request_types.get(issue["request_type"] or "")
        team = issue["custom"].get(TEAM_FIELD)
        return {
            "summary": issue["summary"],
            "description": adf_document(issue["description"]) if issue["description"] else None,
            "labels": list(issue["labels"]),
            "priority": self._priority_json(issue["priority"]),
            "assignee": self._user_json(issue["assignee"]) if issue["assignee"] else None,
            "reporter": self._user_json(issue["reporter"]), "creator": self._user_json(issue["reporter"]),
            "status": {"self": f"{self.url}/rest/api/3/status/10001", "description": "", "iconUrl": f"{self.url}/",
                       "name": issue["status"], "id": "10001",
                       "statusCategory": {"self": f"{self.url}/rest/api/3/statuscategory/2", "id": 2, "key": "new",
                                          "colorName": "blue-gray", "name": "To Do"}},
            "issuetype": {"self": f"{self.url}/rest/api/3/issuetype/10004", "id": "10004", "description": "",
                          "iconUrl": f"{self.url}/images/icons/issuetypes/task.svg", "name": issue["issuetype"],
                          "subtask": False, "hierarchyLevel": 0},
            "project": self._project_json(project),
            "created": jira_time(issue["created"]), "updated": jira_time(issue["updated"]),
            "comment": {"comments": [self._comment_json(issue, c) for c in shown],
                        "self": f"{self.url}/rest/api/3/issue/{issue['id']}/comment",
                        "maxResults": len(shown), "total": len(comments), "startAt": 0},
            REQUEST_TYPE_FIELD: self._request_value(issue, rt) if rt else None,
            ORGANIZATIONS_FIELD: [{"id": o, "name": self._organizations[o]["name"],
                                   "_links": {"self": f"{self.url}/rest/servicedeskapi/organization/{o}"}}
                                  for o in issue["organizations"]],
            TEAM_FIELD: {"self": f"{self.url}/rest/api/3/customFieldOption/{team['id']}", **team} if team else None,
            NOTE_FIELD: issue["custom"].get(NOTE_FIELD),
            SCORE_FIELD: issue["custom"].get(SCORE_FIELD),
            OWNER_FIELD: self._user_json(issue["custom"][OWNER_FIELD]) if issue["custom"].get(OWNER_FIELD) else None,
        }

    def _webhook_issue(self, issue: Json, slim: bool, adf: bool) -> Json:
        """The issue as webhooks carry it (REST v2 style: text bodies); comment webhooks carry a slim one."""
        fields = self._fields_json(issue, comment_limit=COMMENT_EMBED_LIMIT)
        fields = {k: v.replace("/rest/api/3/", "/rest/api/2/") if isinstance(v, str) else v for k, v in fields.items()}
        fields["description"] = (adf_document(issue["description"]) if adf else issue["description"]) \
            if issue["description"] else None
        fields.pop("comment")
        if slim:
            fields = {k: fields[k] for k in ("summary", "issuetype", "project", "assignee", "priority", "status")}
        return {"id": issue["id"], "self": f"{self.url}/rest/api/2/issue/{issue['id']}", "key": issue["key"],
                "fields": fields}

    def _comment_json(self, issue: Json, comment: Json, adf: bool = True, api: str = "3") -> Json:
        author = self._user_json(comment["author"], api)
        out: Json = {"self": f"{self.url}/rest/api/{api}/issue/{issue['id']}/comment/{comment['id']}",
                     "id": str(comment["id"]), "author": author,
                     "body": adf_document(comment["body"]) if adf else comment["body"],
                     "updateAuthor": author, "created": jira_time(comment["created"]),
                     "updated": jira_time(comment["created"]), "jsdPublic": bool(comment["public"])}
        if comment.get("visibility"):
            out["visibility"] = comment["visibility"]
        return out

    def _history_json(self, history: Json) -> Json:
        return {"id": history["id"], "author": self._user_json(history["author"]),
                "created": jira_time(history["created"]), "items": copy.deepcopy(history["items"])}

    def _user_json(self, account: str, api: str = "3") -> Json:
        user = self._users[account]
        return {"self": f"{self.url}/rest/api/{api}/user?accountId={account}", "accountId": account,
                "emailAddress": user["emailAddress"],
                "avatarUrls": {s: f"{self.url}/avatar/{account}?s={s.split('x')[0]}"
                               for s in ("48x48", "24x24", "16x16", "32x32")},
                "displayName": user["displayName"], "active": user["active"], "timeZone": user["timeZone"],
                "accountType": user["accountType"]}

    def _project_json(self, project: Json) -> Json:
        return {"self": f"{self.url}/rest/api/3/project/{project['id']}", "id": project["id"], "key": project["key"],
                "name": project["name"], "projectTypeKey": project["projectTypeKey"], "simplified": False,
                "avatarUrls": {"48x48": f"{self.url}/rest/api/3/universal_avatar/view/type/project/avatar/10400"}}

    def _priority_json(self, pid: str) -> Json:
        return {"self": f"{self.url}/rest/api/3/priority/{pid}", "name": dict(PRIORITIES)[pid], "id": pid,
                "iconUrl": f"{self.url}/images/icons/priorities/{pid}.svg"}

    def _request_type_json(self, rt: Json) -> Json:
        desk = rt["serviceDeskId"]
        return {"_links": {"self": f"{self.url}/rest/servicedeskapi/servicedesk/{desk}/requesttype/{rt['id']}"},
                "id": rt["id"], "name": rt["name"], "description": "", "helpText": "", "issueTypeId": "10004",
                "serviceDeskId": rt["serviceDeskId"], "portalId": rt["serviceDeskId"], "groupIds": ["1"]}

    def _request_value(self, issue: Json, rt: Json) -> Json:
        return {"_links": {"jiraRest": f"{self.url}/rest/api/2/issue/{issue['id']}",
                           "web": f"{self.url}/servicedesk/customer/portal/{rt['serviceDeskId']}/{issue['key']}",
                           "self": f"{self.url}/rest/servicedeskapi/request/{issue['id']}"},
                "requestType": self._request_type_json(rt),
                "currentStatus": {"status": issue["status"], "statusCategory": "NEW",
                                  "statusDate": {"iso8601": jira_time(issue["updated"]),
                                                 "epochMillis": int(issue["updated"] * 1000)}}}

    # -- lookups ---------------------------------------------------------------------------------------

    def _issue(self, id_or_key: str) -> Json:
        issue = self._issues.get(id_or_key) or next((i for i in self._issues.values() if i["id"] == id_or_key), None)
        if issue is None:
            raise ApiError(404, ["Issue does not exist or you do not have permission to see it."])
        return issue

    def _project(self, key: str) -> Json:
        if key not in self._projects:
            raise KeyError(f"no sandbox project {key}")
        return self._projects[key]

    def _user_by_email(self, email: str) -> Json:
        found = next((u for u in self._users.values() if u["emailAddress"] == email.lower()), None)
        if found is None:
            raise KeyError(f"no sandbox user {email}")
        return found

    def _priority_id(self, name: str) -> str:
        pid = self._priority_ref({"name": name})
        if pid is None:
            raise KeyError(f"no priority {name}")
        return pid

    @staticmethod
    def _priority_ref(value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        for pid, name in PRIORITIES:
            if value.get("id") == pid or str(value.get("name", "")).lower() == name.lower():
                return pid
        return None

    def _field_name(self, field_id: str) -> str:
        return {TEAM_FIELD: "Support team", NOTE_FIELD: "Escalation note", SCORE_FIELD: "Impact score",
                OWNER_FIELD: "Escalation owner"}.get(field_id, field_id)


def _display(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return str(value.get("value") or adf_text(value).strip())
    return str(value)


def _jsm_page(values: list[Json], url: str) -> Json:
    return {"size": len(values), "start": 0, "limit": 50, "isLastPage": True, "values": values,
            "_links": {"base": url.split("/rest/")[0], "context": "", "self": url}}


def _sort_key(issue: Json, *, field: str) -> Any:
    if field in ("key", "issuekey"):
        project, _, number = issue["key"].partition("-")
        return (project, int(number))
    if field in ("created", "updated"):
        return issue[field]
    if field == "priority":
        return int(issue["priority"])
    return str(issue.get(field) or "")


# -- a JQL subset ------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(-?)(\d+)([mhdw])$")
_TERM = re.compile(r'^\s*([\w.\-]+|"[^"]+")\s*(not\s+in|in|!=|>=|<=|=|>|<)\s*(.+?)\s*$', re.IGNORECASE | re.DOTALL)


def _split_top(text: str, word: str) -> list[str]:
    """Split on a keyword outside quotes and parentheses."""
    parts, depth, quote, start, i = [], 0, False, 0, 0
    pattern = re.compile(rf"\s+{word}\s+", re.IGNORECASE)
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0:
            m = pattern.match(text, i)
            if m and (i == 0 or text[i].isspace()):
                parts.append(text[start:i])
                start = i = m.end()
                continue
        i += 1
    parts.append(text[start:])
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _parse_jql(jql: str, sandbox: JiraSandbox) -> tuple[Callable[[Json], bool], list[tuple[str, bool]]]:
    text, order = jql, []
    m = re.search(r"\s*\border\s+by\b(.*)$", text, re.IGNORECASE | re.DOTALL)
    if m:
        text = text[:m.start()]
        for part in m.group(1).split(","):
            bits = part.split()
            if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
                raise ApiError(400, [f"Error in the JQL Query: bad ORDER BY clause '{part.strip()}'."])
            order.append((bits[0].lower(), len(bits) == 1 or bits[1].lower() == "asc"))
    return _parse_expr(text.strip(), sandbox), order


def _parse_expr(text: str, sandbox: JiraSandbox) -> Callable[[Json], bool]:
    if not text:
        return lambda issue: True
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    if len(_split_top(f" {text} ", "or")) > 1:
        raise ApiError(400, ["The sandbox's JQL supports AND only."])
    parts = _split_top(f" {text} ", "and")
    if len(parts) > 1:
        matchers = [_parse_expr(p.strip(), sandbox) for p in parts]
        return lambda issue: all(m(issue) for m in matchers)
    return _parse_term(text, sandbox)


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _parse_term(text: str, sandbox: JiraSandbox) -> Callable[[Json], bool]:
    m = _TERM.match(text)
    if not m:
        raise ApiError(400, [f"Error in the JQL Query: cannot read '{text}'."])
    field, op, raw = _unquote(m.group(1)).lower(), re.sub(r"\s+", " ", m.group(2).lower()), m.group(3)
    if op in ("in", "not in"):
        if not (raw.startswith("(") and raw.endswith(")")):
            raise ApiError(400, [f"Error in the JQL Query: '{op}' needs a list in parentheses."])
        values = [_unquote(v) for v in raw[1:-1].split(",") if v.strip()]
    else:
        values = [_unquote(raw)]
    if field in ("created", "updated"):
        if op not in (">=", ">", "<=", "<", "="):
            raise ApiError(400, [f"Error in the JQL Query: operator '{op}' is not supported for {field}."])
        bound = _jql_date(values[0], sandbox._clock())
        compare = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
                   "<": lambda a, b: a < b, "=": lambda a, b: int(a // 60) == int(b // 60)}[op]
        return lambda issue: compare(issue[field], bound)
    getters: dict[str, Callable[[Json], list[str]]] = {
        "project": lambda i: [i["project"].lower()],
        "issuetype": lambda i: [i["issuetype"].lower()], "type": lambda i: [i["issuetype"].lower()],
        "status": lambda i: [i["status"].lower()],
        "labels": lambda i: [lb.lower() for lb in i["labels"]],
        "key": lambda i: [i["key"].lower()], "issuekey": lambda i: [i["key"].lower()],
        "priority": lambda i: [dict(PRIORITIES)[i["priority"]].lower()],
        "assignee": lambda i: [(i["assignee"] or "").lower()],
        "reporter": lambda i: [i["reporter"].lower()],
    }
    if field not in getters:
        raise ApiError(400, [f"Field '{field}' does not exist or you do not have permission to view it."])
    if op not in ("=", "!=", "in", "not in"):
        raise ApiError(400, [f"Error in the JQL Query: operator '{op}' is not supported for {field}."])
    get, wanted = getters[field], {v.lower() for v in values}
    positive = op in ("=", "in")
    return lambda issue: bool(wanted & set(get(issue))) == positive


def _jql_date(value: str, now: float) -> float:
    m = _RELATIVE.match(value.strip())
    if m:
        amount = int(m.group(2)) * {"m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(3)]
        return now - amount if m.group(1) == "-" else now + amount
    for fmt in ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ApiError(400, [f"Date value '{value}' for field is invalid. Valid formats include: "
                         "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
                         "format e.g. '-5d', '4w 2d'."])


_FAULT_MESSAGES: dict[int, str] = {
    400: "Bad request", 401: "Client must be authenticated to access this resource.",
    403: "You do not have permission to perform this operation.",
    404: "Issue does not exist or you do not have permission to see it.",
    409: "Conflict", 429: "Rate limit exceeded.", 500: "Internal server error",
    503: "Service unavailable",
}


class _Handler(JsonHandler):
    server_version = "JiraSandbox/1"
    invalid_json = {"errorMessages": ["Unexpected character in the request body."], "errors": {}}
    fixed_headers = {"X-RateLimit-Limit": "100"}
    content_type = "application/json;charset=UTF-8"


JiraSandbox.handler = _Handler
