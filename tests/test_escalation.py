"""The LLM second opinion on real Redis against the LLM sandbox, through the real openai client.
Only FollowUps (our own port: queueing the follow-up job) is a recorder here; the pipeline tests
(tests/test_escalation_pipeline.py) run it with RQ and the Zendesk sandbox."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from redis import Redis

from connectors.llm.client import OpenAICompatible
from connectors.llm.sandbox import LlmSandbox
from worker.decision import HeadScore, Scores, note_body
from worker.escalation import (
    KEY,
    Escalation,
    export_labels,
    llm_labels,
    parse_answer,
    token_bound,
)
from worker.events import TicketEvent
from worker.pii import redact
from worker.ports import Deferred
from worker.settings import LLMSettings, Secret


class Recorder:
    """FollowUps that records the jobs it would queue."""

    def __init__(self) -> None:
        self.now_calls: list[list[str]] = []
        self.at_calls: list[tuple[float, str]] = []
        self.queued = threading.Event()

    def now(self, event_jsons: Sequence[str]) -> None:
        self.now_calls.append(list(event_jsons))
        self.queued.set()

    def at(self, when: float, event_json: str) -> None:
        self.at_calls.append((when, event_json))

    def wait(self, timeout: float = 10) -> list[str]:
        assert self.queued.wait(timeout), "no follow-up job was queued"
        self.queued.clear()
        return self.now_calls[-1]


def scores(sentiment: str = "neutral", urgency: str = "medium", abstained: bool = False, p_high: float = 0.1,
           conf: float = 0.8) -> Scores:
    u = HeadScore("unsure" if abstained else urgency, {"high": p_high, "medium": 1 - p_high, "low": 0.0}, conf,
                  abstained)
    return Scores(HeadScore(sentiment, {sentiment: conf}, conf), u, "fixed-test", {"urgency": [("down", 0.4)]})


@dataclass(frozen=True)
class GatedScores(Scores):  # what the language gate (issue 16) adds: a reason
    reason: str = ""


def event(n: int, text: str = "", subject: str = "Help") -> TicketEvent:
    return TicketEvent("zendesk", str(n), f"r{n}", subject=subject, text=text or f"ticket number {n} is odd")


@pytest.fixture
def llm() -> Iterator[LlmSandbox]:
    with LlmSandbox(api_key="k") as sandbox:
        yield sandbox


def cfg(llm: LlmSandbox, **kw: Any) -> LLMSettings:
    base: dict[str, Any] = dict(base_url=llm.base_url, model="sandbox-model", api_key=Secret("k"), timeout_s=5,
                                deadline_s=5, concurrency=2, escalate=("abstained", "language", "borderline"))
    base.update(kw)
    return LLMSettings(**base)


@pytest.fixture
def make(redis: Redis, llm: LlmSandbox) -> Iterator[Any]:
    made: list[Escalation] = []

    def build(**kw: Any) -> tuple[Escalation, Recorder]:
        c = cfg(llm, **kw)
        rec = Recorder()
        esc = Escalation(c, redis, OpenAICompatible(c.base_url, c.api_key.reveal(), c.model), rec,
                         high_threshold=0.5)
        made.append(esc)
        return esc, rec

    yield build
    for e in made:
        e.close()


def escalate(esc: Escalation, rec: Recorder, e: TicketEvent, s: Scores) -> Scores:
    """The job's first attempt defers; the follow-up job's attempt decides."""
    with pytest.raises(Deferred):
        esc.review(e, s)
    assert e.to_json() in rec.wait()
    return esc.review(e, s)


# -- pure parts ----------------------------------------------------------------------------------

def test_parse_answer_checks_the_schema():
    good = {"sentiment": "frustrated", "urgency": "high", "confidence": 0.8, "language": "FR", "reason": "a\nb"}
    a = parse_answer(json.dumps(good))
    assert (a.sentiment, a.urgency, a.language, a.reason) == ("frustrated", "high", "fr", "a b")
    for bad, why in (("{", "invalid_json"), ("[1]", "schema"), (json.dumps({**good, "extra": 1}), "schema"),
                     (json.dumps({**good, "urgency": "urgent"}), "schema"),
                     (json.dumps({**good, "confidence": 2}), "schema"),
                     (json.dumps({**good, "confidence": True}), "schema"),
                     (json.dumps({**good, "language": "French language"}), "schema"),
                     (json.dumps({k: v for k, v in good.items() if k != "reason"}), "schema")):
        with pytest.raises(ValueError) as e:
            parse_answer(bad)
        assert e.value.reason == why  # type: ignore[attr-defined]


def test_redact():
    text = ("Mail me at jane.doe+x@corp.example.com or call +44 20 7946 0958 / 0612345678; card "
            "4111 1111 1111 1111. Order 2024-05-01, ticket 12345.")
    out = redact(text)
    assert "jane" not in out and "7946" not in out and "4111" not in out and "0612345678" not in out
    assert out.count("[email]") == 1 and out.count("[phone]") == 2 and out.count("[card]") == 1
    assert "2024-05-01" in out and "12345" in out


def test_known_answers_from_the_cache_only_and_counts_nothing(make, llm, redis):
    esc, rec = make()
    e, s = event(7, "Payments are down for everyone"), scores(abstained=True)
    assert esc.known(e, scores()) == scores()  # not escalated: untouched
    waiting = esc.known(e, s)
    assert waiting.urgency == s.urgency and "the worker asks the LLM second opinion" in waiting.second_opinion
    decided = escalate(esc, rec, e, s)
    counted = esc.counters.snapshot()
    again = esc.known(e, s)
    assert again.decided_by == "llm" and again.urgency == decided.urgency and "a cached answer" in again.second_opinion
    assert llm.calls == 1 and esc.counters.snapshot() == counted


def test_non_escalated_tickets_cost_nothing(make, llm, redis):
    esc, rec = make()
    s = scores()
    assert esc.review(event(1), s) is s
    assert llm.calls == 0 and not redis.keys(f"{KEY}:*") and not rec.at_calls


# -- escalation ----------------------------------------------------------------------------------

def test_abstained_ticket_is_decided_by_the_llm_and_stored_as_a_label(make, llm, redis):
    esc, rec = make()
    e = event(1, "The checkout is down for everyone")
    decided = escalate(esc, rec, e, scores(abstained=True))
    assert decided.decided_by == "llm" and decided.urgency.label == "high" and decided.sentiment.label == "frustrated"
    assert decided.top_words == {} and "decided by the LLM second opinion" in decided.second_opinion
    assert "the model abstained" in decided.second_opinion and "unsure" in decided.second_opinion
    assert decided.second_opinion in note_body(decided, ())
    assert decided.to_dict()["decided_by"] == "llm"
    [(when, raw)] = rec.at_calls  # the safety net: a job at the deadline
    assert raw == e.to_json() and when == pytest.approx(time.time() + 5 + 1, abs=2)
    [label] = llm_labels(redis)
    assert label["provenance"] == "llm" and label["weight"] == 0.5 and label["urgency"] == "high"
    assert label["model_urgency"] == "unsure" and label["item"] == e.key and label["why"] == "abstained"
    request = llm.requests[0].json
    assert request["temperature"] == 0 and request["response_format"]["json_schema"]["strict"] is True
    assert request["messages"][0]["role"] == "system" and "urgency" in request["messages"][0]["content"]
    assert esc.spent()["calls"] == 1 and 0 < esc.spent()["tokens"] < token_bound("x" * 4000, "", 200)
    assert esc.counters.snapshot()["outcome_used"] == 1


def test_a_repeated_text_makes_no_second_call(make, llm):
    esc, rec = make()
    escalate(esc, rec, event(1, "Nobody can log in"), scores(abstained=True))
    again = esc.review(event(2, "Nobody can log in"), scores(abstained=True))  # another ticket, same text
    assert again.decided_by == "llm" and "a cached answer" in again.second_opinion
    other, _ = make()  # another worker
    assert other.review(event(3, "Nobody can log in"), scores(abstained=True)).decided_by == "llm"
    assert llm.calls == 1


def test_the_same_text_twice_at_once_is_one_call(make, llm):
    esc, rec = make()
    llm.script("slow", delay_s=0.5)
    a, b = event(1, "Same words"), event(2, "Same words")
    for e in (a, b):
        with pytest.raises(Deferred):
            esc.review(e, scores(abstained=True))
    assert sorted(rec.wait()) == sorted([a.to_json(), b.to_json()])  # both follow up when the answer comes
    assert esc.review(b, scores(abstained=True)).decided_by == "llm" and llm.calls == 1


def test_language_and_borderline_escalate(make, llm):
    esc, rec = make(escalate=("language", "borderline"))
    s = scores(abstained=True)
    assert esc.review(event(1), s) is s  # abstained is not asked for here
    gated = GatedScores(s.sentiment, s.urgency, s.model_version, reason="language")
    decided = escalate(esc, rec, event(2, "Personne ne peut se connecter, 200 personnes bloquées"), gated)
    assert decided.decided_by == "llm" and "cannot read this language" in decided.second_opinion
    assert "language fr" in decided.second_opinion
    border = escalate(esc, rec, event(3, "the export is slow"), scores(p_high=0.55))
    assert border.decided_by == "llm" and "borderline" in border.second_opinion
    far = scores(p_high=0.9)
    assert esc.review(event(4), far) is far


def test_a_duplicate_delivery_while_waiting_defers_and_the_deadline_decides(make, llm, redis):
    esc, rec = make(deadline_s=1, timeout_s=5)
    llm.script("slow", delay_s=3)
    e = event(1, "slow one")
    for _ in range(2):  # the first attempt, then a duplicate delivery's job
        with pytest.raises(Deferred):
            esc.review(e, scores(abstained=True))
    rec.wait(5)  # the call gave up at the deadline: the follow-up comes
    assert llm.calls == 1
    out = esc.review(e, scores(abstained=True))
    assert out.decided_by == "model" and out.urgency.label == "unsure" and "(timeout)" in out.second_opinion
    assert "the model's decision stands" in note_body(out, ())


@pytest.mark.parametrize(("kind", "reason"), [("invalid_json", "invalid_json"), ("wrong_schema", "schema"),
                                              ("refusal", "refusal"), ("server_error", "server_error")])
def test_each_failure_falls_back_to_the_model(make, llm, redis, kind, reason):
    esc, rec = make()
    llm.script(kind)
    e = event(1, "The checkout is down")
    out = escalate(esc, rec, e, scores(abstained=True))
    assert out.decided_by == "model" and out.urgency.label == "unsure" and f"({reason})" in out.second_opinion
    assert not llm_labels(redis) and not redis.keys(f"{KEY}:cache:*")  # nothing cached: a later ticket may ask
    assert esc.counters.snapshot()[f"outcome_fallback_{reason}"] == 1


def test_a_worker_that_died_with_the_question_leaves_it_to_the_deadline(make, llm, redis):
    esc, rec = make(deadline_s=0.5)
    e = event(1, "lost")
    now = time.time()
    redis.set(f"{KEY}:pending:{e.key}", json.dumps({"since": now - 1, "why": "abstained"}))  # no answer, ever
    out = esc.review(e, scores(abstained=True))  # the job scheduled at the deadline
    assert out.decided_by == "model" and "(deadline)" in out.second_opinion and llm.calls == 0


def test_429_retry_after_within_the_deadline_is_honoured(make, llm):
    esc, rec = make(deadline_s=5)
    llm.script("rate_limited", retry_after=0.3)
    started = time.monotonic()
    out = escalate(esc, rec, event(1, "The checkout is down"), scores(abstained=True))
    assert out.decided_by == "llm" and llm.calls == 2 and time.monotonic() - started >= 0.3
    assert esc.spent()["calls"] == 1  # one question, one call of the budget


def test_429_retry_after_beyond_the_deadline_falls_back_at_once(make, llm):
    esc, rec = make(deadline_s=2)
    llm.script("rate_limited", retry_after=30)
    started = time.monotonic()
    out = escalate(esc, rec, event(1, "The checkout is down"), scores(abstained=True))
    assert out.decided_by == "model" and "(rate_limited)" in out.second_opinion
    assert time.monotonic() - started < 1.5 and llm.calls == 1


def test_timeout_is_cut_to_the_deadline(make, llm):
    esc, rec = make(deadline_s=0.6, timeout_s=30)
    llm.script("slow", delay_s=2)
    started = time.monotonic()
    out = escalate(esc, rec, event(1, "The checkout is down"), scores(abstained=True))
    assert "(timeout)" in out.second_opinion and time.monotonic() - started < 1.5


def test_an_unreachable_endpoint_or_redis_falls_back(make, llm, redis):
    esc, rec = make()
    c = cfg(llm)
    llm.stop()
    out = escalate(esc, rec, event(1, "x"), scores(abstained=True))
    assert "(unreachable)" in out.second_opinion
    dead = Redis(port=1, socket_connect_timeout=0.2)
    broken = Escalation(c, dead, OpenAICompatible(c.base_url, "k", c.model), Recorder())
    try:
        s = scores(abstained=True)
        out = broken.review(event(2, "y"), s)
        assert out.decided_by == "model" and "(redis)" in out.second_opinion and out.urgency == s.urgency
    finally:
        broken.close()


# -- budget and concurrency ----------------------------------------------------------------------

def test_spent_budget_falls_back(make, llm):
    esc, rec = make(daily_calls=1)
    assert escalate(esc, rec, event(1, "first text"), scores(abstained=True)).decided_by == "llm"
    out = escalate(esc, rec, event(2, "second text"), scores(abstained=True))
    assert out.decided_by == "model" and "(budget)" in out.second_opinion and llm.calls == 1


def test_token_budget_is_an_upper_bound_reserved_before_the_call(make, llm):
    bound = token_bound(
        __import__("worker.escalation", fromlist=["SYSTEM_PROMPT"]).SYSTEM_PROMPT, "Ticket:\nHelp\nshort", 200)
    esc, rec = make(daily_calls=0, daily_tokens=bound + 10)
    assert escalate(esc, rec, event(1, "short"), scores(abstained=True)).decided_by == "llm"
    used = esc.spent()["tokens"]
    assert 0 < used < bound  # what the sandbox reported, the rest given back
    out = escalate(esc, rec, event(2, "short, again"), scores(abstained=True))  # no room for another bound
    assert "(budget)" in out.second_opinion and llm.calls == 1 and esc.spent()["tokens"] == used


def test_two_workers_racing_for_the_last_calls_never_exceed_the_budget(make, llm, redis):
    llm.think_s = 0.05
    workers = [make(daily_calls=5, concurrency=4, deadline_s=10) for _ in range(2)]
    texts = [f"distinct ticket text {i}" for i in range(24)]
    for i, t in enumerate(texts):
        esc, _ = workers[i % 2]
        with pytest.raises(Deferred):
            esc.review(event(i, t), scores(abstained=True))
    deadline = time.monotonic() + 15
    while sum(len(sum(r.now_calls, [])) for _, r in workers) < len(texts) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert llm.calls == 5 and workers[0][0].spent()["calls"] == 5
    decided = [w.review(event(i, t), scores(abstained=True)) for i, t in enumerate(texts) for w in [workers[i % 2][0]]]
    assert sum(d.decided_by == "llm" for d in decided) == 5
    assert all("(budget)" in d.second_opinion for d in decided if d.decided_by == "model")


def test_concurrency_bounds_requests_in_flight(make, llm):
    llm.think_s = 0.2
    esc, rec = make(concurrency=2, deadline_s=10)
    for i in range(6):
        with pytest.raises(Deferred):
            esc.review(event(i, f"text {i}"), scores(abstained=True))
    deadline = time.monotonic() + 10
    while len(rec.now_calls) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert llm.calls == 6 and llm.max_in_flight == 2


# -- audit and labels ----------------------------------------------------------------------------

def test_audit_sample_keeps_the_model_decision_and_counts_agreement(make, llm, redis):
    esc, rec = make(audit_rate=1.0)
    s = scores("frustrated", "high", p_high=0.95)
    assert esc.review(event(1, "The checkout is down"), s) is s  # no wait, no deferral
    deadline = time.monotonic() + 5
    while "audit_urgency_agree" not in esc.counters.snapshot() and time.monotonic() < deadline:
        time.sleep(0.02)
    counts = esc.counters.snapshot()
    assert counts["audit_urgency_agree"] == 1 and counts["audit_sentiment_agree"] == 1
    [label] = llm_labels(redis)
    assert label["why"] == "audit" and not rec.now_calls and not rec.at_calls


def test_labels_export_for_training(make, llm, redis, tmp_path):
    esc, rec = make()
    escalate(esc, rec, event(1, "Write to jane@corp.example, thanks a lot"), scores(abstained=True))
    path = tmp_path / "llm.csv"
    with path.open("w", newline="") as f:
        assert export_labels(llm_labels(redis), f) == 1
    from model.data import read_csv

    [row] = read_csv(str(path), "text", "sentiment", "urgency", weight_col="weight")
    assert row.weight == 0.5 and "[email]" in row.text and "jane" not in row.text  # the text the LLM read


def test_off_is_the_default():
    from worker.settings import load_settings

    assert not load_settings({}, dotenv=None).llm.enabled


def test_settings_are_validated():
    from worker.errors import ConfigError
    from worker.settings import load_settings

    base = {"TRIAGE_LLM_BASE_URL": "http://127.0.0.1:11434/v1", "TRIAGE_LLM_MODEL": "qwen2.5:1.5b"}
    s = load_settings({**base, "TRIAGE_LLM_API_KEY": "sk-secret", "TRIAGE_LLM_ESCALATE": "abstained,borderline",
                       "TRIAGE_LLM_AUDIT_RATE": "0.02", "TRIAGE_LLM_DEADLINE": "20"}, dotenv=None).llm
    assert s.enabled and s.escalate == ("abstained", "borderline") and s.audit_rate == 0.02 and s.deadline_s == 20
    assert "sk-secret" not in repr(s)
    for env, words in (({"TRIAGE_LLM_MODEL": "m"}, "TRIAGE_LLM_BASE_URL missing"),
                       ({"TRIAGE_LLM_BASE_URL": "ftp://x"}, "http(s)"),
                       ({"TRIAGE_LLM_BASE_URL": "http://x/v1"}, "TRIAGE_LLM_MODEL"),
                       ({**base, "TRIAGE_LLM_ESCALATE": "abstained,angry"}, "'angry'"),
                       ({**base, "TRIAGE_LLM_AUDIT_RATE": "2"}, "between 0 and 1"),
                       ({**base, "TRIAGE_LLM_RESPONSE_FORMAT": "xml"}, "json_object"),
                       ({**base, "TRIAGE_LLM_CONCURRENCY": "0"}, "at least 1")):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_settings(env, dotenv=None)


def test_gated_scores_keep_their_fields():
    s = GatedScores(HeadScore("unsure", {}, 0.2, True), HeadScore("unsure", {}, 0.2, True), "v", reason="language")
    assert replace(s, decided_by="llm").reason == "language"


def test_hybrid_evaluation_against_the_model_alone(llm):
    from model.data import Row
    from model.runtime import TriageModel
    from worker.escalation import evaluate_hybrid, hybrid_markdown

    model = TriageModel.load()
    texts = ["The checkout is down for all customers, we are losing sales!", "Thanks, that solved it!",
             "hmm", "hmm", "Personne ne peut se connecter, c'est inadmissible", "where do I change my email?"]
    rows = [Row(t, sentiment=-1, urgency=u) for t, u in zip(texts, [0, 2, 1, 1, 0, 2])]
    c = cfg(llm, escalate=("abstained", "borderline"), concurrency=2, urgency_band=0.5, high_threshold=0.5)  # all
    a = OpenAICompatible(c.base_url, "k", c.model)
    result = evaluate_hybrid(model, rows, a, c)
    assert result["rows"] == 6 and "sentiment" not in result
    assert result["escalated"] == 6 and result["calls"] == result["distinct_texts_asked"] == llm.calls == 5
    assert result["answers_used"] == 6 and not result["fallbacks"] and result["tokens"] > 0
    assert result["urgency"]["hybrid"]["coverage"] == 1.0
    assert "| urgency | 6 |" in hybrid_markdown(result, "t")
    llm.script("server_error", times=None)
    failed = evaluate_hybrid(model, rows, a, c)
    assert failed["answers_used"] == 0 and failed["fallbacks"] == {"server_error": 6}
    assert failed["urgency"]["hybrid"] == failed["urgency"]["model"]
    llm.clear_scripts()
    capped = evaluate_hybrid(model, rows, a, replace(c, daily_calls=1))
    assert capped["calls"] == 1 and capped["fallbacks"]["budget"] >= 4


RACER = """
import sys, time
sys.path.insert(0, {tests!r})
from redis import Redis
from test_escalation import Recorder, event, scores
from connectors.llm.client import OpenAICompatible
from worker.escalation import Escalation
from worker.ports import Deferred
from worker.settings import LLMSettings, Secret
c = LLMSettings(base_url={url!r}, model="sandbox-model", api_key=Secret("k"), daily_calls=5, concurrency=4,
                deadline_s=20)
