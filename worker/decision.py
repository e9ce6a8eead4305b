"""What the model said about a ticket and what to do about it. Pure data, JSON-safe."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from worker.suggestions import note_lines

PRIORITIES = ("low", "normal", "high", "urgent")  # the helpdesk-neutral scale rules speak


@dataclass(frozen=True)
class HeadScore:
    label: str  # the decided label, or "unsure" when the head abstained
    probabilities: dict[str, float]
    confidence: float
    abstained: bool = False
    reason: str = ""  # why it abstained: confidence | language | empty ("" when it did not)
    best_guess: str = ""  # the model's label even when it abstained

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": dict(self.probabilities), "confidence": self.confidence,
                "abstained": self.abstained, "reason": self.reason, "best_guess": self.best_guess}


@dataclass(frozen=True)
class Scores:
    sentiment: HeadScore
    urgency: HeadScore
    model_version: str
    # word -> weight pushing the decided label, per head: explains the note
    top_words: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    decided_by: str = "model"  # model | llm: who decided the labels (worker/escalation.py)
    second_opinion: str = ""  # for the note: why the LLM decided, or why its answer was not used
    language: str = ""  # ISO 639-1 code of the text's language ("und": too short to tell; "": not detected)
    group: HeadScore | None = None  # the learned routing head's group, when the model has one

    @property
    def abstained(self) -> bool:
        return self.sentiment.abstained or self.urgency.abstained

    @property
    def confidence(self) -> float:
        return min(self.sentiment.confidence, self.urgency.confidence)

    def to_dict(self) -> dict[str, Any]:  # by hand: dataclasses.asdict is slow, and this runs per ticket
        return {"sentiment": self.sentiment.to_dict(), "urgency": self.urgency.to_dict(),
                "model_version": self.model_version,
                "top_words": {k: [(w, s) for w, s in v] for k, v in self.top_words.items()},
                "decided_by": self.decided_by, "second_opinion": self.second_opinion, "language": self.language,
                "group": self.group.to_dict() if self.group else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scores:
        return cls(HeadScore(**d["sentiment"]), HeadScore(**d["urgency"]), d["model_version"],
                   {k: [(w, float(s)) for w, s in v] for k, v in (d.get("top_words") or {}).items()},
                   decided_by=d.get("decided_by", "model"), second_opinion=d.get("second_opinion", ""),
                   language=d.get("language", ""), group=HeadScore(**d["group"]) if d.get("group") else None)

    @property
    def unreadable_language(self) -> bool:
        """The model abstained because it does not read the text's language."""
        return self.sentiment.reason == "language" or self.urgency.reason == "language"


