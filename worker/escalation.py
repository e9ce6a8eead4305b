"""The LLM second opinion: the tickets the model is unsure of go to a larger LLM, within a budget.

What escalates (TRIAGE_LLM_ESCALATE): `abstained` (a head answered unsure), `language` (the model
cannot read the ticket's language: the language gate's `reason == "language"`, when the scores carry
it), `borderline` (P(high) within TRIAGE_LLM_URGENCY_BAND of the high threshold). TRIAGE_LLM_AUDIT_RATE
also asks about a random share of confident tickets, whose model decision stands (agreement counted).

The flow, never slower for the others and never worse than the model alone:

1. The job thread (`review`) finds an answer in the cache (a hash of the text, the LLM model and the
   prompt version; Redis, TTL) and decides with it at once. Else it records the escalation
   (`triage:llm:pending:<event key>`), hands the question to this process's pool of
   TRIAGE_LLM_CONCURRENCY threads, schedules a follow-up job at the deadline (the safety net) and
   raises Deferred: the ticket gives its lease back and the job goes on with its other tickets.
2. A pool thread checks the daily budget (one atomic Lua script, shared by all workers), asks the
   endpoint (429: waits its Retry-After when that fits the deadline), validates the answer against
   the schema, caches it, stores it as a label with provenance `llm`, and enqueues a follow-up job
   at once, for every ticket waiting on that text. On any failure it records why and enqueues the
   follow-up too: the model decides, the note says why the LLM did not.
3. The follow-up job scores the ticket again and `review` finds the answer (decided_by "llm") or
   the failure (the model's decision, the reason in the note). If the worker died with the question
   in flight, the job scheduled at the deadline finds neither and the model decides ("deadline").
   The store's lease writes each revision back once, whichever job comes first.

Redis keys (prefix triage:llm:): cache:<hash>, pending:<event key>, waiting:<hash> (the events
waiting on a text), inflight:<hash> (one call per text at a time), budget:<UTC date> (calls,
tokens), labels (a capped list of JSON answers for the learning loop; `llm_labels`, `export_labels`).
Ticket text is never logged; the labels list keeps the text the LLM read (redacted by default).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from redis import Redis
from redis.exceptions import RedisError

from model.textprep import ticket_text
from worker.decision import HeadScore, Scores
from worker.events import TicketEvent
from worker.pii import redact
from worker.ports import Deferred
from worker.settings import LLMSettings
from worker.store import PREFIX

log = logging.getLogger("triage.llm")

KEY = f"{PREFIX}:llm"
LABELS_KEY = f"{KEY}:labels"
PROMPT_VERSION = "triage-llm-1"
LLM_LABEL_WEIGHT = 0.5  # an LLM label counts half a public-data row (human-confirmed rows: 2.0)
SENTIMENTS = ("frustrated", "neutral", "satisfied")
URGENCIES = ("high", "medium", "low")
WHY = {"abstained": "the model abstained", "language": "the model cannot read this language",
       "borderline": "the urgency was borderline", "audit": "an audit sample"}
_DAY_S = 24 * 3600

SYSTEM_PROMPT = """You label customer support tickets for a helpdesk. Read the ticket and answer with \
one JSON object, nothing else, with these fields:
- "sentiment": how the customer feels: "frustrated" (angry, annoyed, disappointed, threatening to \
leave), "satisfied" (thankful, happy, praising) or "neutral" (factual, asking, neither).
- "urgency": how soon support must act: "high" when many users are blocked, a service is down, money \
or data is being lost, there is a security problem, or a deadline is today; "low" for questions, \
how-tos, wishes, feedback and thanks; "medium" for a real problem that affects one person or can wait \
a day.
- "confidence": your confidence in both labels, a number from 0 to 1.
- "language": the ISO 639-1 code of the ticket's language, e.g. "en", "fr", "de".
- "reason": one short line (at most 20 words, no customer data) saying why.
Sentiment and urgency are separate judgements: tone alone never makes a ticket urgent (an angry \
ticket about a logo colour is frustrated and low), and a calm, polite report of an outage is still \
high. Judge the ticket in whatever language it is written. Parts like [email], [phone] and [card] \
stand for removed personal data."""

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": list(SENTIMENTS)},
        "urgency": {"type": "string", "enum": list(URGENCIES)},
        "confidence": {"type": "number"},
        "language": {"type": "string"},
        "reason": {"type": "string"},
    },
    "required": ["sentiment", "urgency", "confidence", "language", "reason"],
    "additionalProperties": False,
}
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")


# -- the answer ------------------------------------------------------------------------------------

class AnswerError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # invalid_json | schema


@dataclass(frozen=True)
class Answer:
    sentiment: str
    urgency: str
    confidence: float
    language: str
    reason: str

    def to_json(self) -> str:
        return json.dumps({"sentiment": self.sentiment, "urgency": self.urgency, "confidence": self.confidence,
                           "language": self.language, "reason": self.reason})


def parse_answer(content: str | bytes) -> Answer:
    """The endpoint's content, checked against ANSWER_SCHEMA (all of it, JSON mode or not)."""
    try:
        data = json.loads(content)
    except (ValueError, TypeError):
        raise AnswerError("invalid_json", "the answer is not JSON") from None
    if not isinstance(data, dict):
        raise AnswerError("schema", "the answer is not a JSON object")
    wanted = set(ANSWER_SCHEMA["required"])
    if set(data) != wanted:
        raise AnswerError("schema", f"fields {sorted(data)}, expected {sorted(wanted)}")
    if data["sentiment"] not in SENTIMENTS:
        raise AnswerError("schema", "sentiment is not one of " + ", ".join(SENTIMENTS))
    if data["urgency"] not in URGENCIES:
        raise AnswerError("schema", "urgency is not one of " + ", ".join(URGENCIES))
    conf = data["confidence"]
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf <= 1:
        raise AnswerError("schema", "confidence is not a number from 0 to 1")
    lang = data["language"]
    if not isinstance(lang, str) or not _LANGUAGE.fullmatch(lang.strip().lower()):
        raise AnswerError("schema", "language is not an ISO 639 code")
    reason = data["reason"]
    if not isinstance(reason, str):
        raise AnswerError("schema", "reason is not a string")
    reason = " ".join(reason.split())[:200]
    return Answer(data["sentiment"], data["urgency"], round(float(conf), 4), lang.strip().lower(), reason)


