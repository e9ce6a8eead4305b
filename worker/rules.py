"""Routing rules: what admins write to turn scores into helpdesk actions. Pure: no I/O.

`parse_rules(text)` validates a YAML rules file and returns a `RuleSet`; every mistake
raises `RulesError` naming the 1-based line and what is wrong. `RuleSet.decide(event,
scores, now)` runs on the worker's hot path: regexes and keyword patterns are compiled
at parse time, so deciding is a loop over precompiled conditions.

File format (see deploy/rules.example.yaml for a commented example)::

    version: 1                  # optional; must be 1
    tag_prefix: triage_         # prefix of the default tags (default "triage_")
    default_tags: true          # add {prefix}sentiment_{label}, {prefix}urgency_{label} and, when the
                                # language is known, {prefix}language_{code} (e.g. triage_language_de)
    business_hours:             # needed only by the `business_hours` condition
      timezone: Europe/Paris    # an IANA zone name
      days: [mon, tue, wed, thu, fri]   # default mon-fri; full names accepted too
      start: "09:00"            # HH:MM local time, inclusive
      end: "18:00"              # HH:MM, exclusive; "24:00" = midnight; end < start = overnight
    learned_routing: suggest    # suggest (default) | apply: whether `group: predicted` sets the group
    rules:                      # evaluated in order
      - name: angry-and-urgent  # required, unique
        when:                   # optional: all conditions must hold; a list means "any of"
          source: zendesk       # zendesk | jira | slack | sandbox
          sentiment: frustrated # frustrated | neutral | satisfied | unsure (head abstained)
          urgency: [high]       # high | medium | low | unsure (head abstained)
          confidence_at_least: 0.6   # Scores.confidence (min of both heads) >= this
          confidence_below: 0.9      # Scores.confidence < this
          abstained: false      # Scores.abstained (either head abstained)
          language: [de, fr]    # the text's language, ISO 639-1 codes (und: too short to tell);
                                # the model abstains on languages it does not read: route them
          keywords: [outage, "data loss"]  # any of: whole words/phrases, case-insensitive,
                                           # searched in subject + text
          regex: "refund|charge ?back"     # Python regex (or a list: any of), case-insensitive,
                                           # searched in subject + text
          channel: [email, web]
          tags_present: [vip]   # all must be on the ticket
          tags_absent: [spam]   # none may be on the ticket
          organization: [Acme Inc]
          requester_domain: [acme.com]
          reporter_domain: [acme.com]  # the same condition, in Jira's words
          business_hours: false # true = now is inside business_hours, false = outside
          project: [SUP]        # Jira only: project key; likewise issue_type
          request_type: [Bug]   # and the JSM request type (names)
          predicted_group: [Billing]  # the model's routing head predicts one of these groups (names,
                                      # case-insensitive); false without a routing head or when it
                                      # abstained (below its own confidence floor)
          predicted_group_confidence_at_least: 0.6  # and with at least this confidence (alone:
                                                    # any group, that confidently)
        then:                   # required (may be {}); merged with Actions.merge, in order
          add_tags: [escalated] # a string or a list
          priority: urgent      # low | normal | high | urgent
          group: "Tier 2"
          assignee: "12345"
          note: true            # internal note with the scores and the words behind them
          note_text: "Escalated by rule"   # extra note text (implies note: true)
          notify_slack: "#support-alerts"  # a string or a list
          override_human: false # set priority/assignee even when an agent chose them
          request_type: "Report an incident"  # Jira only: set the JSM request type (name or id)
          jira_fields:          # Jira only: set fields, e.g. the field a JSM queue filters on
            customfield_10050: "Tier 2"       # field id or name -> value
          suggest: false        # true: suggest mode, see below; or a list of the fields to suggest
                                # (priority, group, assignee, request_type, jira_fields), the rest set
          stop: true            # matching this rule ends evaluation

Suggest mode (`suggest: true`): the priority, group, assignee, request_type and jira_fields the rule
would set are not set (`suggest: [group]`: only those listed; the rest is set); the internal note
(forced on) carries them as "Suggested (not applied): ...", with a machine-readable "Suggestion
code:" line, and each gets a tag {prefix}suggested_{field}_{value} (worker/suggestions.py). Tags,
note_text and notify_slack still apply. Merging: a later rule's suggestion for a field replaces an
earlier one; a value a rule sets beats a suggestion for that field, whichever comes first (adding a
suggest rule never changes what other rules write). What would not be set is not suggested either
(the ticket has it already; an agent chose the priority or assignee and the rule lacks
override_human), nor what was suggested already (its tag is on the ticket). When an agent later sets
a value, `triage history pull` records the suggestion as accepted or rejected (worker/history.py).

Learned routing: `group: predicted` (or, Jira, `request_type: predicted`: a routing head learnt from
Jira history predicts request types) routes to the group the model's routing head predicts, when it has
one and did not abstain; else the rule sets no group. It is a suggestion unless the top-level
`learned_routing: apply` is set and the rule does not suggest that field. A group literally named
"predicted" must be given by id. The note shows the prediction whenever the model has a routing head
("group (learned): Billing 72%").

Jira-only conditions (project, issue_type, request_type) and actions (request_type,
jira_fields) in a rule whose `source` excludes jira are errors: the rule could never apply.

Text comparisons (channel, organization, domains, Jira fields, tags) ignore case. Tags are
normalised for Zendesk: lowercase, whitespace runs become "_". Quote times ("09:00") and
ids ("12345") to be safe; unquoted ones are read as written.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from worker.decision import PRIORITIES, Actions, HeadScore, Scores
from worker.errors import RulesError
from worker.events import SOURCES, TicketEvent

SENTIMENTS = ("frustrated", "neutral", "satisfied", "unsure")
URGENCIES = ("high", "medium", "low", "unsure")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

TOP_KEYS = ("version", "tag_prefix", "default_tags", "business_hours", "learned_routing", "rules")
LEARNED_ROUTING = ("suggest", "apply")  # what `group: predicted` does: suggest it (default), or set it
SUGGESTABLE = frozenset(("priority", "group", "assignee", "request_type", "jira_fields"))
PREDICTED = "predicted"  # `group: predicted`, `request_type: predicted`: the routing head's group
HOURS_KEYS = ("timezone", "days", "start", "end")
RULE_KEYS = ("name", "when", "then")
WHEN_KEYS = ("source", "sentiment", "urgency", "confidence_at_least", "confidence_below",
             "abstained", "keywords", "regex", "channel", "tags_present", "tags_absent",
             "organization", "requester_domain", "business_hours", "project", "issue_type",
             "request_type", "reporter_domain", "language", "predicted_group",
             "predicted_group_confidence_at_least")
THEN_KEYS = ("add_tags", "priority", "group", "assignee", "note", "note_text", "notify_slack",
             "override_human", "stop", "request_type", "jira_fields", "suggest")
JIRA_ONLY_WHEN = ("project", "issue_type", "request_type")
JIRA_ONLY_THEN = ("request_type", "jira_fields")
# Fields with an action of their own (or that triage must not touch): not settable via jira_fields.
JIRA_RESERVED_FIELDS = ("priority", "assignee", "labels", "comment", "description", "summary",
                        "reporter", "status", "issuetype", "project", "resolution")
_JIRA_PROJECT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{1,254}")
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")  # ISO 639-1 (639-3 where there is no 2-letter code)

_T = "tag:yaml.org,2002:"
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


def normalize_tag(tag: str) -> str:
    """A Zendesk-safe tag: lowercase, whitespace runs become underscores."""
    return "_".join(tag.lower().split())


def _label(head: HeadScore) -> str:
    return "unsure" if head.abstained else head.label


def _language(event: TicketEvent, scores: Scores) -> str:
    """The detected language of the text, else the one the helpdesk gave the ticket."""
    return (scores.language or getattr(event, "language", "") or "").lower()


@dataclass(frozen=True)
class BusinessHours:
    tz: zoneinfo.ZoneInfo
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes since local midnight, inclusive
    end: int  # minutes since local midnight, exclusive (1440 = midnight); < start: overnight

    def contains(self, now: datetime) -> bool:
        """Is `now` inside business hours? A naive `now` is taken as UTC."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        local = now.astimezone(self.tz)
        minute, day = local.hour * 60 + local.minute, local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        if minute >= self.start:  # overnight shift: the evening part
            return day in self.days
        return minute < self.end and (day - 1) % 7 in self.days  # the morning after


