"""A team's past in the Jira sandbox: issues created over months with the priority agents chose, the
request type and issue type (from the set's type, as the Zendesk groups are; the queue as a label),
and changelogs in which the bot set a priority first and an agent changed it. Built from the same
team as the Zendesk sandbox's (connectors/zendesk/sandbox_history.py: the synthetic ticket set at run
time, never committed).

    with JiraSandbox() as jira:
        load_history(jira, team(500), now=time.time())   # then JQL "project = SUP" serves it
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from connectors.jira.sandbox import JiraSandbox
from connectors.zendesk.sandbox_history import AGENTS, DAY, TeamTicket

TO_JIRA = {"high": "High", "medium": "Medium", "low": "Low"}
# the set's type -> (request type, its issue type)
REQUEST_TYPES = {"incident": ("Report an incident", "Incident"), "problem": ("Report a system problem", "Problem"),
                 "request": ("Get IT help", "Service request"), "change": ("Request a change", "Change")}
PROJECT = "SUP"


def load_history(jira: JiraSandbox, tickets: Sequence[TeamTicket], *, now: float, days: int = 180,
                 bot_share: float = 0.5, correction_share: float = 0.35, urgent_share: float = 0.2,
                 seed: int = 11) -> list[str]:
    """Seed `tickets` as issues of the service desk project SUP, created over the `days` before `now`
    in a seeded random order; returns their keys, oldest first. (The sandbox's changelog entries carry
    the time they were seeded: only `created` orders the history.)"""
    rng = random.Random(seed)
    order = list(range(len(tickets)))
    rng.shuffle(order)
    for name, email in AGENTS:
        jira.add_user(name, email)
    for request_type, issue_type in REQUEST_TYPES.values():
        jira.add_request_type(PROJECT, request_type, issue_type)
    step = (days * DAY - DAY) / max(len(tickets), 1)
    keys = []
    for rank, k in enumerate(order):
        t = tickets[k]
        final = TO_JIRA[t.priority]
        if final == "High" and rng.random() < urgent_share:
            final = "Highest"
        key = jira.add_issue(PROJECT, t.subject, t.body, reporter=f"customer{rng.randrange(50)}@example.org",
                             request_type=REQUEST_TYPES.get(t.type.lower(), ("Get IT help",))[0], priority="Medium",
                             labels=["queue-" + "-".join(t.queue.lower().split())] if t.queue else (),
                             created_at=now - days * DAY + rank * step)
        keys.append(key)
        agent = rng.choice(AGENTS)[1]
        if rng.random() < bot_share:
            wrong = rng.random() < correction_share
            guess = rng.choice([p for p in ("Lowest", "Low", "Medium", "High", "Highest") if p != final]) \
                if wrong else final
            if guess != "Medium":
                jira.edit_issue(key, by=jira.email, priority=guess)
            if guess != final:
                jira.edit_issue(key, by=agent, priority=final)
        elif final != "Medium":
            jira.edit_issue(key, by=agent, priority=final)
    return keys
