"""A team's past in the Zendesk sandbox: solved tickets with the priority, group and type agents set,
satisfaction ratings, and audits in which the bot set a priority first and an agent overrode it.

The team is built at run time from the synthetic ticket set beside the repository
(../shared/data/synthetic_tickets_nc/: English rows, their `priority`, `queue` and `type` columns).
The agents' group comes from `type` (`GROUPS`): the set's queues are barely learnable from the text,
its types are (docs/learning.md), so the demo's learned routing has something to learn; the queue
stays on the ticket as a tag (`queue_<name>`).
That set is LLM-generated and non-commercial: fine for the demo, the tests and the bench, never for a
shipped model, and never committed. Without the folder, `generated_team` makes a small set of its own.

    with ZendeskSandbox() as zd:
        team = synthetic_team(limit=500)            # or generated_team(200)
        load_history(zd, team)                      # solved tickets, audits, CSAT
        # GET /api/v2/incremental/tickets/cursor.json and /api/v2/tickets/{id}/audits.json serve it
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.zendesk.sandbox import ZendeskSandbox
from worker import suggestions

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC_DIR = REPO.parent / "shared" / "data" / "synthetic_tickets_nc"
# the set's priority -> the Zendesk priority an agent picks (a share of `high` goes to `urgent`)
TO_ZENDESK = {"high": "high", "medium": "normal", "low": "low"}
TYPES = {"incident": "incident", "request": "question", "problem": "problem", "change": "task"}
# the set's type -> the group agents assign it to
NOTE = "internal_note"  # in _apply's fields: the bot's internal note of that audit
GROUPS = {"incident": "Incident response", "problem": "Engineering", "request": "Service desk",
          "change": "Change management"}
AGENTS = (("Alex Morgan", "alex.morgan@example.com"), ("Lucia Ortega", "lucia.ortega@example.com"),
          ("Sam Chen", "sam.chen@example.com"), ("Priya Nair", "priya.nair@example.com"))
DAY = 86400


@dataclass(frozen=True)
class TeamTicket:
    subject: str
    body: str
    priority: str  # high | medium | low (the agent's judgement)
    queue: str  # the set's queue: a tag (Zendesk), a label (Jira)
    type: str  # Incident | Request | Problem | Change (may be empty)

    @property
    def group(self) -> str:
        """The group agents assign it to (from its type; "" without one)."""
        return GROUPS.get(self.type.lower(), "")

    @property
    def queue_tag(self) -> str:
        return "queue_" + "_".join(self.queue.lower().split()) if self.queue else ""


def synthetic_team(folder: str | Path = SYNTHETIC_DIR, limit: int | None = None) -> list[TeamTicket]:
    """English rows of the synthetic set, deduplicated by text, in file order (`limit`: the first N).
    Raises FileNotFoundError when the folder holds no CSV."""
    files = sorted(Path(folder).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no synthetic ticket CSVs in {folder}")
    seen: set[str] = set()
    team: list[TeamTicket] = []
    csv.field_size_limit(16 * 1024 * 1024)
    for path in files:
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            for row in csv.DictReader(f):
                body = (row.get("body") or "").replace("\\n", "\n").strip()
                subject = (row.get("subject") or "").strip()
                priority = (row.get("priority") or "").strip().lower()
                if row.get("language") != "en" or priority not in TO_ZENDESK or not body:
                    continue  # other languages, and the cut last row of a file
                key = f"{subject}\n{body}".lower()
                if key in seen:
                    continue
                seen.add(key)
                team.append(TeamTicket(subject or body[:60], body, priority, (row.get("queue") or "").strip(),
                                       (row.get("type") or "").strip()))
                if limit is not None and len(team) >= limit:
                    return team
    return team


_GENERATED = {  # priority -> (subject, body) templates; {thing} and {n} filled in
    "high": [("{thing} is down for everyone", "Since this morning nobody on our team of {n} can use {thing}. "
              "We are losing orders every minute, please fix this now."),
             ("Payments failing on {thing}", "Every card payment through {thing} fails with an error. "
              "Customers cannot pay; this costs us money right now."),
             ("Security: suspicious logins on {thing}", "We see {n} logins from unknown countries on {thing}. "
              "Please lock the accounts and tell us what happened.")],
    "medium": [("{thing} is slow", "Pages in {thing} take {n} seconds to load since the update. "
                "Annoying but we can work. Can you look into it?"),
               ("Export from {thing} misses columns", "The CSV export of {thing} lacks two columns we use "
                "for reporting this month. Could you check?")],
    "low": [("How do I rename a project in {thing}?", "Hi, where can I change a project's name in {thing}? "
             "No rush. Thanks!"),
            ("Feature idea for {thing}", "It would be nice if {thing} had a dark mode. Just an idea, thanks "
             "for the great product.")],
}
_THINGS = ("the dashboard", "checkout", "the mobile app", "the API", "single sign-on", "the invoice page",
           "the reporting module", "email notifications")
_QUEUES = {"high": ("Technical Support", "Billing and Payments"), "medium": ("Product Support", "IT Support"),
           "low": ("Customer Service", "Product Support")}


def generated_team(n: int, seed: int = 7) -> list[TeamTicket]:
    """`n` small tickets from templates (for tests when the synthetic folder is absent)."""
    rng = random.Random(seed)
    team = []
    for i in range(n):
        priority = rng.choices(("high", "medium", "low"), weights=(4, 4, 2))[0]
        subject, body = rng.choice(_GENERATED[priority])
        fill = {"thing": rng.choice(_THINGS), "n": rng.randint(2, 400)}
        queue = rng.choice(_QUEUES[priority])
        kind = "Incident" if priority == "high" else rng.choice(("Request", "Problem", "Change"))
        team.append(TeamTicket(subject.format(**fill), f"{body.format(**fill)} (ref {i})", priority, queue, kind))
    return team


def team(limit: int | None = None, folder: str | Path = SYNTHETIC_DIR) -> list[TeamTicket]:
    """The synthetic team when its folder is there, else a generated one of `limit` (default 300)."""
    try:
        return synthetic_team(folder, limit)
    except FileNotFoundError:
        return generated_team(limit or 300)


def load_history(zd: ZendeskSandbox, tickets: Sequence[TeamTicket], *, now: float, days: int = 180,
                 bot_share: float = 0.5, correction_share: float = 0.35, csat_share: float = 0.4,
                 urgent_share: float = 0.2, open_share: float = 0.03, suggest_share: float = 0.0,
                 seed: int = 11) -> list[int]:
    """Seed `tickets` as the team's solved history, created over the `days` before `now` in a seeded
    random order (so a time split is a fair split). Per ticket, in its audits:

    - the requester opens it (subject + description, no priority);
    - with probability `bot_share` the bot sets a priority first (and a triage tag); in
      `correction_share` of those it was wrong and an agent changes it (a correction), else the agent
      leaves it (the bot was right);
    - otherwise an agent sets the priority; with probability `suggest_share` (0 by default, so the
      bench's figures stay those of its docs) the bot first left a suggest-mode note (priority and
      group, wrong in `correction_share` of them, with its tags: worker/suggestions.py), which the agent
      then accepts or rejects; an agent sets group (from the type), type, the queue's tag and status solved;
    - `csat_share` of the solved tickets carry a satisfaction rating (good / bad, more often bad
      when urgent), the others `unoffered`; `open_share` stay open (history pull leaves them out).

    Returns the ticket ids, oldest first."""
    rng = random.Random(seed)
    suggest_rng = random.Random(seed + 1)  # its own stream: the other choices stay those of suggest_share 0
    order = list(range(len(tickets)))
    rng.shuffle(order)
    for name, email in AGENTS:
        zd.add_user(name, email, role="agent")
    requesters = [(f"Customer {k}", f"customer{k}@example.org") for k in range(50)]
    start = now - days * DAY
    step = (days * DAY - DAY) / max(len(tickets), 1)
    ids = []
    for rank, k in enumerate(order):
        t = tickets[k]
        created = int(start + rank * step + rng.uniform(0, step / 2))
        name, email = rng.choice(requesters)
        ticket = zd.add_ticket(t.subject, t.body, requester=email, requester_name=name, created_at=created)
        tid = int(ticket["id"])
        ids.append(tid)
        if rng.random() < open_share:
            continue
        agent = zd.add_user(*rng.choice(AGENTS), role="agent")["id"]
        final = TO_ZENDESK[t.priority]
        if final == "high" and rng.random() < urgent_share:
            final = "urgent"
        changes: list[tuple[int, int, dict[str, Any]]] = []
        tags: list[str] = []
        if rng.random() < bot_share:
            wrong = rng.random() < correction_share
            guess = rng.choice([p for p in ("low", "normal", "high", "urgent") if p != final]) if wrong else final
            tags = [f"triage_priority_{guess}"]
            changes.append((zd.bot_user_id, min(created + 30, int(now) - 180), {"priority": guess, "tags": tags}))
        elif suggest_share and suggest_rng.random() < suggest_share:
            wrong = suggest_rng.random() < correction_share
            others = [p for p in ("low", "normal", "high", "urgent") if p != final]
            guess = suggest_rng.choice(others) if wrong else final
            groups = sorted(set(GROUPS.values()))
            group = t.group if t.group and suggest_rng.random() >= correction_share else suggest_rng.choice(groups)
            suggested = (("priority", guess), ("group", group))
            tags = list(suggestions.tags("triage_", suggested))
            note = "\n".join(["Triage (automatic)", *suggestions.note_lines(suggested)])
            changes.append((zd.bot_user_id, min(created + 30, int(now) - 180), {"tags": tags, NOTE: note}))
        solved: dict[str, Any] = {"priority": final, "status": "solved"}
        if t.group:
            solved["group_id"] = zd.add_group(t.group)["id"]
        if t.queue_tag:
            solved["tags"] = [*tags, t.queue_tag]
        if t.type.lower() in TYPES:
            solved["type"] = TYPES[t.type.lower()]
        changes.append((agent, min(created + int(rng.uniform(600, 3 * DAY)), int(now) - 120), solved))
        _apply(zd, tid, changes)
        if rng.random() < csat_share:
            good = rng.random() < {"urgent": 0.35, "high": 0.5, "normal": 0.7, "low": 0.85}[final]
            _rate(zd, tid, "good" if good else "bad", created + 4 * DAY)
        else:
            _rate(zd, tid, "unoffered", None)
    return ids


def _apply(zd: ZendeskSandbox, ticket_id: int, changes: list[tuple[int, int, dict[str, Any]]]) -> None:
    """Record each (author, time, fields) as one audit of field changes, as Zendesk would."""
    with zd._lock:
        ticket = zd._ticket(ticket_id)
        for author, at, fields in changes:
            ts = zd._touch(ticket, at)
            audit = zd._audit(ticket, author, [], ts)
            audit["via"] = zd._via("api" if author == zd.bot_user_id else "web")
            for name, value in fields.items():
                if name == NOTE:
                    zd._add_comment(ticket, audit, value, author, False, "api", ts)
                elif ticket.get(name) != value:
                    zd._change(ticket, audit, name, value)


def _rate(zd: ZendeskSandbox, ticket_id: int, score: str, at: float | None) -> None:
    with zd._lock:
        ticket = zd._ticket(ticket_id)
        rating: dict[str, Any] = {"score": score}
        if at is not None:
            rating.update(id=ticket_id + 9_000_000, comment="", created_at=_iso(at))
        ticket["satisfaction_rating"] = rating


def _iso(ts: float) -> str:
    from connectors.zendesk.sandbox import _iso as iso

    return iso(ts)