class _Facts:
    """What conditions look at, for one decision; derived values computed once, on demand."""

    __slots__ = ("event", "scores", "_now", "_hours", "_text", "_tags", "_inside")

    def __init__(self, event: TicketEvent, scores: Scores, now: datetime,
                 hours: BusinessHours | None):
        self.event, self.scores, self._now, self._hours = event, scores, now, hours
        self._text: str | None = None
        self._tags: frozenset[str] | None = None
        self._inside: bool | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = f"{self.event.subject}\n{self.event.text}"
        return self._text

    @property
    def tags(self) -> frozenset[str]:
        if self._tags is None:
            self._tags = frozenset(normalize_tag(t) for t in self.event.tags)
        return self._tags

    @property
    def inside_hours(self) -> bool:
        if self._inside is None:
            self._inside = self._hours is not None and self._hours.contains(self._now)
        return self._inside


Condition = Callable[[_Facts], bool]


@dataclass(frozen=True)
class Rule:
    name: str
    line: int
    conditions: tuple[Condition, ...] = ()
    actions: Actions = Actions()
    stop: bool = False
    suggest: frozenset[str] = frozenset()  # suggest mode: the fields it suggests (in actions.suggested)
    predicted: tuple[str, ...] = ()  # fields that take the routing head's group (group, request_type)
    routing: tuple[tuple[str, int], ...] = ()  # what it asks of the routing head: (group name or "", line)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    tag_prefix: str = "triage_"
    default_tags: bool = True
    business_hours: BusinessHours | None = None
    path: str = field(default="", compare=False)
    learned_routing: str = "suggest"  # suggest | apply: what `group: predicted` does
    def decide(self, event: TicketEvent, scores: Scores,
               now: datetime) -> tuple[tuple[str, ...], Actions]:
        """The names of the rules that matched, in order, and their merged actions."""
        facts = _Facts(event, scores, now, self.business_hours)
        actions = Actions()
        if self.default_tags:
            p = self.tag_prefix
            tags = [normalize_tag(f"{p}sentiment_{_label(scores.sentiment)}"),
                    normalize_tag(f"{p}urgency_{_label(scores.urgency)}")]
            language = _language(event, scores)
            if language and language != "und":
                tags.append(normalize_tag(f"{p}language_{language}"))
            actions = Actions(add_tags=tuple(tags))
        matched: list[str] = []
        for rule in self.rules:
            if all(cond(facts) for cond in rule.conditions):
                matched.append(rule.name)
                actions = actions.merge(self._predicted(rule, scores) if rule.predicted else rule.actions)
                if rule.stop:
                    break
        return tuple(matched), actions

    def _predicted(self, rule: Rule, scores: Scores) -> Actions:
        """A rule's actions with the routing head's group in its `predicted` fields: suggested unless
        learned_routing is apply and the rule is not in suggest mode; nothing without a confident group."""
        group = learned_group(scores)
        if not group:
            return rule.actions
        values: dict[str, Any] = {name: group for name in rule.predicted}
        suggested = {n: v for n, v in values.items() if n in rule.suggest or self.learned_routing != "apply"}
        applied = {n: v for n, v in values.items() if n not in suggested}
        return replace(rule.actions, suggested=rule.actions.suggested + tuple(suggested.items()), **applied)