# -- the request -----------------------------------------------------------------------------------

def token_bound(system: str, user: str, max_tokens: int) -> int:
    """An upper bound on a call's tokens, reserved from the budget before the call: a byte-level
    BPE token covers at least one byte; the chat template adds a few tokens per message."""
    return len(system.encode()) + len(user.encode()) + len(json.dumps(ANSWER_SCHEMA)) + 64 + max_tokens


# -- what escalates --------------------------------------------------------------------------------

def escalation_reason(scores: Scores, escalate: Sequence[str], band: float, high_threshold: float | None) -> str:
    """Why these scores go to the LLM ('' when they do not)."""
    if "language" in escalate and any(getattr(x, "reason", None) == "language" or
                                      getattr(x, "abstain_reason", None) == "language"
                                      for x in (scores, scores.sentiment, scores.urgency)):
        return "language"
    if "abstained" in escalate and scores.abstained:
        return "abstained"
    if "borderline" in escalate and high_threshold is not None:
        p = scores.urgency.probabilities.get("high")
        if p is not None and abs(p - high_threshold) <= band:
            return "borderline"
    return ""


# -- the ports it talks through --------------------------------------------------------------------

class Llm(Protocol):
    """connectors.llm.client.OpenAICompatible: raises LlmFailure(reason, retry_after=...)."""

    model: str

    def ask(self, system: str, user: str, schema: dict[str, Any], timeout: float) -> Any:
        """A reply with .content, .prompt_tokens, .completion_tokens."""
        ...


class FollowUps(Protocol):
    def now(self, event_jsons: Sequence[str]) -> None:
        """Queue a job for these events at once."""
        ...

    def at(self, when: float, event_json: str) -> None:
        """Queue a job for this event at `when` (epoch seconds)."""
        ...