@dataclass(frozen=True)
class Actions:
    """The write-back a decision asks for. Empty fields mean 'leave as is'."""

    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()  # our own stale tags, e.g. an earlier triage_sentiment_*
    priority: str = ""  # one of PRIORITIES
    group: str = ""
    assignee: str = ""
    note: bool = False  # add an internal note with the scores and the words behind them
    note_text: str = ""  # extra text for the note
    notify_slack: tuple[str, ...] = ()  # channel ids or names
    override_human: bool = False  # set priority/assignee even when an agent chose them
    # Jira only (other helpdesks ignore them):
    request_type: str = ""  # JSM request type, by name or id
    jira_fields: tuple[tuple[str, str], ...] = ()  # (field id or name, value): e.g. a queue/team field
    # Suggest mode: (field, value) the rules would set, written into the note instead of set
    # (worker/suggestions.py: priority, group, assignee, request_type, field:<Jira field>). Never written
    # to the ticket's fields: a writer that does not know about suggestions sets nothing.
    suggested: tuple[tuple[str, str], ...] = ()

    def sets(self, wanted: str, set_by_human: bool) -> bool:
        """Whether a wanted priority or assignee is written: a human's choice wins unless the rule says
        override_human. The one place this is decided (worker.triage.decide and the writebacks ask)."""
        return bool(wanted) and (self.override_human or not set_by_human)

    def applied(self, name: str) -> str:
        """The value these actions set for a suggestion's field ("" when they leave it)."""
        if name.startswith("field:"):
            wanted = name[6:].lower()
            return next((v for f, v in self.jira_fields if f.lower() == wanted), "")
        return str(getattr(self, name, "") or "")

    def as_suggestions(self, fields: Collection[str] = ("priority", "group", "assignee", "request_type",
                                                        "jira_fields")) -> Actions:
        """These actions in suggest mode: what they would set in `fields` becomes suggestions (tags, note,
        Slack and the other fields stay)."""
        names = [n for n in ("priority", "group", "assignee", "request_type") if n in fields and getattr(self, n)]
        moved = [(n, getattr(self, n)) for n in names]
        cleared: dict[str, Any] = dict.fromkeys(names, "")
        if "jira_fields" in fields:
            moved += [(f"field:{f}", v) for f, v in self.jira_fields]
            cleared["jira_fields"] = ()
        return replace(self, **cleared, suggested=self.suggested + tuple(moved))

    def merge(self, other: Actions) -> Actions:
        """Later rules add tags and notifications; a later explicit value wins. Suggestions: a later
        one for a field wins, and a value that is set beats a suggestion for its field, whichever rule
        came first (a suggest rule never takes away what another rule sets). The one place this is
        decided."""
        merged = self._merged(other)
        if not (self.suggested or other.suggested):
            return merged
        suggestions = {**dict(self.suggested), **dict(other.suggested)}
        return replace(merged, suggested=tuple((n, v) for n, v in suggestions.items() if not merged.applied(n)))

    def _merged(self, other: Actions) -> Actions:
        return replace(
            self,
            add_tags=tuple(dict.fromkeys(self.add_tags + other.add_tags)),
            remove_tags=tuple(dict.fromkeys(self.remove_tags + other.remove_tags)),
            priority=other.priority or self.priority,
            group=other.group or self.group,
            assignee=other.assignee or self.assignee,
            note=self.note or other.note,
            note_text="\n".join(t for t in (self.note_text, other.note_text) if t),
            notify_slack=tuple(dict.fromkeys(self.notify_slack + other.notify_slack)),
            override_human=self.override_human or other.override_human,
            request_type=other.request_type or self.request_type,
            jira_fields=tuple({**dict(self.jira_fields), **dict(other.jira_fields)}.items()),
        )

    @property
    def empty(self) -> bool:
        return self == Actions()


@dataclass(frozen=True)
class TriageDecision:
    event_key: str
    scores: Scores
    matched_rules: tuple[str, ...]
    actions: Actions

    def to_dict(self) -> dict[str, Any]:
        return {"event_key": self.event_key, "scores": self.scores.to_dict(), "decided_by": self.scores.decided_by,
                "language": self.scores.language,
                "matched_rules": list(self.matched_rules), "actions": asdict(self.actions)}


def note_body(scores: Scores, matched_rules: tuple[str, ...], extra: str = "",
              suggested: tuple[tuple[str, str], ...] = ()) -> str:
    """The internal note agents read: scores, the words behind them, the learned group, the rules that
    fired, what the rules suggest (suggest mode)."""
    lines = ["Triage (automatic)"]
    if scores.unreadable_language:
        guesses = ", ".join(f"{h} {getattr(scores, h).best_guess}" for h in ("sentiment", "urgency")
                            if getattr(scores, h).best_guess)
        lines.append(f"- not scored: the text is in a language the model does not read ({scores.language}); "
                     f"its guesses are unreliable{': ' + guesses if guesses else ''}")
    for head in ("sentiment", "urgency"):
        h: HeadScore = getattr(scores, head)
        probs = ", ".join(f"{k} {v:.0%}" for k, v in sorted(h.probabilities.items(), key=lambda kv: -kv[1]))
        lines.append(f"- {head}: {h.label} ({probs})")
        words = scores.top_words.get(head) or []
        if words:
            lines.append("  words behind it: " + ", ".join(w for w, _ in words[:5]))
    if scores.group is not None:
        lines.append(f"- {learned_group(scores.group)}")
    if matched_rules:
        lines.append("- rules: " + ", ".join(matched_rules))
    lines += note_lines(suggested)
    if extra:
        lines.append(extra)
    if scores.second_opinion:
        lines.append(scores.second_opinion)
    lines.append(f"model {scores.model_version}")
    return "\n".join(lines)


def learned_group(group: HeadScore) -> str:
    """The routing head's answer as the note shows it: "group (learned): Billing 72%"."""
    if group.abstained:
        guess = f" (best guess {group.best_guess} {group.confidence:.0%})" if group.best_guess else ""
        return f"group (learned): unsure{guess}"
    return f"group (learned): {group.label} {group.confidence:.0%}"