rec = Recorder()
esc = Escalation(c, Redis.from_url({redis!r}), OpenAICompatible(c.base_url, "k", c.model), rec)
go = float(sys.argv[1])
while time.time() < go:
    time.sleep(0.001)
for i in range({start}, {start} + 12):
    try:
        esc.review(event(i, "racing text %d" % i), scores(abstained=True))
    except Deferred:
        pass
deadline = time.time() + 20
while sum(len(x) for x in rec.now_calls) < 12 and time.time() < deadline:
    time.sleep(0.05)
esc.close()
print(sum(len(x) for x in rec.now_calls))
"""


def test_two_worker_processes_racing_for_the_last_calls(llm, redis, redis_server):
    import subprocess
    import sys
    from pathlib import Path

    llm.think_s = 0.05
    tests = str(Path(__file__).parent)
    go = str(time.time() + 2.5)  # both start together, after their imports
    procs = [subprocess.Popen([sys.executable, "-c", RACER.format(tests=tests, url=llm.base_url,
                                                                  redis=redis_server.url, start=start), go],
                              stdout=subprocess.PIPE, text=True) for start in (0, 100)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["12", "12"]  # every ticket got its follow-up
    assert llm.calls == 5 and int(redis.hget(f"{KEY}:budget:{time.strftime('%Y-%m-%d', time.gmtime())}", "calls")) == 5
    failed = [json.loads(v) for k in redis.keys(f"{KEY}:pending:*") if (v := redis.get(k))]
    assert sum(r.get("failed") == "budget" for r in failed) == 24 - 5