def routing_warnings(rules: RuleSet, labels: Iterable[str] | None) -> list[str]:
    """What the rules ask of the routing head that a model cannot give (`labels`: its groups, None
    without a routing head): predicted_group names it does not know, or any use without a head. Rules
    stay valid (the next model may have the head); `triage rules test` prints these."""
    where = f"{rules.path}:" if rules.path else "line "
    uses = [(r, name, line) for r in rules.rules for name, line in r.routing]
    if labels is None:  # one line a rule
        first: dict[str, int] = {}
        for r, _, line in uses:
            first.setdefault(r.name, line)
        return [f"{where}{line}: rule {name!r} uses the routing head, which this model lacks: it never "
                f"matches or routes (`triage learn` fits one from the team's history)" for name, line in first.items()]
    known = {label.lower(): label for label in labels}
    return [f"{where}{line}: rule {r.name!r}: predicted_group {name!r} is not a group the routing head "
            f"knows{_hint(name, known.values())}; it knows: {', '.join(sorted(known.values()))}"
            for r, name, line in uses if name and name.lower() not in known]


def learned_group(scores: Scores) -> str:
    """The routing head's group, "" when the model has no routing head or it abstained."""
    g = scores.group
    return g.label if g is not None and not g.abstained and g.label != "unsure" else ""


