"""What a Slack message with buttons was about, kept in Redis so the buttons can act on it later.

A button's value is limited to 2,000 characters, a ticket's text is not: the message carries a short
id, Redis keeps the triage (text, scores, event, what the rules would do) for `ttl_s`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from worker.decision import Actions, Scores, TriageDecision
from worker.errors import ContextUnavailable
from worker.events import TicketEvent
from worker.store import PREFIX


@dataclass(frozen=True)
class Triaged:
    kind: str  # text | ticket | message | alert
    item: str  # what feedback is about: the event key, or text:<hash> for a free text
    source: str  # zendesk | slack | text | ...
    text: str  # what the model scored
    scores: dict[str, Any]  # Scores.to_dict()
    title: str = ""  # the heading shown (mrkdwn)
    link: str = ""  # the ticket or message
    event: dict[str, Any] | None = None  # the ticket event, for Apply
    matched_rules: list[str] = field(default_factory=list)
    actions: dict[str, Any] = field(default_factory=dict)  # what the rules would do (Actions)

    @classmethod
    def of(cls, kind: str, item: str, source: str, text: str, decision: TriageDecision, *, title: str = "",
           link: str = "", event: TicketEvent | None = None) -> Triaged:
        return cls(kind, item, source, text, decision.scores.to_dict(), title, link,
                   asdict(event) if event is not None else None, list(decision.matched_rules),
                   asdict(decision.actions))

    @property
    def score(self) -> Scores:
        return Scores.from_dict(self.scores)

    @property
    def ticket_event(self) -> TicketEvent | None:
        return TicketEvent.from_dict(self.event) if self.event else None

    @property
    def decided(self) -> Actions:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in self.actions.items()}
        return Actions(**values)


class ContextStore:
    def __init__(self, redis: Redis, ttl_s: int = 30 * 24 * 3600):
        self.redis = redis
        self.ttl_s = ttl_s

    def put(self, t: Triaged) -> str:
        ctx_id = secrets.token_urlsafe(9)
        try:
            self.redis.set(f"{PREFIX}:slack:ctx:{ctx_id}", json.dumps(asdict(t), ensure_ascii=False), ex=self.ttl_s)
        except RedisError as e:
            raise ContextUnavailable(f"Redis unreachable ({type(e).__name__})") from None
        return ctx_id

    def get(self, ctx_id: str) -> Triaged | None:
        try:
            raw = self.redis.get(f"{PREFIX}:slack:ctx:{ctx_id}")
        except RedisError as e:
            raise ContextUnavailable(f"Redis unreachable ({type(e).__name__})") from None
        return Triaged(**json.loads(raw)) if raw else None