class RqFollowUps:
    """Follow-up jobs on the triage queue, as the Enqueuer queues them (retries, timeouts, DLQ)."""

    def __init__(self, enqueuer: Any):
        self.enqueuer = enqueuer

    def _options(self, n: int) -> dict[str, Any]:
        from worker.queueing import FAILED_TTL_S

        return {"retry": self.enqueuer.retry, "failure_ttl": FAILED_TTL_S, "result_ttl": 3600,
                "description": f"triage: {n} ticket(s) after the LLM second opinion"}

    def now(self, event_jsons: Sequence[str]) -> None:
        from worker.queueing import JOB_FUNC, MAX_EVENTS_PER_JOB, queued_key

        queue = self.enqueuer.queue
        for start in range(0, len(event_jsons), MAX_EVENTS_PER_JOB):
            chunk = tuple(event_jsons[start:start + MAX_EVENTS_PER_JOB])
            with queue.connection.pipeline() as pipe:
                job = queue.enqueue_call(JOB_FUNC, args=chunk, timeout=self.enqueuer.job_timeout_s * len(chunk),
                                         pipeline=pipe, **self._options(len(chunk)))
                for raw in chunk:  # `triage demo` and job_of find the job that settles it
                    pipe.set(queued_key(TicketEvent.from_json(raw).key), job.id, xx=True, keepttl=True)
                pipe.execute()

    def at(self, when: float, event_json: str) -> None:
        from worker.queueing import JOB_FUNC

        self.enqueuer.queue.enqueue_at(datetime.fromtimestamp(when, UTC), JOB_FUNC, event_json,
                                       job_timeout=self.enqueuer.job_timeout_s, **self._options(1))


# -- counters --------------------------------------------------------------------------------------

class Counters:
    """What the second opinion did in this process (worker/metrics.py reads them when it exists):
    escalations by reason, outcomes (used, cached, fallback_<why>), calls, tokens, latency, budget
    refusals, audit agreement per head."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, float] = {}
        self.latencies: list[float] = []

    def add(self, name: str, n: float = 1) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def latency(self, seconds: float) -> None:
        with self._lock:
            self.latencies.append(seconds)
            del self.latencies[:-1000]

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.counts)


_hook: list[Callable[..., None] | None] = []


def _metric(kind: str, **labels: Any) -> None:
    """Forward to worker/metrics.py's llm_event (prometheus_client) when that module offers it."""
    if not _hook:
        try:
            _hook.append(getattr(importlib.import_module("worker.metrics"), "llm_event", None))
        except ImportError:
            _hook.append(None)
    if _hook[0] is not None:
        with contextlib.suppress(Exception):  # a metric never fails a ticket
            _hook[0](kind, **labels)


# -- the second opinion ----------------------------------------------------------------------------

# KEYS[1]: the day's budget hash (fields calls, tokens)
# ARGV[1]: calls a day (0: no limit)  ARGV[2]: tokens a day (0: no limit)
# ARGV[3]: the most tokens this call can use  ARGV[4]: the hash's time to live (s)
# Returns 1 and counts the call and its tokens when both fit the day's budget; else 0, counting nothing.
_RESERVE = """
local calls = tonumber(redis.call('HGET', KEYS[1], 'calls') or '0')
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
local max_calls, max_tokens, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if (max_calls > 0 and calls + 1 > max_calls) or (max_tokens > 0 and tokens + want > max_tokens) then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'calls', 1)
redis.call('HINCRBY', KEYS[1], 'tokens', want)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1]: the revision's escalation record  KEYS[2]: the events waiting on its text
# KEYS[3]: the text's in-flight lock
# ARGV[1]: the record (JSON)  ARGV[2]: the event (JSON)  ARGV[3]: record and list TTL (s)  ARGV[4]: lock TTL (ms)
# Returns 0: the revision is escalated already (nothing changed); 1: escalated now and the caller asks
# the LLM (it holds the lock); 2: escalated now, waiting on a question about the same text in flight.
_START = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then return 1 end
return 2
"""

# KEYS[1]: the events waiting on a text  KEYS[2]: the text's in-flight lock
# Returns the waiting events (JSON) and empties the list; drops the lock: the question is answered.
_TAKE_WAITING = """
local waiting = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2])
return waiting
"""


