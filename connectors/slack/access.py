"""Who may do what from Slack.

Anyone in the workspace may triage a text (`/triage "some text"`) or a message they can see (the
shortcut). Looking up a helpdesk ticket and Apply (which writes to it) need an agent of that
helpdesk: a Slack user on the allow-list (SLACK_ALLOWED_USERS, or a member of one of
SLACK_ALLOWED_USERGROUPS), or one whose Slack e-mail (users.info, scope users:read.email) is an
active Zendesk agent who can see every ticket (no group/organization restriction: the bot reads
tickets as itself), or a Jira user who can browse that issue. Corrections count as training data
only when they come from such a person. Answers are cached for a few minutes (refusals for less),
so a burst of buttons costs the helpdesk one lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from connectors.slack.api import SlackApi
from worker.errors import VendorError

HELPDESK_NAMES = {"zendesk": "Zendesk", "jira": "Jira"}
ALLOWED_TTL_S = 300.0
REFUSED_TTL_S = 30.0  # short: an admin who just added the agent should not wait long

# helpdesk -> (e-mail, scope) -> may that person see it? scope: a ticket id, "*" every ticket, "" any agent
Directory = Callable[[str, str], bool]


@dataclass
class Access:
    api: SlackApi
    directories: Mapping[str, Directory] = field(default_factory=dict)
    allowed_users: frozenset[str] = frozenset()
    allowed_groups: tuple[str, ...] = ()
    clock: Callable[[], float] = time.monotonic
    _cache: dict[tuple[str, ...], tuple[float, object]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refusal(self, user_id: str, source: str, ticket_id: str) -> str | None:
        """Why `user_id` may not look up or apply ticket `ticket_id` of `source`, or None when they may.
        Raises VendorError when Slack or the helpdesk cannot say right now."""
        name = HELPDESK_NAMES.get(source, source)
        if self.allow_listed(user_id):
            return None
        email = self.email(user_id)
        if not email:
            return (f"Only {name} agents may look up or apply tickets from Slack, and Slack shares no e-mail "
                    f"for you to check that with (the app needs the users:read.email scope). Ask your admin "
                    f"for it, or to add you to SLACK_ALLOWED_USERS. `/triage <text>` works for everyone.")
        directory = self.directories.get(source)
        scope = ticket_id if source == "jira" else "*"  # Jira answers per issue; Zendesk: sees every ticket
        if directory is None or not self._cached(("dir", source, email, scope), lambda: directory(email, scope)):
            what = f"a Jira user who can see {ticket_id}" if source == "jira" else \
                f"an active {name} agent who can see every ticket"
            return (f"Only {name} agents may look up or apply tickets from Slack: your Slack e-mail {email} "
                    f"is not {what}. `/triage <text>` works for everyone.")
        return None

    def is_agent(self, user_id: str) -> bool:
        """Allow-listed, or an agent of any connected helpdesk (a correction of theirs is training data).
        False, not an error, when Slack or a helpdesk cannot say right now."""
        try:
            if self.allow_listed(user_id):
                return True
            email = self.email(user_id)
            return bool(email) and any(self._listed(source, email) for source in self.directories)
        except VendorError:
            return False

    def _listed(self, source: str, email: str) -> bool:
        directory = self.directories[source]
        return bool(self._cached(("dir", source, email, ""), lambda: directory(email, "")))

    def allow_listed(self, user_id: str) -> bool:
        if user_id in self.allowed_users:
            return True
        return any(user_id in self._cached(("group", g), lambda g=g: self.api.usergroup_members(g))  # type: ignore
                   for g in self.allowed_groups)

    def email(self, user_id: str) -> str:
        return str(self._cached(("email", user_id), lambda: self.api.user_email(user_id)))

    def _cached(self, key: tuple[str, ...], compute: Callable[[], object]) -> object:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = compute()  # outside the lock: a slow helpdesk holds up only this question
        ttl = ALLOWED_TTL_S if value else REFUSED_TTL_S
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + ttl, value)
        return value