def parse_rules(text: str, path: str = "") -> RuleSet:
    """Validate a rules file; raises RulesError naming the line and what is wrong."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = ": ".join(str(s) for s in (e.context, e.problem) if s)
        raise _error(f"YAML syntax error: {what}", mark.line + 1 if mark else None, path) from None
    except yaml.YAMLError as e:
        raise _error(f"YAML syntax error: {e}", None, path) from None
    if root is None:
        raise _error("the rules file is empty: expected 'version: 1' and a 'rules:' list",
                     None, path)
    return _Parser(path).ruleset(root)


def _error(message: str, line: int | None, path: str) -> RulesError:
    if path and not line:  # RulesError shows the path only alongside a line
        message = f"{path}: {message}"
    return RulesError(message, line, path)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    kind = {_T + "null": "an empty value", _T + "bool": "true/false", _T + "int": "a number",
            _T + "float": "a number"}.get(node.tag, "a string")
    return kind if kind == "an empty value" else f"{kind} ({node.value!r})"


class _Parser:
    def __init__(self, path: str):
        self.path = path
        self.ctor = SafeConstructor()

    def err(self, node: Node, message: str) -> RulesError:
        return _error(message, _line(node), self.path)

    # -- shapes ------------------------------------------------------------------------

    def mapping(self, node: Node, what: str, valid: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict[str, tuple[Node, Node]]:
        if isinstance(node, ScalarNode) and node.tag == _T + "null" and not required:
            return {}
        if not isinstance(node, MappingNode):
            raise self.err(node, f"{what} must be a mapping (key: value), got {_describe(node)}")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, ScalarNode) else ""
            if key in out:
                raise self.err(key_node, f"duplicate key {key!r} in {what} "
                                         f"(first on line {_line(out[key][0])})")
            if key not in valid:
                raise self.err(key_node, f"unknown key {key or _describe(key_node)!r} in {what}"
                                         f"{_hint(key, valid)}; valid keys: {', '.join(valid)}")
            out[key] = (key_node, value_node)
        for key in required:
            if key not in out:
                raise self.err(node, f"{what} is missing {key!r}")
        return out

    def items(self, node: Node, what: str) -> list[Node]:
        """A scalar or a non-empty list of scalars, as a list of nodes."""
        if isinstance(node, ScalarNode):
            return [node]
        if not isinstance(node, SequenceNode):
            raise self.err(node, f"{what} must be a string or a list, got {_describe(node)}")
        if not node.value:
            raise self.err(node, f"{what} is an empty list")
        return list(node.value)

    # -- scalars -----------------------------------------------------------------------

    def string(self, node: Node, what: str, empty_ok: bool = False) -> str:
        if not isinstance(node, ScalarNode) or node.tag == _T + "null":
            raise self.err(node, f"{what} must be a string, got {_describe(node)}")
        value = str(node.value).strip()  # raw text: `assignee: 12345` stays "12345"
        if not value and not empty_ok:
            raise self.err(node, f"{what} must not be empty")
        return value

    def strings(self, node: Node, what: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.string(n, what) for n in self.items(node, what)))

    def boolean(self, node: Node, what: str) -> bool:
        if not isinstance(node, ScalarNode) or node.tag != _T + "bool":
            raise self.err(node, f"{what} must be true or false, got {_describe(node)}")
        return bool(self.ctor.construct_yaml_bool(node))

    def number(self, node: Node, what: str) -> float:
        if not isinstance(node, ScalarNode) or node.tag not in (_T + "int", _T + "float"):
            raise self.err(node, f"{what} must be a number, got {_describe(node)}")
        construct = self.ctor.construct_yaml_int if node.tag == _T + "int" else \
            self.ctor.construct_yaml_float
        return float(construct(node))

    def choice(self, node: Node, what: str, allowed: tuple[str, ...]) -> str:
        value = self.string(node, what).lower()
        if value not in allowed:
            raise self.err(node, f"unknown {what} {value!r}{_hint(value, allowed)}; "
                                 f"allowed: {', '.join(allowed)}")
        return value

    def choices(self, node: Node, what: str, allowed: tuple[str, ...]) -> frozenset[str]:
        return frozenset(self.choice(item, what, allowed) for item in self.items(node, what))

    def lowered(self, node: Node, what: str) -> frozenset[str]:
        return frozenset(s.lower() for s in self.strings(node, what))

    def tags(self, node: Node, what: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(normalize_tag(s) for s in self.strings(node, what)))

    def confidence(self, node: Node, what: str) -> float:
        value = self.number(node, what)
        if not 0.0 <= value <= 1.0:
            raise self.err(node, f"{what} must be between 0 and 1, got {value:g}")
        return value

    def clock(self, node: Node, what: str, end: bool) -> int:
        text = self.string(node, what)  # the raw text: unquoted 18:00 is a YAML 1.1 number
        m = _TIME.fullmatch(text)
        hour, minute = (int(m[1]), int(m[2])) if m else (99, 99)
        if not (hour < 24 and minute < 60 or end and (hour, minute) == (24, 0)):
            raise self.err(node, f"{what} must be a time HH:MM like \"09:00\", got {text!r}")
        return hour * 60 + minute

    # -- sections ----------------------------------------------------------------------

    def ruleset(self, root: Node) -> RuleSet:
        top = self.mapping(root, "the rules file", TOP_KEYS)
        if "version" in top:
            node = top["version"][1]
            if node.tag != _T + "int" or node.value != "1":
                raise self.err(node, f"unsupported version {node.value!r}: only version 1 exists")
        prefix = "triage_"
        if "tag_prefix" in top:
            self.string(top["tag_prefix"][1], "tag_prefix", empty_ok=True)  # type check
            prefix = str(top["tag_prefix"][1].value)  # unstripped: "My Team " -> my_team_sentiment_...
        default_tags = self.boolean(top["default_tags"][1], "default_tags") \
            if "default_tags" in top else True
        hours = self.business_hours(top["business_hours"][1]) if "business_hours" in top else None
        learned = self.choice(top["learned_routing"][1], "learned_routing", LEARNED_ROUTING) \
            if "learned_routing" in top else "suggest"
        rules: list[Rule] = []
        if "rules" in top:
            node = top["rules"][1]
            if isinstance(node, ScalarNode) and node.tag == _T + "null":
                node = SequenceNode(_T + "seq", [], node.start_mark, node.end_mark)
            if not isinstance(node, SequenceNode):
                raise self.err(node, f"rules must be a list of rules (- name: ...), "
                                     f"got {_describe(node)}")
            seen: dict[str, int] = {}
            for i, rule_node in enumerate(node.value):
                rule = self.rule(rule_node, i + 1, hours)
                if rule.name in seen:
                    raise _error(f"duplicate rule name {rule.name!r} (first on line "
                                 f"{seen[rule.name]})", rule.line, self.path)
                seen[rule.name] = rule.line
                rules.append(rule)
        return RuleSet(tuple(rules), prefix, default_tags, hours, self.path, learned)

    def business_hours(self, node: Node) -> BusinessHours:
        keys = self.mapping(node, "business_hours", HOURS_KEYS, required=("timezone", "start", "end"))
        tz_node = keys["timezone"][1]
        name = self.string(tz_node, "business_hours timezone")
        try:
            tz = zoneinfo.ZoneInfo(name)
        except (KeyError, ValueError, OSError):
            raise self.err(tz_node, f"unknown time zone {name!r}"
                                    f"{_hint(name, zoneinfo.available_timezones())}; "
                                    f"use an IANA name like 'Europe/Paris' or 'UTC'") from None
        days = frozenset(range(5))
        if "days" in keys:
            days_set = set()
            for item in self.items(keys["days"][1], "business_hours days"):
                day = self.string(item, "business_hours days").lower()
                day = day[:3] if day in _FULL_DAYS else day
                if day not in DAYS:
                    raise self.err(item, f"unknown day {day!r}{_hint(day, DAYS + _FULL_DAYS)}; "
                                         f"allowed: {', '.join(DAYS)}")
                days_set.add(DAYS.index(day))
            days = frozenset(days_set)
        start = self.clock(keys["start"][1], "business_hours start", end=False)
        end = self.clock(keys["end"][1], "business_hours end", end=True)
        if start == end % 1440:
            raise self.err(keys["end"][1], "business_hours start and end are the same time")
        return BusinessHours(tz, days, start, end)

    def rule(self, node: Node, number: int, hours: BusinessHours | None) -> Rule:
        keys = self.mapping(node, f"rule #{number}", RULE_KEYS, required=("name", "then"))
        name = self.string(keys["name"][1], f"rule #{number} name")
        what = f"rule {name!r}"
        conditions: list[Condition] = []
        routing: list[tuple[str, int]] = []
        if "when" in keys:
            when = self.mapping(keys["when"][1], f"'when' of {what}", WHEN_KEYS)
            for key, (_, value_node) in when.items():
                if key in ("predicted_group", "predicted_group_confidence_at_least"):
                    if key == "predicted_group" or "predicted_group" not in when:  # one condition for both
                        groups, floor = when.get("predicted_group"), when.get("predicted_group_confidence_at_least")
                        conditions.append(self.predicted_group(groups[1] if groups else None,
                                                               floor[1] if floor else None, what))
                        routing += [(str(n.value).strip(), _line(n)) for n in self.items(groups[1], what)] \
                            if groups else [("", _line(value_node))]
                    continue
                conditions.append(self.condition(key, value_node, hours, f"{key} (in {what})"))
            if "confidence_at_least" in when and "confidence_below" in when:
                low = self.number(when["confidence_at_least"][1], "confidence_at_least")
                high = self.number(when["confidence_below"][1], "confidence_below")
                if low >= high:
                    raise self.err(when["confidence_below"][0],
                                   f"{what} can never match: confidence_at_least {low:g} "
                                   f"is not below confidence_below {high:g}")
        actions, stop, suggest, predicted = self.then(keys["then"][1], what)
        self.jira_only(keys, what)
        if predicted:
            routing.append(("", _line(keys["then"][1])))
        return Rule(name, _line(keys["name"][1]), tuple(conditions), actions, stop, suggest, predicted,
                    tuple(routing))

    def jira_only(self, keys: dict[str, tuple[Node, Node]], what: str) -> None:
        """A rule that can only match (or act on) Jira issues but whose source excludes jira."""
        when = self.mapping(keys["when"][1], f"'when' of {what}", WHEN_KEYS) if "when" in keys else {}
        if "source" not in when or "jira" in self.choices(when["source"][1], "source", SOURCES):
            return
        then = self.mapping(keys["then"][1], f"'then' of {what}", THEN_KEYS)
        for key in JIRA_ONLY_WHEN:
            if key in when:
                raise self.err(when[key][0], f"{what} can never match: {key} exists only on Jira issues "
                                             f"but its source excludes jira")
        for key in JIRA_ONLY_THEN:
            if key in then:
                raise self.err(then[key][0], f"{what}: {key} applies only to Jira issues but the rule's "
                                             f"source excludes jira")

    def condition(self, key: str, node: Node, hours: BusinessHours | None,
                  what: str) -> Condition:
        if key == "source":
            sources = self.choices(node, "source", SOURCES)
            return lambda f: f.event.source in sources
        if key == "sentiment":
            sentiments = self.choices(node, "sentiment", SENTIMENTS)
            return lambda f: _label(f.scores.sentiment) in sentiments
        if key == "urgency":
            urgencies = self.choices(node, "urgency", URGENCIES)
            return lambda f: _label(f.scores.urgency) in urgencies
        if key == "confidence_at_least":
            low = self.confidence(node, what)
            return lambda f: f.scores.confidence >= low
        if key == "confidence_below":
            high = self.confidence(node, what)
            return lambda f: f.scores.confidence < high
        if key == "abstained":
            abstained = self.boolean(node, what)
            return lambda f: f.scores.abstained == abstained
        if key == "language":
            codes = self.lowered(node, what)
            for item in self.items(node, what):
                if not _LANGUAGE_CODE.fullmatch(self.string(item, what).lower()):
                    raise self.err(item, f"{what}: {item.value!r} is not a language code; use ISO 639-1 "
                                         f"codes like en, de, fr (und: too short to tell)")
            return lambda f: _language(f.event, f.scores) in codes
        if key == "keywords":
            alternatives = [r"\s+".join(map(re.escape, w.split()))
                            for w in self.strings(node, what)]
            words = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
            return lambda f: words.search(f.text) is not None
        if key == "regex":
            patterns = tuple(self.regex(n, what) for n in self.items(node, what))
            return lambda f: any(p.search(f.text) for p in patterns)
        if key in ("tags_present", "tags_absent"):
            tags = frozenset(self.tags(node, what))
            if key == "tags_present":
                return lambda f: tags <= f.tags
            return lambda f: tags.isdisjoint(f.tags)
        if key == "business_hours":
            inside = self.boolean(node, what)
            if hours is None:
                raise self.err(node, f"{what} needs a top-level business_hours section "
                                     "(timezone, days, start, end)")
            return lambda f: f.inside_hours == inside
        if key in ("requester_domain", "reporter_domain"):
            domains = frozenset(d.lstrip("@") for d in self.lowered(node, what))
            return lambda f: f.event.requester_domain in domains
        values = self.lowered(node, what)
        if key == "project":
            for item in self.items(node, what):
                if not _JIRA_PROJECT_KEY.fullmatch(self.string(item, what)):
                    raise self.err(item, f"{what}: {item.value!r} is not a Jira project key (letters, "
                                         f"digits and _, starting with a letter, e.g. SUP)")
        if key == "channel":
            return lambda f: f.event.channel.lower() in values
        if key == "organization":
            return lambda f: f.event.organization.lower() in values
        # project, issue_type, request_type: connector-specific fields (Jira)
        return lambda f: f.event.extra.get(key, "").lower() in values

    def predicted_group(self, groups_node: Node | None, floor_node: Node | None, what: str) -> Condition:
        """The routing head predicts one of these groups (any group without predicted_group), at or
        above the floor when one is given; false without a routing head or when it abstained (below
        its own floor: a lower floor here cannot reach past it)."""
        groups = self.lowered(groups_node, f"predicted_group (in {what})") if groups_node is not None else None
        floor = self.confidence(floor_node, f"predicted_group_confidence_at_least (in {what})") \
            if floor_node is not None else 0.0

        def predicted(f: _Facts) -> bool:
            group = learned_group(f.scores)
            return bool(group) and f.scores.group is not None and f.scores.group.confidence >= floor and \
                (groups is None or group.lower() in groups)
        return predicted

    def regex(self, node: Node, what: str) -> re.Pattern[str]:
        pattern = self.string(node, what)
        try:
            return re.compile(pattern, re.IGNORECASE)
        except re.error as e:
            raise self.err(node, f"{what}: invalid regex {pattern!r}: {e.msg} "
                                 f"at position {e.pos}") from None

    def then(self, node: Node, what: str) -> tuple[Actions, bool, frozenset[str], tuple[str, ...]]:
        keys = self.mapping(node, f"'then' of {what}", THEN_KEYS)
        values: dict[str, Any] = {}
        predicted: list[str] = []
        for key, (_, value_node) in keys.items():
            label = f"{key} (in {what})"
            if key in ("group", "request_type") and isinstance(value_node, ScalarNode) and \
                    str(value_node.value).strip().lower() == PREDICTED:
                predicted.append(key)  # the routing head's group, resolved per ticket (RuleSet.decide)
            elif key == "suggest":
                values[key] = self.suggest(value_node, label)
            elif key in ("note", "override_human", "stop"):
                values[key] = self.boolean(value_node, label)
            elif key == "add_tags":
                values[key] = self.tags(value_node, label)
            elif key == "notify_slack":
                values[key] = self.strings(value_node, label)
            elif key == "priority":
                values[key] = self.choice(value_node, "priority", PRIORITIES)
            elif key == "jira_fields":
                values[key] = self.jira_fields(value_node, label)
            else:  # group, assignee, note_text
                values[key] = self.string(value_node, label)
        if values.get("note_text"):
            if values.get("note") is False:
                raise self.err(keys["note"][1], f"{what} has note_text but note: false")
            values["note"] = True
        stop = values.pop("stop", False)
        suggest: frozenset[str] = values.pop("suggest", frozenset())
        actions = Actions(**values)
        if suggest:
            actions = actions.as_suggestions(suggest)
            if not actions.suggested and not suggest & set(predicted):
                raise self.err(keys["suggest"][0], f"{what} has suggest but sets nothing it could suggest: "
                                                   "give the suggested fields (priority, group, assignee, "
                                                   "request_type, jira_fields)")
        return actions, stop, suggest, tuple(predicted)

    def suggest(self, node: Node, what: str) -> frozenset[str]:
        """true: every field the rule sets is suggested; false: none; a list: those fields."""
        if isinstance(node, ScalarNode) and node.tag == _T + "bool":
            return SUGGESTABLE if self.boolean(node, what) else frozenset()
        if not isinstance(node, SequenceNode):
            raise self.err(node, f"{what} must be true, false or a list of fields "
                                 f"({', '.join(sorted(SUGGESTABLE))}), got {_describe(node)}")
        return self.choices(node, "field to suggest", tuple(sorted(SUGGESTABLE)))

    def jira_fields(self, node: Node, what: str) -> tuple[tuple[str, str], ...]:
        """A mapping of Jira field id (customfield_10050) or name -> one value."""
        if not isinstance(node, MappingNode) or not node.value:
            raise self.err(node, f"{what} must be a mapping of field id or name to value, e.g. "
                                 f"{{customfield_10050: \"Tier 2\"}}, got {_describe(node)}")
        out: dict[str, str] = {}
        for key_node, value_node in node.value:
            field_name = self.string(key_node, f"a field name in {what}")
            if field_name.lower() in JIRA_RESERVED_FIELDS:
                raise self.err(key_node, f"{what}: {field_name!r} cannot be set through jira_fields; use "
                                         f"the priority, assignee or add_tags actions (triage never changes "
                                         f"summary, description, status, reporter, project, issue type)")
            if field_name.lower() in {k.lower() for k in out}:
                raise self.err(key_node, f"{what}: field {field_name!r} is given twice")
            if isinstance(value_node, (MappingNode, SequenceNode)):
                raise self.err(value_node, f"{what}: the value of {field_name!r} must be one string or "
                                           f"number, got {_describe(value_node)}")
            out[field_name] = self.string(value_node, f"the value of {field_name!r} in {what}")
        return tuple(out.items())