class Escalation:
    """worker.ports.SecondOpinion over an OpenAI-compatible LLM (see the module's docstring)."""

    def __init__(self, cfg: LLMSettings, redis: Redis, llm: Llm, follow_ups: FollowUps,
                 high_threshold: float | None = None, clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, sleep: Callable[[float], None] = time.sleep):
        self.cfg = cfg
        self.redis = redis
        self.llm = llm
        self.follow_ups = follow_ups
        self.high_threshold = cfg.high_threshold if cfg.high_threshold is not None else high_threshold
        self.clock, self.rand, self.sleep = clock, rand, sleep
        self.counters = Counters()
        self._pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="triage-llm")
        self._queued = 0  # questions handed to the pool and not finished
        self._lock = threading.Lock()
        self._reserve = redis.register_script(_RESERVE)
        self._start = redis.register_script(_START)
        self._take_waiting = redis.register_script(_TAKE_WAITING)
        self._record_ttl = int(max(cfg.deadline_s * 4, 3600))
        self._lock_ms = int((cfg.deadline_s + cfg.timeout_s) * 1000) + 1000

    # -- the job thread ----------------------------------------------------------------------------
    def review(self, event: TicketEvent, scores: Scores) -> Scores:
        why = escalation_reason(scores, self.cfg.escalate, self.cfg.urgency_band, self.high_threshold)
        if not why:
            if self.cfg.audit_rate and self.rand() < self.cfg.audit_rate:
                self._audit(event, scores)
            return scores
        try:
            return self._review(event, scores, why)
        except Deferred:
            raise
        except Exception as e:  # never worse than without it: the model decides
            log.warning("LLM second opinion skipped for %s: %s", event.key, type(e).__name__)
            return self._fallback(scores, why, "redis" if isinstance(e, RedisError) else "error")

    def _review(self, event: TicketEvent, scores: Scores, why: str) -> Scores:
        text = self._text(event)
        h = self.text_hash(text)
        cached, pending = self.redis.mget([f"{KEY}:cache:{h}", f"{KEY}:pending:{event.key}"])
        if cached:
            return self._use(scores, parse_answer(cached), why, cached=pending is None)
        now = self.clock()
        if pending:
            record = json.loads(pending)
            if record.get("failed"):
                return self._fallback(scores, why, record["failed"])
            if now < record["since"] + self.cfg.deadline_s:
                raise Deferred(f"{event.key} waits for the LLM")  # a duplicate delivery meanwhile
            return self._fallback(scores, why, "deadline")
        record_json = json.dumps({"since": now, "why": why})
        started = self._start(keys=[f"{KEY}:pending:{event.key}", f"{KEY}:waiting:{h}", f"{KEY}:inflight:{h}"],
                              args=[record_json, event.to_json(), self._record_ttl, self._lock_ms])
        if started == 0:  # another job escalated this revision a moment ago
            raise Deferred(f"{event.key} waits for the LLM")
        self.counters.add(f"escalations_{why}")
        _metric("escalation", reason=why)
        try:  # the safety net: decided at the deadline even if this process dies with the question
            self.follow_ups.at(now + self.cfg.deadline_s + 1, event.to_json())
        except RedisError:
            self._fail_waiting(h, "redis")
            return self._fallback(scores, why, "redis")
        if started == 1:
            self._submit(self._ask, text, h, now, why, event.key, scores)
        raise Deferred(f"{event.key} waits for the LLM")

    def known(self, event: TicketEvent, scores: Scores) -> Scores:
        """What the worker would decide for this text without asking anyone now (Slack's /triage, which
        answers in seconds): the cached answer when the text was escalated before (the labels the
        write-back used), else the model's, saying that the worker would ask. Counts nothing."""
        why = escalation_reason(scores, self.cfg.escalate, self.cfg.urgency_band, self.high_threshold)
        if not why:
            return scores
        try:
            cached = self.redis.get(f"{KEY}:cache:{self.text_hash(self._text(event))}")
            if cached:
                return self._answered(scores, parse_answer(cached), why, cached=True)
        except (RedisError, AnswerError):
            pass
        return replace(scores, second_opinion=f"- the worker asks the LLM second opinion on a ticket like this "
                                              f"({WHY.get(why, why)}); this is the model's answer")

    def _audit(self, event: TicketEvent, scores: Scores) -> None:
        with self._lock:
            if self._queued >= self.cfg.concurrency:  # audits never queue behind escalations
                return
        self.counters.add("escalations_audit")
        _metric("escalation", reason="audit")
        text = self._text(event)
        self._submit(self._ask_audit, text, self.text_hash(text), event.key, scores)

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._queued += 1

        def run() -> None:
            try:
                fn(*args)
            except Exception as e:  # a pool thread never dies silently
                log.warning("LLM second opinion failed: %s", type(e).__name__)
            finally:
                with self._lock:
                    self._queued -= 1

        self._pool.submit(run)

    # -- the pool threads --------------------------------------------------------------------------
    def _ask(self, text: str, h: str, since: float, why: str, item: str, scores: Scores) -> None:
        outcome = ""
        try:
            if self.redis.exists(f"{KEY}:cache:{h}"):  # answered while this question waited
                outcome = "cached"
            else:
                answer = self._call(text, since + self.cfg.deadline_s)
                self._store(h, text, answer, item, why, scores)
        except _Failed as f:
            outcome = f.reason
        except RedisError:
            outcome = "redis"
        if outcome and outcome != "cached":
            self._count_fallback(outcome)
            self._fail_waiting(h, outcome)
            return
        try:
            waiting = [w.decode() if isinstance(w, bytes) else w
                       for w in self._take_waiting(keys=[f"{KEY}:waiting:{h}", f"{KEY}:inflight:{h}"])]
            if waiting:
                self.follow_ups.now(waiting)
        except RedisError:  # the jobs scheduled at the deadline decide them, with the cached answer
            log.warning("LLM answer cached but its follow-up jobs not queued (Redis): they run at the deadline")

    def _ask_audit(self, text: str, h: str, item: str, scores: Scores) -> None:
        try:
            raw = self.redis.get(f"{KEY}:cache:{h}")
            answer = parse_answer(raw) if raw else self._call(text, self.clock() + self.cfg.timeout_s)
            if not raw:
                self._store(h, text, answer, item, "audit", scores)
        except _Failed as f:
            self.counters.add(f"audit_fallback_{f.reason}")
            return
        except RedisError:
            return
        for head in ("sentiment", "urgency"):
            agreed = getattr(scores, head).label == getattr(answer, head)
            self.counters.add(f"audit_{head}_{'agree' if agreed else 'disagree'}")
            _metric("audit", head=head, agreed=agreed)

    def _call(self, text: str, deadline_at: float) -> Answer:
        """One question within the deadline and the day's budget (reserved first, settled after)."""
        user = f"Ticket:\n{text}"
        want = token_bound(SYSTEM_PROMPT, user, self.cfg.max_tokens)
        if self.clock() >= deadline_at:
            raise _Failed("deadline")  # waited too long for a free slot of the pool
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")
        budget_key = f"{KEY}:budget:{day}"
        if not self._reserve(keys=[budget_key], args=[self.cfg.daily_calls, self.cfg.daily_tokens, want, 2 * _DAY_S]):
            self.counters.add("budget_refused")
            _metric("budget_refused")
            raise _Failed("budget")
        self.counters.add("calls")
        used, unknown = 0, False
        try:
            answer, used = ask_llm(self.llm, user, self.cfg.timeout_s, deadline_at, self.clock, self.sleep,
                                   self.counters)
            return answer
        except _Failed as f:
            used, unknown = f.tokens, f.reason == "timeout"  # a timed-out call may have been billed
            raise
        finally:
            self.counters.add("tokens", used)
            _metric("tokens", n=used)
            if not unknown:  # the reservation was an upper bound: give back what the call did not use
                with contextlib.suppress(RedisError):
                    self.redis.hincrby(budget_key, "tokens", min(used, want) - want)

    def _store(self, h: str, text: str, answer: Answer, item: str, why: str, scores: Scores) -> None:
        label = {"text": text, "sentiment": answer.sentiment, "urgency": answer.urgency,
                 "confidence": answer.confidence, "language": answer.language, "reason": answer.reason,
                 "provenance": "llm", "weight": LLM_LABEL_WEIGHT, "llm_model": self.cfg.model,
                 "prompt_version": PROMPT_VERSION, "item": item, "why": why,
                 "model_sentiment": scores.sentiment.label, "model_urgency": scores.urgency.label,
                 "model_version": scores.model_version, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{KEY}:cache:{h}", answer.to_json(), ex=self.cfg.cache_ttl_s)
            if self.cfg.labels_max:
                pipe.rpush(LABELS_KEY, json.dumps(label, ensure_ascii=False))
                pipe.ltrim(LABELS_KEY, -self.cfg.labels_max, -1)
            pipe.execute()

    def _fail_waiting(self, h: str, reason: str) -> None:
        """Every ticket waiting on this text: the model decides, now, saying why."""
        try:
            waiting = [w.decode() if isinstance(w, bytes) else w
                       for w in self._take_waiting(keys=[f"{KEY}:waiting:{h}", f"{KEY}:inflight:{h}"])]
            with self.redis.pipeline(transaction=False) as pipe:
                for raw in waiting:
                    key = TicketEvent.from_json(raw).key
                    pipe.set(f"{KEY}:pending:{key}", json.dumps({"since": 0, "failed": reason}),
                             ex=self._record_ttl)
                pipe.execute()
            if waiting:
                self.follow_ups.now(waiting)
        except RedisError:
            log.warning("LLM failure (%s) not recorded (Redis): the waiting tickets are decided at the deadline",
                        reason)

    # -- results -----------------------------------------------------------------------------------
    def _use(self, scores: Scores, a: Answer, why: str, cached: bool) -> Scores:
        self.counters.add("outcome_cached" if cached else "outcome_used")
        _metric("outcome", outcome="cached" if cached else "used")
        return self._answered(scores, a, why, cached)

    def _answered(self, scores: Scores, a: Answer, why: str, cached: bool) -> Scores:
        model_said = f"the model said {scores.sentiment.label} / {scores.urgency.label}"
        line = (f"- decided by the LLM second opinion ({self.cfg.model}; asked because {WHY.get(why, why)}; "
                f"{model_said}; language {a.language}{'; a cached answer' if cached else ''}): {a.reason}")
        return replace(scores, sentiment=HeadScore(a.sentiment, {a.sentiment: a.confidence}, a.confidence),
                       urgency=HeadScore(a.urgency, {a.urgency: a.confidence}, a.confidence),
                       top_words={}, decided_by="llm", second_opinion=line, language=a.language)

    def _fallback(self, scores: Scores, why: str, reason: str) -> Scores:
        self.counters.add(f"outcome_fallback_{reason}")
        _metric("outcome", outcome=f"fallback_{reason}")
        return replace(scores, second_opinion=f"- the LLM second opinion was asked ({WHY.get(why, why)}) but not "
                                              f"used ({reason}): the model's decision stands")

    def _count_fallback(self, reason: str) -> None:
        self.counters.add(f"call_failed_{reason}")

    # -- helpers -----------------------------------------------------------------------------------
    def _text(self, event: TicketEvent) -> str:
        text = ticket_text(event.subject, event.text)
        return redact(text) if self.cfg.redact else text

    def text_hash(self, text: str) -> str:
        return hashlib.sha256(f"{PROMPT_VERSION}\0{self.cfg.model}\0{text}".encode()).hexdigest()[:32]

    def spent(self, day: str | None = None) -> dict[str, int]:
        """The day's (UTC) budget spent: calls and tokens, all workers together."""
        day = day or datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")
        raw = self.redis.hgetall(f"{KEY}:budget:{day}")
        return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


class _Failed(Exception):  # noqa: N818 - internal: a question with no usable answer
    def __init__(self, reason: str, tokens: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.tokens = tokens  # what the endpoint reported using before it failed


def ask_llm(llm: Llm, user: str, timeout_s: float, deadline_at: float, clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep, counters: Counters | None = None) -> tuple[Answer, int]:
    """One question, checked answer and tokens used; a 429 waited out when its Retry-After ends
    before the deadline. Raises _Failed(reason) for every other outcome."""
    from connectors.llm.client import LlmFailure

    counters = counters or Counters()
    used = 0
    while True:
        left = deadline_at - clock()
        if left <= 0.05:
            raise _Failed("deadline", used)
        started = time.monotonic()
        try:
            reply = llm.ask(SYSTEM_PROMPT, user, ANSWER_SCHEMA, timeout=min(timeout_s, left))
        except LlmFailure as e:
            used += e.prompt_tokens + e.completion_tokens
            wait = e.retry_after
            if e.reason == "rate_limited" and wait is not None and clock() + wait < deadline_at - 0.1:
                counters.add("rate_limited_waits")
                sleep(wait)
                continue
            raise _Failed(e.reason, used) from None
        finally:
            counters.latency(time.monotonic() - started)
            _metric("latency", seconds=time.monotonic() - started)
        used += reply.prompt_tokens + reply.completion_tokens
        try:
            return parse_answer(reply.content), used
        except AnswerError as e:
            raise _Failed(e.reason, used) from None


# -- the learning loop -----------------------------------------------------------------------------

def llm_labels(redis: Redis) -> list[dict[str, Any]]:
    """Every stored LLM answer, oldest first (provenance `llm`, weight LLM_LABEL_WEIGHT)."""
    return [json.loads(raw) for raw in redis.lrange(LABELS_KEY, 0, -1)]


EXPORT_COLUMNS = ("text", "sentiment", "urgency", "weight", "provenance", "confidence", "language", "llm_model",
                  "prompt_version", "model_sentiment", "model_urgency", "model_version", "item", "why", "at")


def export_labels(labels: Iterable[dict[str, Any]], out: TextIO) -> int:
    """CSV for `triage model train --extra-csv` (text, sentiment, urgency, weight + provenance)."""
    writer = csv.DictWriter(out, EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for label in labels:
        writer.writerow(label)
        n += 1
    return n


# -- `triage model eval --with-llm` --------------------------------------------------------------

def _as_written(y: Sequence[int], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Figures of labels as the product writes them: `unsure` is no answer (wrong for every class)."""
    n = len(y)
    out: dict[str, Any] = {"n": n, "coverage": sum(p != "unsure" for p in predicted) / n if n else 0.0,
                           "accuracy": sum(labels[t] == p for t, p in zip(y, predicted)) / n if n else 0.0}
    f1s = []
    for c, lab in enumerate(labels):
        tp = sum(t == c and p == lab for t, p in zip(y, predicted))
        fp = sum(t != c and p == lab for t, p in zip(y, predicted))
        fn = sum(t == c and p != lab for t, p in zip(y, predicted))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        out[lab] = {"precision": round(precision, 4), "recall": round(recall, 4), "support": tp + fn}
    out["macro_f1"] = round(sum(f1s) / len(f1s), 4)
    out["coverage"], out["accuracy"] = round(out["coverage"], 4), round(out["accuracy"], 4)
    return out


def evaluate_hybrid(model: Any, rows: Sequence[Any], llm: Llm, cfg: LLMSettings) -> dict[str, Any]:
    """The model alone against the model + LLM second opinion on labelled rows (model.data.Row),
    as the worker decides: the same escalation rules, prompt, schema check and deadline per call;
    cfg.daily_calls / daily_tokens cap the run; a repeated text is asked once."""
    from worker.scoring import to_scores

    rule = getattr(model, "rules", {}).get("urgency")
    threshold = cfg.high_threshold if cfg.high_threshold is not None else getattr(rule, "threshold", None)
    scores: list[Scores] = []
    for start in range(0, len(rows), 256):
        scores += [to_scores(p) for p in model.score([r.text for r in rows[start:start + 256]], top_words=0)]
    whys = [escalation_reason(s, cfg.escalate, cfg.urgency_band, threshold) for s in scores]
    texts = [redact(r.text) if cfg.redact else r.text for r in rows]
    asked = list(dict.fromkeys(t for t, w in zip(texts, whys) if w))
    answers: dict[str, Answer | str] = {}
    state = {"calls": 0, "tokens": 0, "reserved": 0}
    lock = threading.Lock()
    counters = Counters()

    def one(text: str) -> None:
        user = f"Ticket:\n{text}"
        want = token_bound(SYSTEM_PROMPT, user, cfg.max_tokens)
        with lock:
            if (cfg.daily_calls and state["calls"] >= cfg.daily_calls) or \
                    (cfg.daily_tokens and state["tokens"] + state["reserved"] + want > cfg.daily_tokens):
                answers[text] = "budget"
                return
            state["calls"] += 1
            state["reserved"] += want
        used = 0
        try:
            answer, used = ask_llm(llm, user, cfg.timeout_s, time.time() + cfg.deadline_s, counters=counters)
            answers[text] = answer
        except _Failed as f:
            used = f.tokens
            answers[text] = f.reason
        finally:
            with lock:
                state["reserved"] -= want
                state["tokens"] += used

    with ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="triage-llm-eval") as pool:
        list(pool.map(one, asked))
    result: dict[str, Any] = {
        "rows": len(rows), "llm_model": cfg.model, "prompt_version": PROMPT_VERSION, "escalate": list(cfg.escalate),
        "high_threshold": threshold, "escalated": sum(bool(w) for w in whys),
        "by_reason": {w: whys.count(w) for w in sorted(set(whys) - {""})},
        "calls": state["calls"], "tokens": state["tokens"], "distinct_texts_asked": len(asked),
        "answers_used": sum(isinstance(answers.get(t), Answer) for t, w in zip(texts, whys) if w),
        "fallbacks": {}, "latency_s": {}}
    result["escalation_rate"] = round(result["escalated"] / len(rows), 4) if rows else 0.0
    for t, w in zip(texts, whys):
        a = answers.get(t)
        if w and isinstance(a, str):
            result["fallbacks"][a] = result["fallbacks"].get(a, 0) + 1
    if counters.latencies:
        ordered = sorted(counters.latencies)
        result["latency_s"] = {"median": round(ordered[len(ordered) // 2], 3),
                               "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3)}
    labels = {"sentiment": SENTIMENTS, "urgency": URGENCIES}
    for head, names in labels.items():
        keep = [i for i, r in enumerate(rows) if getattr(r, head) >= 0]
        if not keep:
            continue
        y = [getattr(rows[i], head) for i in keep]
        alone = [getattr(scores[i], head).label for i in keep]
        hybrid = [getattr(answers[texts[i]], head) if whys[i] and isinstance(answers.get(texts[i]), Answer)
                  else alone[k] for k, i in enumerate(keep)]
        esc = [k for k, i in enumerate(keep) if whys[i]]
        result[head] = {"model": _as_written(y, alone, names), "hybrid": _as_written(y, hybrid, names),
                        "escalated_rows": {"model": _as_written([y[k] for k in esc], [alone[k] for k in esc], names),
                                           "hybrid": _as_written([y[k] for k in esc], [hybrid[k] for k in esc],
                                                                 names)}}
    return result


def hybrid_markdown(result: dict[str, Any], title: str) -> str:
    lines = [f"# Model + LLM second opinion: {title}", "",
             f"LLM `{result['llm_model']}` (prompt {result['prompt_version']}), escalating "
             f"{', '.join(result['escalate']) or 'nothing'}: {result['escalated']} of {result['rows']} rows "
             f"({result['escalation_rate']:.1%}; {result['by_reason']}), {result['calls']} calls, "
             f"{result['tokens']} tokens, {result['answers_used']} answers used, "
             f"fallbacks {result['fallbacks'] or '-'}, "
             f"call latency {result['latency_s'] or '-'}.", "",
             "Labels as written (`unsure` is no answer).", "",
             "| head | rows | model macro-F1 | hybrid macro-F1 | model accuracy | hybrid accuracy | model coverage "
             "| hybrid coverage | high recall model / hybrid |", "|---|---|---|---|---|---|---|---|---|"]
    for head in ("sentiment", "urgency"):
        if head not in result:
            continue
        m, h = result[head]["model"], result[head]["hybrid"]
        high = f"{m['high']['recall']:.3f} / {h['high']['recall']:.3f}" if head == "urgency" else "-"
        lines.append(f"| {head} | {m['n']} | {m['macro_f1']:.3f} | {h['macro_f1']:.3f} | {m['accuracy']:.3f} | "
                     f"{h['accuracy']:.3f} | {m['coverage']:.1%} | {h['coverage']:.1%} | {high} |")
    return "\n".join(lines) + "\n"


def eval_cli(model: Any, rows: Sequence[Any], out_dir: Any, title: str) -> int:
    """`triage model eval --with-llm`: the endpoint from TRIAGE_LLM_* (deploy/env.example)."""
    from pathlib import Path

    from connectors.llm.client import OpenAICompatible
    from worker.errors import ConfigError
    from worker.settings import load_settings

    try:
        cfg = load_settings().llm
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    if not cfg.enabled:
        raise SystemExit("error: --with-llm asks the endpoint of TRIAGE_LLM_BASE_URL and TRIAGE_LLM_MODEL (and "
                         "TRIAGE_LLM_API_KEY): set them, see docs/llm.md")
    llm = OpenAICompatible(cfg.base_url, cfg.api_key.reveal(), cfg.model, cfg.response_format, cfg.max_tokens)
    result = evaluate_hybrid(model, rows, llm, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "llm.json").write_text(json.dumps(result, indent=1))
    (out / "llm.md").write_text(hybrid_markdown(result, title))
    brief = {"escalation_rate": result["escalation_rate"], "calls": result["calls"], "tokens": result["tokens"],
             "fallbacks": result["fallbacks"]}
    for head in ("sentiment", "urgency"):
        if head in result:
            brief[head] = {k: result[head][k]["macro_f1"] for k in ("model", "hybrid")}
    print(json.dumps(brief))
    print(f"LLM report: {out / 'llm.md'}")
    return 0


def build_escalation(cfg: LLMSettings, redis: Redis, enqueuer: Any, scorer: Any) -> Escalation | None:
    """bootstrap's wiring: None when off; the borderline band around the model's own high threshold."""
    if not cfg.enabled:
        return None
    from connectors.llm.client import OpenAICompatible

    rule = getattr(getattr(scorer, "model", None), "rules", {}).get("urgency") if "borderline" in cfg.escalate else None
    llm = OpenAICompatible(cfg.base_url, cfg.api_key.reveal(), cfg.model, cfg.response_format, cfg.max_tokens)
    return Escalation(cfg, redis, llm, RqFollowUps(enqueuer), high_threshold=getattr(rule, "threshold", None))
