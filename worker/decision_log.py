"""The decision log: one entry per triage decision, in a capped Redis stream.

An entry says what the bot decided and did: when, the source, the ticket (id and link), both
heads' labels and scores, why the model abstained, the rules that fired, the actions written,
the model version, the time from receipt to write-back, and the ticket's routing fields (tags,
channel, organization, requester domain, priority...) so that a rules dry run can replay it.
Ticket text is customer data: it is kept only when TRIAGE_DECISION_LOG_TEXT=1.

Beside the stream (`triage:decisions`, trimmed to TRIAGE_DECISION_LOG_MAX entries and
TRIAGE_DECISION_LOG_DAYS days):
- hourly counters (`triage:decisions:hour:YYYYMMDDHH`, a hash: labels, abstentions, statuses,
  sources, languages, latency sums) that the console's charts and the drift monitor read without
  walking the stream;
- per ticket, what the bot last set (`triage:decided:SOURCE:ID`): when a later revision shows
  that an agent changed it (priority, group, assignee, a removed tag), an entry goes to the
  overrides stream (`triage:overrides`), naming the decision it overrode (its event key and time);
- per ticket, the suggestions (suggest mode) not yet settled (`triage:suggested:SOURCE:ID`, a hash:
  field -> [value suggested, the ticket's value then]): when a later revision shows that an agent set
  the field, the suggestion counts as accepted or rejected (hour counters `sg:FIELD:OUTCOME`, metric
  triage_suggestion_outcomes). An assignee suggested by e-mail, and a group on Jira, are left to
  `triage history pull` (events carry the assignee's id, and no Jira group field); a field a rule sets
  itself withdraws its suggestion.

Everything of one record goes to Redis in one command (a script: it costs the worker less CPU than
a pipeline of a command per counter, docs/performance.md, "Hot path devices"). A Redis error is logged (a warning,
without ticket data) and counted, never raised: the write-back it describes is already done.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from worker.decision import HeadScore, Scores, TriageDecision
from worker.events import TicketEvent
from worker.store import PREFIX
from worker.suggestions import outcome

STREAM = f"{PREFIX}:decisions"
OVERRIDES = f"{PREFIX}:overrides"
HOURLY = f"{PREFIX}:decisions:hour:"
LAST = f"{PREFIX}:decided:"
SUGGESTED = f"{PREFIX}:suggested:"
SETTLED_LIVE = ("priority", "group", "assignee")  # suggestions a later revision can settle
LOGGED_STATUSES = ("written", "nothing_to_write", "recovered")
TRIM_EVERY = 500  # records between two trims by age (XTRIM MINID)

log = logging.getLogger("triage.decisions")

# -- language: a cheap guess from function words and scripts (for the monitor's "new language") ------

_SCRIPTS = (("ja", re.compile(r"[\u3040-\u30ff]")), ("zh", re.compile(r"[\u4e00-\u9fff]")),
            ("ko", re.compile(r"[\uac00-\ud7af]")), ("ru", re.compile(r"[\u0400-\u04ff]")),
            ("ar", re.compile(r"[\u0600-\u06ff]")), ("he", re.compile(r"[\u0590-\u05ff]")),
            ("el", re.compile(r"[\u0370-\u03ff]")), ("th", re.compile(r"[\u0e00-\u0e7f]")),
            ("hi", re.compile(r"[\u0900-\u097f]")))
_WORDS = {
    "en": "the and is are was to of in it you my this that not have with for please can",
    "fr": "le la les est et des une un pas je vous mon ne que pour avec sur merci bonjour",
    "de": "der die das und ist nicht ich sie ein eine mit für auf bitte danke mein wir",
    "es": "el la los las es y que no por una un con para mi gracias hola está pero",
    "pt": "o a os as é e que não por uma um com para meu obrigado olá está mas",
    "it": "il lo la gli le è e che non per una un con mio grazie ciao sono ma",
    "nl": "de het een en is niet ik u mijn met voor op dank graag van dat",
}
_WORDSETS = {lang: frozenset(words.split()) for lang, words in _WORDS.items()}
_TOKEN = re.compile(r"[^\W\d_]+")


def guess_language(text: str) -> str:
    """An ISO 639-1 code, or "und" when the text says too little. Reads the first 400 characters."""
    head = text[:400]
    if not head.strip():
        return "und"
    for lang, pattern in _SCRIPTS:
        if len(pattern.findall(head)) >= 3:
            return lang
    words = [w.lower() for w in _TOKEN.findall(head)]
    if len(words) < 3:
        return "und"
    best, hits = "und", 1
    for lang, stop in _WORDSETS.items():
        n = sum(1 for w in words if w in stop)
        if n > hits:
            best, hits = lang, n
    return best


# -- entries ------------------------------------------------------------------------------------------


def abstain_reason(scores: Scores) -> str:
    """Why the model abstained: none | empty_text | sentiment | urgency | both (low confidence)."""
    s, u = scores.sentiment.abstained, scores.urgency.abstained
    if s and u and scores.sentiment.confidence == 0 and scores.urgency.confidence == 0:
        return "empty_text"
    return "both" if s and u else "sentiment" if s else "urgency" if u else "none"


def _head(h: HeadScore) -> dict[str, Any]:
    return {"label": h.label, "confidence": round(h.confidence, 4), "abstained": h.abstained,
            "probabilities": {k: round(v, 4) for k, v in h.probabilities.items()}}


def _actions(decision: TriageDecision) -> dict[str, Any]:
    a = decision.actions
    out: dict[str, Any] = {}
    for name in ("add_tags", "remove_tags", "priority", "group", "assignee", "request_type", "notify_slack"):
        value = getattr(a, name)
        if value:
            out[name] = list(value) if isinstance(value, tuple) else value
    if a.note:
        out["note"] = True
    if a.jira_fields:
        out["jira_fields"] = dict(a.jira_fields)
    if a.suggested:  # suggest mode: in the note, not set
        out["suggested"] = dict(a.suggested)
    return out


@dataclass(frozen=True)
class LoggedDecision:
    """One entry of the decision log, read back."""

    id: str  # the stream entry id (its first part is the time in milliseconds)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(int(self.id.split("-")[0]) / 1000, UTC)

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    @property
    def key(self) -> str:
        """The event key (source:ticket:revision) of the decided revision."""
        return f"{self.data.get('source')}:{self.data.get('ticket_id')}:{self.data.get('revision')}"

    @property
    def abstained(self) -> bool:
        return self.data.get("abstain_reason", "none") != "none"

    def label(self, head: str) -> str:
        return str(self.data.get(head, {}).get("label", ""))

    def matches(self, source: str = "", label: str = "", rule: str = "", abstained: bool | None = None) -> bool:
        if source and self.data.get("source") != source:
            return False
        if label and label not in (self.label("sentiment"), self.label("urgency")):
            return False
        if rule and rule not in self.data.get("rules", ()):
            return False
        return abstained is None or self.abstained == abstained

    def event(self) -> TicketEvent:
        """The ticket as the rules saw it (text only when it was kept), for a dry run."""
        ev = self.data.get("event", {})
        domain = ev.get("requester_domain", "")
        return TicketEvent(source=self.data["source"], ticket_id=self.data["ticket_id"],
                           revision=self.data.get("revision", "1"), subject=self.data.get("subject", ""),
                           text=self.data.get("text", ""), requester_email=f"someone@{domain}" if domain else "",
                           organization=ev.get("organization", ""), channel=ev.get("channel", ""),
                           tags=tuple(ev.get("tags", ())), priority=ev.get("priority", ""),
                           group=ev.get("group", ""), assignee=ev.get("assignee", ""),
                           priority_set_by_human=bool(ev.get("priority_set_by_human")),
                           assignee_set_by_human=bool(ev.get("assignee_set_by_human")),
                           extra=dict(ev.get("extra", {})))

    def scores(self) -> Scores:
        heads = {h: HeadScore(d["label"], dict(d.get("probabilities", {})), float(d.get("confidence", 0.0)),
                              bool(d.get("abstained"))) for h in ("sentiment", "urgency")
                 for d in [self.data.get(h, {"label": "unsure"})]}
        group = self.data.get("group")
        return Scores(heads["sentiment"], heads["urgency"], self.data.get("model_version", ""),
                      group=HeadScore(group["label"], dict(group.get("probabilities", {})),
                                      float(group.get("confidence", 0.0)), bool(group.get("abstained")))
                      if group else None)


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(raw: tuple[Any, Any]) -> LoggedDecision:
    entry_id, fields = raw
    body = (fields or {}).get(b"v") or (fields or {}).get("v") or "{}"
    return LoggedDecision(_decode(entry_id), json.loads(body))


def hour_key(at: datetime) -> str:
    return HOURLY + at.astimezone(UTC).strftime("%Y%m%d%H")


_EXTRA_KEPT = ("project", "issue_type", "request_type", "status", "delivery")


class DecisionLog:
    """Records decisions (the DecisionSink port) and reads them back for the console and monitor.

    `links`: source -> a function giving an event's ticket URL. `observer`: called with each
    entry's data after it is recorded (the metrics). `clock`: seconds since the epoch."""

    def __init__(self, redis: Redis, max_entries: int = 100_000, retention_days: int = 30, keep_text: bool = False,
                 links: Mapping[str, Callable[[TicketEvent], str]] | None = None,
                 observer: Callable[[dict[str, Any]], None] | None = None,
                 failure_observer: Callable[[TicketEvent, str], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.redis = redis
        self.max_entries = max_entries
        self.retention_s = retention_days * 86400
        self.keep_text = keep_text
        self.links = dict(links or {})
        self.observer = observer
        self.failure_observer = failure_observer
        self.clock = clock
        self.errors = 0  # records lost to a Redis error (also a metric)
        self._since_trim = TRIM_EVERY  # trim by age on the first record
        self._record = redis.register_script(_RECORD)

    # -- the port ------------------------------------------------------------------------------------

    def decided(self, event: TicketEvent, status: str, decision: TriageDecision | None) -> None:
        """A revision's outcome (TriageService calls it). Decisions are logged; duplicates only counted."""
        if decision is None or status not in LOGGED_STATUSES:
            if self.observer is not None:
                self.observer({"source": event.source, "status": status, "counted_only": True})
            return
        self.record(event, status, decision)

    def failed(self, event: TicketEvent, error: BaseException) -> None:
        """A write-back that raised (the job's retry will try again): counted, not logged."""
        if self.failure_observer is not None:
            self.failure_observer(event, type(error).__name__)

    # -- writing -------------------------------------------------------------------------------------

    def build(self, event: TicketEvent, status: str, decision: TriageDecision, now: float,
              received_at: float | None) -> dict[str, Any]:
        s = decision.scores
        link = self.links.get(event.source)
        data: dict[str, Any] = {
            "source": event.source, "ticket_id": event.ticket_id, "revision": event.revision,
            "link": link(event) if link is not None else "", "status": status,
            "sentiment": _head(s.sentiment), "urgency": _head(s.urgency), "abstain_reason": abstain_reason(s),
            "rules": list(decision.matched_rules), "actions": _actions(decision),
            "written": status == "written", "model_version": s.model_version,
            "latency_ms": round((now - received_at) * 1000, 1) if received_at else None,
            "language": guess_language(f"{event.subject}\n{event.text}"),
            "event": {"channel": event.channel, "organization": event.organization,
                      "requester_domain": event.requester_domain, "tags": list(event.tags),
                      "priority": event.priority, "group": event.group, "assignee": event.assignee,
                      "priority_set_by_human": event.priority_set_by_human,
                      "assignee_set_by_human": event.assignee_set_by_human,
                      "extra": {k: v for k, v in event.extra.items() if k in _EXTRA_KEPT}},
        }
        if s.group is not None:  # the routing head's answer: a dry run of predicted_group rules replays it
            data["group"] = _head(s.group)
        if self.keep_text:
            data["subject"], data["text"] = event.subject, event.text
        return data

    def record(self, event: TicketEvent, status: str, decision: TriageDecision, *, now: float | None = None,
               received_at: float | None = None) -> str | None:
        """Append one decision (and its counters; an override when the ticket shows one); the entry id.
        `now`: the decision's time (a replay gives it; ids then follow it). `received_at`: when the
        ticket arrived, else the current RQ job's creation time."""
        replay = now is not None
        at = self.clock() if now is None else now
        if received_at is None:
            received_at = _job_created_at()
        data = self.build(event, status, decision, at, received_at)
        a = decision.actions
        last_key = f"{LAST}{event.source}:{event.ticket_id}"
        hour = hour_key(datetime.fromtimestamp(at, UTC))
        counters = [f"s:{data['sentiment']['label']}", f"u:{data['urgency']['label']}", f"st:{status}",
                    f"src:{event.source}", f"lang:{data['language']}", f"ab:{data['abstain_reason']}"]
        counters += [f"r:{r}" for r in decision.matched_rules]
        last = ""
        if status == "written":  # what the bot set now; what a later agent change is compared with
            last = json.dumps({"key": event.key, "at": at, "priority": a.priority, "group": a.group,
                               "assignee": a.assignee, "tags": list(a.add_tags)})
        self._since_trim += 1
        trim = ""
        if self._since_trim >= TRIM_EVERY:
            self._since_trim = 0
            trim = f"{int((at - self.retention_s) * 1000)}"
        latency = "" if data["latency_ms"] is None else str(data["latency_ms"])
        opened = open_suggestions(event, decision) if status == "written" else {}
        suggested_key = f"{SUGGESTED}{event.source}:{event.ticket_id}"
        try:
            entry, prev, pending = self._record(keys=[STREAM, hour, last_key, OVERRIDES, suggested_key], args=[
                f"{int(at * 1000)}-*" if replay else "*", json.dumps(data, separators=(",", ":"), ensure_ascii=False),
                self.max_entries, self.retention_s + 86400, latency, last, self.retention_s, trim, len(opened),
                *(x for name, value in opened.items() for x in (name, value)), *counters])
            entry_id = _decode(entry)
            if prev:
                self._check_override(event, json.loads(prev), data, at, replay)
            if pending:
                self._settle(event, suggested_key, _pairs(pending), set(opened), hour)
        except RedisError as e:
            self.errors += 1
            why = "Redis unreachable" if isinstance(e, (ConnectionError, TimeoutError)) else "Redis refused it"
            log.warning("decision of %s ticket %s not logged: %s (%s)", event.source, event.ticket_id, why,
                        type(e).__name__)
            data["log_error"] = True
            entry_id = None
        if self.observer is not None:
            self.observer(data)
        return entry_id

    def _check_override(self, event: TicketEvent, prev: dict[str, Any], data: dict[str, Any], at: float,
                        replay: bool) -> None:
        changed = overridden_fields(event, prev)
        if not changed:
            return
        entry = {"source": event.source, "ticket_id": event.ticket_id, "revision": event.revision,
                 "link": data["link"], "decision_key": prev.get("key", ""), "decision_at": prev.get("at"),
                 "fields": changed, "by": event.changed_by}
        self.redis.xadd(OVERRIDES, {"v": json.dumps(entry, separators=(",", ":"))},
                        id=f"{int(at * 1000)}-*" if replay else "*", maxlen=self.max_entries, approximate=True)
        if not data["written"]:  # reported once (a decision written now replaced it already)
            self.redis.delete(f"{LAST}{event.source}:{event.ticket_id}")
        hour = hour_key(datetime.fromtimestamp(at, UTC))
        self.redis.hincrby(hour, "overrides", 1)
        if self.observer is not None:
            self.observer({"source": event.source, "override": sorted(changed)})

    def _settle(self, event: TicketEvent, key: str, pending: Mapping[str, str], renewed: set[str],
                hour: str) -> None:
        settled = settled_suggestions(event, {k: json.loads(v) for k, v in pending.items()})
        if not settled:
            return
        pipe = self.redis.pipeline(transaction=False)
        gone = [name for name in settled if name not in renewed]
        if gone:
            pipe.hdel(key, *gone)
        for name, result in settled.items():
            pipe.hincrby(hour, f"sg:{name}:{result}", 1)
        pipe.execute()
        if self.observer is not None:
            self.observer({"source": event.source, "suggestion": settled})

    # -- reading -------------------------------------------------------------------------------------

    def recent(self, count: int = 50, *, before: str = "+", source: str = "", label: str = "", rule: str = "",
               abstained: bool | None = None, scan: int = 5000) -> list[LoggedDecision]:
        """The newest decisions first that match the filters, looking at most `scan` entries back."""
        out: list[LoggedDecision] = []
        seen, page, cursor = 0, min(max(count * 4, 100), 1000), before
        # Cheap tests on the raw JSON first: most entries of a narrow filter are never decoded.
        dump = lambda x: json.dumps(x, ensure_ascii=False)  # noqa: E731 - as entries are written
        needles = [n.encode() for n in (source and f'"source":{dump(source)}', label and f'"label":{dump(label)}',
                                        rule and dump(rule)) if n]
        while len(out) < count and seen < scan:
            raw = self.redis.xrevrange(STREAM, max=cursor, min="-", count=page)
            if not raw:
                break
            for item in raw:
                body = (item[1] or {}).get(b"v", b"")
                if needles and isinstance(body, bytes) and not all(n in body for n in needles):
                    continue
                entry = _entry(item)
                if entry.matches(source, label, rule, abstained):
                    out.append(entry)
                    if len(out) == count:
                        break
            seen += len(raw)
            if len(raw) < page:
                break
            cursor = "(" + _decode(raw[-1][0])
        return out

    def get(self, entry_id: str) -> LoggedDecision | None:
        raw = self.redis.xrange(STREAM, min=entry_id, max=entry_id)
        return _entry(raw[0]) if raw else None

    def since(self, start: datetime, page: int = 1000) -> Iterator[LoggedDecision]:
        """Oldest first, from `start`."""
        cursor = f"{int(start.timestamp() * 1000)}-0"
        while True:
            raw: list[Any] = self.redis.xrange(STREAM, min=cursor, max="+", count=page) or []
            yield from (_entry(r) for r in raw)
            if len(raw) < page:
                return
            cursor = "(" + _decode(raw[-1][0])

    def overrides(self, count: int = 100) -> list[LoggedDecision]:
        return [_entry(r) for r in self.redis.xrevrange(OVERRIDES, count=count) or []]

    def overridden_keys(self, count: int = 1000) -> set[str]:
        """The event keys of decisions an agent later changed (for the feed's mark)."""
        return {str(o.get("decision_key")) for o in self.overrides(count)}

    def count(self) -> int:
        return int(self.redis.xlen(STREAM))

    def hourly(self, end: datetime, hours: int) -> list[tuple[datetime, dict[str, float]]]:
        """The counters of the `hours` whole hours ending with the one holding `end`, oldest first."""
        top = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        starts = [top - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for s in starts:
            pipe.hgetall(hour_key(s))
        return [(s, {_decode(k): float(v) for k, v in (raw or {}).items()}) for s, raw in zip(starts, pipe.execute())]


def overridden_fields(event: TicketEvent, prev: Mapping[str, Any]) -> dict[str, list[str]]:
    """What an agent changed of what the bot set on this ticket: field -> [bot's value, now]."""
    changed: dict[str, list[str]] = {}
    if prev.get("priority") and event.priority_set_by_human and event.priority:
        changed["priority"] = [prev["priority"], event.priority]
    if prev.get("assignee") and event.assignee_set_by_human and event.assignee != prev["assignee"]:
        changed["assignee"] = [prev["assignee"], event.assignee]
    if prev.get("group") and event.group and event.group.lower() != str(prev["group"]).lower():
        changed["group"] = [prev["group"], event.group]
    if event.tags:  # a payload without tags says nothing about them
        removed = [t for t in prev.get("tags", ()) if t not in event.tags]
        if removed:
            changed["tags"] = [",".join(removed), ""]
    return changed


def open_suggestions(event: TicketEvent, decision: TriageDecision) -> dict[str, str]:
    """What a written decision leaves to settle: field -> JSON [value suggested, the ticket's value now],
    or "" for a field the decision sets itself (its earlier suggestion is withdrawn)."""
    a = decision.actions
    out = {name: "" for name in SETTLED_LIVE if getattr(a, name)}
    for name, value in a.suggested:
        # a Jira event carries no group (the suggestion goes to a custom field): the history pull reads those
        unreadable = (name == "assignee" and "@" in value) or (name == "group" and event.source == "jira")
        if name in SETTLED_LIVE and not unreadable:
            out[name] = json.dumps([value, getattr(event, name)])
    return out


def settled_suggestions(event: TicketEvent, pending: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The suggestions an agent has settled since they were made: field -> accepted | rejected. A field
    still at its value of then (or a priority / assignee the bot set) is still open."""
    human = {"priority": event.priority_set_by_human, "assignee": event.assignee_set_by_human}
    out = {}
    for name, (value, then) in pending.items():
        now = str(getattr(event, name, "") or "")
        if now and now.lower() != str(then).lower() and human.get(name, True):
            out[name] = outcome(value, now)
    return out


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    """HGETALL's flat [field, value, ...] reply (from a script) as a dict."""
    items = [_decode(x) for x in flat]
    return dict(zip(items[::2], items[1::2]))


def _job_created_at() -> float | None:
    """When the current RQ job was created: the ticket's receipt (a retry keeps it)."""
    try:
        from rq.job import get_current_job

        job = get_current_job()
    except Exception:  # noqa: BLE001 - outside a worker there is no job
        return None
    created = getattr(job, "created_at", None) if job is not None else None
    if created is None:
        return None
    return (created if created.tzinfo else created.replace(tzinfo=UTC)).timestamp()


def summarise(hours: Sequence[tuple[datetime, dict[str, float]]]) -> dict[str, float]:
    """The counters of several hours added up."""
    total: dict[str, float] = {}
    for _, counts in hours:
        for k, v in counts.items():
            total[k] = total.get(k, 0.0) + v
    return total


# One decision (DecisionLog.record): the ticket's last decision read, the entry added, its hour's
# counters, what the bot set, and now and then the streams trimmed by age.
# KEYS[1]: the stream; KEYS[2]: the hour's counters; KEYS[3]: the ticket's last decision; KEYS[4]: overrides;
# KEYS[5]: the ticket's open suggestions
# ARGV: entry id ('*' or 'MS-*'), entry JSON, max entries, the hour's TTL, latency ms or '', the last
# decision's JSON or '' (kept as is), its TTL (the suggestions' too), the trim's MINID or '' (no trim), the
# number N of suggestion fields, N pairs (field, JSON to open it or '' to withdraw it), then the counters to
# add 1 to
# Returns {entry id, the ticket's last decision before this one or nil, its open suggestions before this one}.
_RECORD = """
local prev = redis.call('GET', KEYS[3])
local pending = redis.call('HGETALL', KEYS[5])
local n, opened = tonumber(ARGV[9]), false
for i = 0, n - 1 do
  local name, value = ARGV[10 + 2 * i], ARGV[11 + 2 * i]
  if value == '' then redis.call('HDEL', KEYS[5], name)
  else redis.call('HSET', KEYS[5], name, value); opened = true end
end
if opened then redis.call('EXPIRE', KEYS[5], ARGV[7]) end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], ARGV[1], 'v', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'n', 1)
for i = 10 + 2 * n, #ARGV do redis.call('HINCRBY', KEYS[2], ARGV[i], 1) end
if ARGV[5] ~= '' then
  redis.call('HINCRBYFLOAT', KEYS[2], 'lat_ms', ARGV[5])
  redis.call('HINCRBY', KEYS[2], 'lat_n', 1)
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
if ARGV[6] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[7]) end
if ARGV[8] ~= '' then
  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[8])
  redis.call('XTRIM', KEYS[4], 'MINID', ARGV[8])
end
return {id, prev, pending}
"""
