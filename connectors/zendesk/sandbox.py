"""A local Zendesk Support API for tests and `triage demo`: no account needed.

Speaks the subset helpdesk-triage uses, with the JSON shapes of Zendesk's OpenAPI description:

    GET  /api/v2/tickets/{id}.json            (?include=users,groups,organizations)
    PUT  /api/v2/tickets/{id}.json            tags / additional_tags / remove_tags, priority, status,
                                              group_id, assignee_id, subject, comment, safe_update
    GET  /api/v2/tickets/{id}/comments.json   offset, or cursor pages (page[size], page[after], sort)
    GET  /api/v2/users/me.json                the bot (every request acts as it)
    GET  /api/v2/users/{id}.json              one user (history: an assignee's e-mail)
    GET  /api/v2/users/search.json            ?query=email:<address> (the Slack app's agent check)
    GET  /api/v2/groups.json                  offset or cursor pages
    GET  /api/v2/incremental/tickets/cursor.json   start_time or cursor, per_page, include

Tickets live in memory. Every update moves updated_at forward and records an audit of the fields
it changed. `requests` records each call for assertions; `fail_next` injects errors (429 with
Retry-After, 5xx, 401, ...); `on_update` runs after each ticket update, before the response is
sent (e.g. to fire the webhook Zendesk's trigger would send).

    with ZendeskSandbox() as zd:
        zd.load_samples()
        os.environ.update(zd.env)          # zenpy then talks to the sandbox
        client = Zenpy(subdomain="sandbox", email="bot@example.com", token="x", disable_cache=True)
"""

from __future__ import annotations

import base64
import copy
import html
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from connectors.sandbox_http import JsonHandler, RecordingSandbox

SAMPLES = Path(__file__).with_name("sample_tickets.json")
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
Json = dict[str, Any]
Reply = tuple[int, Any]


class ApiError(Exception):
    def __init__(self, status: int, error: str, description: str = "", details: Json | None = None):
        super().__init__(error)
        self.status = status
        self.body: Json = {"error": error, "description": description or error}
        if details:
            self.body["details"] = details


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean_tags(tags: Iterable[Any]) -> list[str]:
    """Zendesk's tag rules: lower case, whitespace splits a tag in two, no duplicates."""
    return list(dict.fromkeys(part.lower() for tag in tags for part in str(tag).split()))


def _encode_cursor(*parts: int) -> str:
    return base64.urlsafe_b64encode(".".join(map(str, parts)).encode()).decode()


def _decode_cursor(cursor: str) -> list[int]:
    try:
        return [int(p) for p in base64.urlsafe_b64decode(cursor.encode()).decode().split(".")]
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "InvalidPaginationParameter", "cursor is invalid") from None


class ZendeskSandbox(RecordingSandbox):
    thread_name = "zendesk-sandbox"

    def __init__(self, *, email: str | None = None, token: str | None = None,
                 bot_name: str = "Triage Bot", bot_email: str = "triage-bot@example.com",
                 subdomain: str = "sandbox", clock: Callable[[], float] = time.time):
        self.subdomain = subdomain
        self.on_update: Callable[[Json, Json], None] | None = None
        self._credentials = (email, token) if email and token else None
        self._clock = clock
        super().__init__()
        self._ids = {"ticket": 4200, "user": 36000000100, "comment": 28000000100, "audit": 29000000100,
                     "group": 3600000100, "organization": 3700000100}  # last id handed out, per kind
        self._tickets: dict[int, Json] = {}
        self._comments: dict[int, list[Json]] = {}
        self._users: dict[int, Json] = {}
        self._groups: dict[int, Json] = {}
        self._organizations: dict[int, Json] = {}
        self._audits: list[Json] = []
        self.bot_user_id = self.add_user(bot_name, bot_email, role="agent")["id"]
        self.add_group("Support")

    # -- lifecycle -------------------------------------------------------------------------------


    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    @property
    def env(self) -> dict[str, str]:
        """Environment that points zenpy at this sandbox (it reads them on every request)."""
        return {"ZENPY_FORCE_NETLOC": self.netloc, "ZENPY_FORCE_SCHEME": "http"}

    # -- inspection and control -------------------------------------------------------------------

    @property
    def tickets(self) -> dict[int, Json]:
        with self._lock:
            return copy.deepcopy(self._tickets)

    @property
    def audits(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(self._audits)

    def comments(self, ticket_id: int) -> list[Json]:
        with self._lock:
            return copy.deepcopy(self._comments.get(int(ticket_id), []))

    # -- seeding ------------------------------------------------------------------------------------

    def add_user(self, name: str, email: str, *, role: str = "end-user", organization: str = "",
                 suspended: bool = False, ticket_restriction: str | None = None) -> Json:
        """A user; an agent's `ticket_restriction` ("groups", "assigned", ...) limits the tickets they see."""
        with self._lock:
            for user in self._users.values():
                if user["email"] == email.lower():
                    return copy.deepcopy(user)
            now = _iso(self._clock())
            user_id = self._next("user")
            user = {"id": user_id, "url": f"{self._api_url}/api/v2/users/{user_id}.json",
                    "name": name, "email": email.lower(), "role": role, "active": True, "suspended": suspended,
                    "ticket_restriction": ticket_restriction,
                    "verified": True, "locale": "en-US", "time_zone": "UTC",
                    "organization_id": self._organization_id(organization) if organization else None,
                    "tags": [], "created_at": now, "updated_at": now}
            self._users[user_id] = user
            return copy.deepcopy(user)

    def add_group(self, name: str, description: str = "") -> Json:
        with self._lock:
            found = self._group_by_name(name)
            if found:
                return copy.deepcopy(found)
            now = _iso(self._clock())
            group_id = self._next("group")
            self._groups[group_id] = {
                "id": group_id, "url": f"{self._api_url}/api/v2/groups/{group_id}.json",
                "name": name, "description": description, "default": not self._groups,
                "deleted": False, "is_public": True, "created_at": now, "updated_at": now}
            return copy.deepcopy(self._groups[group_id])

    def add_ticket(self, subject: str, description: str, *, requester: str = "customer@example.com",
                   requester_name: str = "", organization: str = "", priority: str | None = None,
                   tags: Sequence[str] = (), channel: str = "web", group: str = "",
                   assignee: str = "", status: str = "new", type: str | None = None,
                   created_at: float | None = None) -> Json:
        """Create a ticket as its requester would; `assignee` is an agent's email."""
        with self._lock:
            ts = int(self._clock() if created_at is None else created_at)
            user = self.add_user(requester_name or requester.split("@")[0].replace(".", " ").title(),
                                 requester, organization=organization)
            ticket_id = self._next("ticket")
            ticket: Json = {
                "id": ticket_id, "url": f"{self._api_url}/api/v2/tickets/{ticket_id}.json",
                "via": self._via(channel), "created_at": _iso(ts), "updated_at": _iso(ts),
                "generated_timestamp": ts, "subject": subject, "raw_subject": subject,
                "description": description, "status": status, "recipient": "support@example.com",
                "requester_id": user["id"], "submitter_id": user["id"], "collaborator_ids": [],
                "follower_ids": [], "email_cc_ids": [], "has_incidents": False, "is_public": True,
                "due_at": None, "tags": _clean_tags(tags), "custom_fields": [],
                "sharing_agreement_ids": [], "followup_ids": [], "brand_id": 360000001,
                "allow_channelback": False, "allow_attachments": True,
                "from_messaging_channel": False}
            # Zendesk sends null for unset fields; the spec allows none of them to be null: omit.
            optional = {"priority": priority, "type": type,
                        "organization_id": user["organization_id"],
                        "group_id": self.add_group(group)["id"] if group else None,
                        "assignee_id": self._user_by_email(assignee)["id"] if assignee else None}
            ticket.update({k: v for k, v in optional.items() if v is not None})
            self._tickets[ticket_id] = ticket
            self._comments[ticket_id] = []
            audit = self._audit(ticket, user["id"], [("status", None, status)], ts)
            self._add_comment(ticket, audit, description, user["id"], True, channel, ts)
            return copy.deepcopy(ticket)

    def add_comment(self, ticket_id: int, body: str, *, author: str = "", public: bool = True,
                    channel: str = "web", created_at: float | None = None) -> Json:
        """Add a comment as a person (an email; the requester by default), e.g. a customer follow-up."""
        with self._lock:
            ticket = self._ticket(int(ticket_id))
            author_id = self._user_by_email(author)["id"] if author else ticket["requester_id"]
            ts = self._touch(ticket, created_at)
            audit = self._audit(ticket, author_id, [], ts)
            if author_id == ticket["requester_id"] and ticket["status"] in ("pending", "solved"):
                self._change(ticket, audit, "status", "open")
            return copy.deepcopy(self._add_comment(ticket, audit, body, author_id, public, channel, ts))

    def edit_ticket(self, ticket_id: int, *, by: str = "", **fields: Any) -> Json:
        """Change a ticket as an agent would in Zendesk (`by`: the agent's email, else the first
        agent that is not the bot). Fields are Update Ticket's: tags, priority, assignee_id, ..."""
        with self._lock:
            agents = [u for u in self._users.values() if u["role"] != "end-user" and u["id"] != self.bot_user_id]
            author = (self._user_by_email(by) if by else agents[0] if agents
                      else self.add_user("Alex Morgan", "agent@example.com", role="agent"))
        ticket, _ = self._apply_update(int(ticket_id), fields, author["id"])
        return ticket

    def load_samples(self, path: str | Path = SAMPLES) -> list[int]:
        """Load groups, agents and tickets (with their follow-up comments) from a samples file."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        now = self._clock()
        for group in data.get("groups", []):
            self.add_group(group["name"], group.get("description", ""))
        for agent in data.get("agents", []):
            self.add_user(agent["name"], agent["email"], role="agent")
        ids = []
        for spec in data.get("tickets", []):
            ticket = self.add_ticket(
                spec["subject"], spec["description"], requester=spec["requester"]["email"],
                requester_name=spec["requester"].get("name", ""),
                organization=spec.get("organization", ""), priority=spec.get("priority"),
                tags=spec.get("tags", ()), channel=spec.get("channel", "web"),
                group=spec.get("group", ""), assignee=spec.get("assignee", ""),
                type=spec.get("type"), created_at=now - 60 * spec.get("minutes_ago", 0))
            for comment in spec.get("comments", []):
                self.add_comment(ticket["id"], comment["body"], author=comment.get("author", ""),
                                 public=comment.get("public", True),
                                 created_at=now - 60 * comment.get("minutes_ago", 0))
            ids.append(ticket["id"])
        return ids

    # -- webhooks -----------------------------------------------------------------------------------

    def trigger_payload(self, ticket_id: int, current_user_id: int | None = None) -> Json:
        """trigger_body.json rendered for a ticket, as Zendesk's trigger would send it.
        `current_user_id`: who made the change (default: the latest public comment's author)."""
        with self._lock:
            ticket = self._ticket(int(ticket_id))
            public = [c for c in self._comments[int(ticket_id)] if c["public"]]
            latest = public[-1] if public else None
            requester = self._users[ticket["requester_id"]]
            org = self._organizations.get(ticket.get("organization_id") or 0, {})
            group = self._groups.get(ticket.get("group_id") or 0, {})
            return {
                "kind": "helpdesk-triage/zendesk-trigger/v1",
                "ticket": {
                    "id": str(ticket["id"]), "title": ticket["subject"], "status": ticket["status"].title(),
                    "priority": (ticket.get("priority") or "").title(), "tags": " ".join(ticket["tags"]),
                    "via": ticket["via"]["channel"].replace("_", " ").title(),
                    # {{ticket.updated_at_with_timestamp}} renders to the minute, e.g. 2013-12-12T05:35Z
                    "updated_at": ticket["updated_at"][:16] + "Z", "requester_email": requester["email"],
                    "organization": org.get("name", ""), "group": group.get("name", ""),
                    "assignee_id": str(ticket.get("assignee_id") or ""),
                },
                "comment": {"id": str(latest["id"]) if latest else "",
                            "author_id": str(latest["author_id"]) if latest else "",
                            "body": latest["body"] if latest else ""},
                "current_user_id": str(current_user_id or (latest["author_id"] if latest else "")),
            }

    def event_payload(self, ticket_id: int, actor_id: int | None = None) -> Json:
        """An event-subscribed webhook, zen:event-type:ticket.created, for a ticket as it is now
        (`actor_id`: who made the change, default the requester)."""
        with self._lock:
            ticket = self._ticket(int(ticket_id))
            detail: Json = {k: (str(ticket[k]) if ticket.get(k) is not None else None)
                      for k in ("id", "requester_id", "submitter_id", "assignee_id", "group_id", "organization_id")}
            detail.update(actor_id=str(actor_id or ticket["requester_id"]), subject=ticket["subject"],
                          description=ticket["description"], tags=list(ticket["tags"]),
                          priority=(ticket.get("priority") or "").upper() or None,
                          status=ticket["status"].upper(), is_public=True, created_at=ticket["created_at"],
                          updated_at=ticket["updated_at"], via={"channel": ticket["via"]["channel"]})
            return {"type": "zen:event-type:ticket.created", "subject": f"zen:ticket:{ticket['id']}",
                    "time": _iso(self._clock()), "zendesk_event_version": "2022-11-06",
                    "id": f"sandbox-{ticket['id']}-{ticket['generated_timestamp']}", "detail": detail,
                    "event": {"meta": {"sequence": {"id": str(ticket["id"]), "position": 1, "total": 1}}}}

    def signed_trigger(self, ticket_id: int, secret: str, current_user_id: int | None = None,
                       timestamp: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the signed trigger webhook request for a ticket."""
        return self._signed(self.trigger_payload(ticket_id, current_user_id), secret, timestamp)

    def signed_event(self, ticket_id: int, secret: str, actor_id: int | None = None,
                     timestamp: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the signed event webhook (ticket.created) for a ticket."""
        return self._signed(self.event_payload(ticket_id, actor_id), secret, timestamp)

    def _signed(self, payload: Json, secret: str, timestamp: str | None) -> tuple[bytes, dict[str, str]]:
        from connectors.zendesk.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

        body = json.dumps(payload).encode()
        ts = timestamp or _iso(self._clock())
        return body, {SIGNATURE_HEADER: sign(secret, ts, body), TIMESTAMP_HEADER: ts,
                      "Content-Type": "application/json"}

    # -- HTTP ---------------------------------------------------------------------------------------

    _ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
        (method, re.compile(rf"^/api/v2/{pattern}$"), name) for method, pattern, name in (
            ("GET", r"tickets/(\d+)\.json", "_show_ticket"),
            ("PUT", r"tickets/(\d+)\.json", "_update_ticket"),
            ("GET", r"tickets/(\d+)/comments\.json", "_list_comments"),
            ("GET", r"users/me\.json", "_show_me"),
            ("GET", r"users/(\d+)\.json", "_show_user"),
            ("GET", r"users/search\.json", "_search_users"),
            ("GET", r"groups\.json", "_list_groups"),
            ("GET", r"incremental/tickets/cursor\.json", "_export_tickets"),
            ("GET", r"tickets/(\d+)/audits\.json", "_list_audits"),  # history: sandbox_history.py
        ))

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: Any) -> tuple[Reply, dict[str, str]]:
        """Serve one request: (status, JSON body) and extra response headers. Records it."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        extra: dict[str, str] = {}
        try:
            fault = self._take_fault(method, parts.path)
            if fault is not None:
                if fault.retry_after is not None:
                    extra["Retry-After"] = f"{fault.retry_after:g}"
                error, description = _FAULT_BODIES.get(fault.status, ("Error", "Injected failure"))
                raise ApiError(fault.status, error, description)
            self._authenticate(headers)
            status, payload = self._route(method, parts.path, query, body)
        except ApiError as e:
            status, payload = e.status, e.body
        self._record(method, parts.path, query, body, headers, status, payload)
        return (status, payload), extra

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        for route_method, pattern, name in self._ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                handler: Callable[..., Reply] = getattr(self, name)
                return handler(*match.groups(), query=query, body=body)
        raise ApiError(404, "InvalidEndpoint", "Not found")

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not auth.lower().startswith("basic "):
            raise ApiError(401, "Couldn't authenticate you")
        if self._credentials is not None:
            email, token = self._credentials
            try:
                user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                user, secret = "", ""
            if (user, secret) != (f"{email}/token", token):
                raise ApiError(401, "Couldn't authenticate you")

    # -- endpoints ----------------------------------------------------------------------------------

    def _show_ticket(self, ticket_id: str, *, query: dict[str, list[str]], body: Any) -> Reply:
        with self._lock:
            ticket = self._ticket(int(ticket_id))
            return 200, {"ticket": copy.deepcopy(ticket), **self._sideloads([ticket], query)}

    def _show_me(self, *, query: dict[str, list[str]], body: Any) -> Reply:
        with self._lock:
            return 200, {"user": copy.deepcopy(self._users[self.bot_user_id])}

    def _show_user(self, user_id: str, *, query: dict[str, list[str]], body: Any) -> Reply:
        with self._lock:
            if int(user_id) not in self._users:
                raise ApiError(404, "RecordNotFound", "Not found")
            return 200, {"user": copy.deepcopy(self._users[int(user_id)])}

    def _search_users(self, *, query: dict[str, list[str]], body: Any) -> Reply:
        """`query=email:<address>` matches that e-mail exactly; any other query, part of a name or e-mail."""
        text = _one(query, "query").strip().strip('"').lower()
        if not text:
            raise ApiError(400, "InvalidSearch", "query is required")
        with self._lock:
            if text.startswith("email:"):
                found = [u for u in self._users.values() if u["email"] == text[len("email:"):].strip()]
            else:
                found = [u for u in self._users.values() if text in u["email"] or text in u["name"].lower()]
            users = [copy.deepcopy(u) for u in sorted(found, key=lambda u: u["id"])]
        return 200, {"users": users, "next_page": None, "previous_page": None, "count": len(users)}

    def _list_groups(self, *, query: dict[str, list[str]], body: Any) -> Reply:
        with self._lock:
            groups = [copy.deepcopy(g) for g in self._groups.values() if not g["deleted"]]
        return 200, self._paginate("groups", groups, "groups.json", query)

    def _list_comments(self, ticket_id: str, *, query: dict[str, list[str]], body: Any) -> Reply:
        with self._lock:
            self._ticket(int(ticket_id))
            comments = copy.deepcopy(self._comments[int(ticket_id)])
        descending = _one(query, "sort") == "-created_at" or _one(query, "sort_order") == "desc"
        comments.sort(key=lambda c: (c["created_at"], c["id"]), reverse=descending)
        return 200, self._paginate("comments", comments, f"tickets/{ticket_id}/comments.json", query)

    def _list_audits(self, ticket_id: str, *, query: dict[str, list[str]], body: Any) -> Reply:
        with self._lock:
            self._ticket(int(ticket_id))
            audits = [copy.deepcopy(a) for a in self._audits if a["ticket_id"] == int(ticket_id)]
        return 200, self._paginate("audits", audits, f"tickets/{ticket_id}/audits.json", query)

    def _export_tickets(self, *, query: dict[str, list[str]], body: Any) -> Reply:
        cursor, start_time = _one(query, "cursor"), _one(query, "start_time")
        if bool(cursor) == bool(start_time):
            raise ApiError(400, "InvalidPaginationParameter", "Send either start_time or cursor")
        if cursor:
            after = tuple(_decode_cursor(cursor))
        elif start_time.isdigit():
            after = (int(start_time) - 1, 2**62)  # everything at or after start_time
        else:
            raise ApiError(400, "InvalidValue", "start_time must be a unix time")
        per_page = min(int(_one(query, "per_page") or 1000), 1000)
        with self._lock:
            changed = sorted((t for t in self._tickets.values()
                              if (t["generated_timestamp"], t["id"]) > after),
                             key=lambda t: (t["generated_timestamp"], t["id"]))
            page = [copy.deepcopy(t) for t in changed[:per_page]]
            sideloads = self._sideloads(page, query)
        last = (page[-1]["generated_timestamp"], page[-1]["id"]) if page else after
        after_cursor = _encode_cursor(*last)
        return 200, {"tickets": page, **sideloads, "after_cursor": after_cursor,
                     "after_url": f"{self.url}/api/v2/incremental/tickets/cursor.json?cursor={after_cursor}",
                     "before_cursor": None, "before_url": None,
                     "end_of_stream": len(changed) <= per_page}

    def _update_ticket(self, ticket_id: str, *, query: dict[str, list[str]], body: Any) -> Reply:
        data = body.get("ticket") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ApiError(400, "InvalidValue", "The request body needs a ticket object")
        ticket, audit = self._apply_update(int(ticket_id), data, self.bot_user_id)
        if audit is None:
            return 200, {"ticket": ticket}
        if self.on_update is not None:
            self.on_update(copy.deepcopy(ticket), copy.deepcopy(audit))
        return 200, {"ticket": ticket, "audit": audit}

    def _apply_update(self, ticket_id: int, data: Json, author_id: int) -> tuple[Json, Json | None]:
        """Validate and apply an update as `author_id`; copies of the ticket and its audit
        (None when nothing changed)."""
        with self._lock:
            ticket = self._ticket(ticket_id)
            if data.get("safe_update") and data.get("updated_stamp") != ticket["updated_at"]:
                raise ApiError(409, "UpdateConflict", "Safe Update prevented the update due to "
                               "outdated ticket data. Please fetch the latest ticket data and try again.")
            fields = self._validated_fields(ticket, data)
            comment = data.get("comment")
            changes = {k: v for k, v in fields.items() if ticket.get(k) != v}
            if not changes and not comment:
                return copy.deepcopy(ticket), None
            ts = self._touch(ticket)
            audit = self._audit(ticket, author_id, [], ts)
            for name, value in changes.items():
                self._change(ticket, audit, name, value)
            if comment:
                self._add_comment(ticket, audit, comment.get("body") or comment.get("html_body", ""),
                                  int(comment.get("author_id") or author_id),
                                  bool(comment.get("public", True)), "api", ts)
            if ticket["status"] == "new" and ("assignee_id" in changes or comment):
                self._change(ticket, audit, "status", "open")
            return copy.deepcopy(ticket), copy.deepcopy(audit)

    def _validated_fields(self, ticket: Json, data: Json) -> Json:
        """The ticket fields an update asks for, or a 422 like Zendesk's RecordInvalid."""
        fields: Json = {}
        errors: dict[str, str] = {}
        for name, allowed in (("priority", PRIORITIES), ("status", STATUSES)):
            if name in data:
                if data[name] in allowed:
                    fields[name] = data[name]
                else:
                    errors[name] = f"{name}: is not valid"
        if isinstance(data.get("subject"), str):
            fields["subject"] = data["subject"]
        if "group_id" in data:
            if data["group_id"] in self._groups:
                fields["group_id"] = data["group_id"]
            else:
                errors["group"] = "Group: is invalid"
        assignee = data.get("assignee_id") or (
            self._user_by_email(data["assignee_email"], missing_ok=True).get("id")
            if data.get("assignee_email") else None)
        if "assignee_id" in data or "assignee_email" in data:
            if assignee in self._users and self._users[assignee]["role"] in ("agent", "admin"):
                fields["assignee_id"] = assignee
            else:
                errors["assignee"] = "Assignee: is not an agent"
        comment = data.get("comment")
        if comment is not None and not (isinstance(comment, dict) and (comment.get("body")
                                                                       or comment.get("html_body"))):
            errors["comment"] = "Comment: body can't be blank"
        tags = list(ticket["tags"])
        for key in ("tags", "additional_tags", "remove_tags"):
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, (list, str)):
                errors[key] = f"{key}: must be a list"
                continue
            given = _clean_tags([value] if isinstance(value, str) else value)
            tags = given if key == "tags" else (
                _clean_tags(tags + given) if key == "additional_tags" else [t for t in tags if t not in given])
        fields["tags"] = tags
        if errors:
            raise ApiError(422, "RecordInvalid", "Record validation errors",
                           {k: [{"description": v}] for k, v in errors.items()})
        return fields

    # -- internals -------------------------------------------------------------------------------

    @property
    def _api_url(self) -> str:
        return self.url if self._server is not None else f"https://{self.subdomain}.zendesk.com"

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _ticket(self, ticket_id: int) -> Json:
        if ticket_id not in self._tickets:
            raise ApiError(404, "RecordNotFound", "Not found")
        return self._tickets[ticket_id]

    def _group_by_name(self, name: str) -> Json | None:
        return next((g for g in self._groups.values() if g["name"].lower() == name.lower()), None)

    def _organization_id(self, name: str) -> int:
        for org in self._organizations.values():
            if org["name"].lower() == name.lower():
                return int(org["id"])
        org_id, now = self._next("organization"), _iso(self._clock())
        self._organizations[org_id] = {
            "id": org_id, "url": f"{self._api_url}/api/v2/organizations/{org_id}.json",
            "name": name, "domain_names": [], "tags": [], "created_at": now, "updated_at": now}
        return org_id

    def _user_by_email(self, email: str, missing_ok: bool = False) -> Json:
        found = next((u for u in self._users.values() if u["email"] == email.lower()), None)
        if found is None and not missing_ok:
            raise KeyError(f"no sandbox user {email}")
        return found or {}

    def _via(self, channel: str) -> Json:
        return {"channel": channel, "source": {"from": {}, "to": {}, "rel": None}}

    def _touch(self, ticket: Json, at: float | None = None) -> int:
        """Move updated_at forward: at least one second per change, so safe updates can tell."""
        ts = max(int(self._clock() if at is None else at), ticket["generated_timestamp"] + 1)
        ticket["updated_at"], ticket["generated_timestamp"] = _iso(ts), ts
        return ts

    def _audit(self, ticket: Json, author_id: int, changes: list[tuple[str, Any, Any]], ts: int) -> Json:
        audit: Json = {"id": self._next("audit"), "ticket_id": ticket["id"], "author_id": author_id,
                       "created_at": _iso(ts), "metadata": {"system": {}, "custom": {}},
                       "via": self._via("api" if author_id == self.bot_user_id else "web"), "events": []}
        self._audits.append(audit)
        for name, previous, value in changes:
            audit["events"].append(self._event(name, previous, value))
        return audit

    def _event(self, name: str, previous: Any, value: Any) -> Json:
        # The spec types an audit event value as string or integer: tags go space-separated.
        def render(v: Any) -> Any:
            return " ".join(v) if isinstance(v, list) else v
        event = {"id": self._next("audit"), "type": "Create" if previous is None else "Change",
                 "field_name": name, "value": render(value)}
        if previous is not None:
            event["previous_value"] = render(previous)
        return event

    def _change(self, ticket: Json, audit: Json, name: str, value: Any) -> None:
        audit["events"].append(self._event(name, ticket.get(name), value))
        ticket[name] = value

    def _add_comment(self, ticket: Json, audit: Json, body: str, author_id: int, public: bool,
                     channel: str, ts: float) -> Json:
        comment = {"id": self._next("comment"), "type": "Comment", "author_id": author_id,
                   "body": body, "plain_body": body,
                   "html_body": "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n")),
                   "public": public, "attachments": [], "audit_id": audit["id"],
                   "via": self._via(channel), "metadata": {"system": {}, "custom": {}},
                   "created_at": _iso(ts)}
        self._comments[ticket["id"]].append(comment)
        audit["events"].append({k: comment[k] for k in ("id", "type", "author_id", "body", "public")})
        return comment

    def _sideloads(self, tickets: Sequence[Json], query: dict[str, list[str]]) -> Json:
        include = set(",".join(query.get("include", [])).split(","))
        out: Json = {}
        if "users" in include:
            ids = {t.get(k) for t in tickets for k in ("requester_id", "submitter_id", "assignee_id")}
            out["users"] = [copy.deepcopy(self._users[i]) for i in sorted(i for i in ids if i)]
        for kind, store, key in (("groups", self._groups, "group_id"),
                                 ("organizations", self._organizations, "organization_id")):
            if kind in include:
                ids = {t.get(key) for t in tickets}
                out[kind] = [copy.deepcopy(store[i]) for i in sorted(i for i in ids if i)]
        return out

    def _paginate(self, key: str, items: list[Json], path: str, query: dict[str, list[str]]) -> Json:
        """Cursor pages when page[size] is given (meta + links), else one offset-style page."""
        size = _one(query, "page[size]")
        if not size:
            return {key: items, "next_page": None, "previous_page": None, "count": len(items)}
        start = _decode_cursor(_one(query, "page[after]"))[0] if _one(query, "page[after]") else 0
        end = start + min(int(size), 100)
        page, has_more = items[start:end], end < len(items)
        after = _encode_cursor(end) if has_more else None
        rest = {k: v for k, v in query.items() if k != "page[after]"}
        next_url = (f"{self.url}/api/v2/{path}?{urlencode({**rest, 'page[after]': [after]}, doseq=True)}"
                    if after else None)
        return {key: page, "meta": {"has_more": has_more, "after_cursor": after,
                                    "before_cursor": _encode_cursor(start) if start else None},
                "links": {"next": next_url, "prev": None}}


_FAULT_BODIES: dict[int, tuple[str, str]] = {
    401: ("Couldn't authenticate you", "Couldn't authenticate you"),
    403: ("Forbidden", "You do not have access to this page."),
    404: ("RecordNotFound", "Not found"),
    409: ("UpdateConflict", "Safe Update prevented the update due to outdated ticket data."),
    422: ("RecordInvalid", "Record validation errors"),
    429: ("TooManyRequests", "Rate limit for ticket updates exceeded, please wait before updating this ticket again"),
    500: ("InternalServerError", "Something went wrong"),
    503: ("ServiceUnavailable", "Zendesk is temporarily unavailable"),
}


def _one(query: Mapping[str, list[str]], key: str) -> str:
    values = query.get(key) or [""]
    return values[-1]


class _Handler(JsonHandler):
    server_version = "ZendeskSandbox/1"
    invalid_json = {"error": "InvalidJSON", "description": "The body is not valid JSON"}
    fixed_headers = {"X-Rate-Limit": "700"}
    content_type = "application/json; charset=utf-8"


ZendeskSandbox.handler = _Handler
