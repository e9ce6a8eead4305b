"""A serve app with the console on, over a real Redis, seeded with logged decisions, an override and a
dead letter (tests/test_admin*.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis import Redis
from rq.registry import FailedJobRegistry
from rq.results import Result

from worker import bootstrap
from worker.decision import Actions, HeadScore, Scores, TriageDecision
from worker.events import TicketEvent
from worker.settings import ObservabilitySettings, Secret, Settings

TOKEN = "admin-token-for-tests-0123456789"
RULES = """\
rules:
  - name: urgent
    when: {urgency: high}
    then: {priority: urgent}
  - name: vip
    when: {tags_present: [vip]}
    then: {group: "Tier 2"}
"""


def runtime(redis_url: str, rules_path: Path, **observability) -> bootstrap.Runtime:
    rules_path.write_text(RULES)
    o = ObservabilitySettings(admin_token=Secret(TOKEN), **observability)
    s = Settings(redis_url=redis_url, rules_path=str(rules_path), queue_name="triage-admin", observability=o)
    return bootstrap.build(s)


def seed(rt: bootstrap.Runtime, n: int = 40) -> str:
    """n decisions over the last hours, an agent's override, a suggestion the agent accepted, and one dead
    letter; its job id."""
    log = rt.decision_log
    log.links = {"zendesk": lambda e: f"https://acme.zendesk.com/agent/tickets/{e.ticket_id}"}
    now = datetime.now(UTC)
    labels = [("frustrated", "high"), ("neutral", "medium"), ("satisfied", "low"), ("neutral", "low")]
    for i in range(n):
        sentiment, urgency = labels[i % 4]
        abstained = i % 10 == 9
        s = Scores(HeadScore("unsure" if abstained else sentiment, {sentiment: 0.8}, 0.8, abstained),
                   HeadScore(urgency, {urgency: 0.7}, 0.7), "test-model-v3")
        tags = ("vip",) if i % 3 == 0 else ()
        e = TicketEvent(source="zendesk" if i % 5 else "jira", ticket_id=str(1000 + i), revision="1", tags=tags)
        rules = tuple(r for r, ok in (("urgent", urgency == "high"), ("vip", bool(tags))) if ok)
        a = Actions(priority="urgent" if urgency == "high" else "", group="Tier 2" if tags else "")
        at = (now - timedelta(minutes=55 * (n - i))).timestamp()  # spread over a day and a half: the charts
        log.record(e, "written", TriageDecision(e.key, s, rules, a), now=at, received_at=at - 2)
    e = TicketEvent(source="zendesk", ticket_id="1004", revision="2", priority="low", priority_set_by_human=True)
    log.record(e, "nothing_to_write", TriageDecision(e.key, s, (), Actions()), now=now.timestamp())
    calm = Scores(HeadScore("neutral", {"neutral": 0.8}, 0.8), HeadScore("low", {"low": 0.7}, 0.7), "test-model-v3")
    e = TicketEvent(source="zendesk", ticket_id="2001", revision="1")  # a suggestion, then the agent's choice
    log.record(e, "written", TriageDecision(e.key, calm, (), Actions(note=True, suggested=(("priority", "high"),))),
               now=now.timestamp() + 1)
    e = TicketEvent(source="zendesk", ticket_id="2001", revision="2", priority="high", priority_set_by_human=True)
    log.record(e, "nothing_to_write", TriageDecision(e.key, calm, (), Actions()), now=now.timestamp() + 2)
    failed = TicketEvent(source="zendesk", ticket_id="777", revision="9", subject="secret subject",
                         text="secret customer text")
    rt.enqueuer.submit(failed)
    queue = rt.enqueuer.queue
    job_id = rt.enqueuer.job_of(failed.key) or ""
    job = queue.fetch_job(job_id)
    assert job is not None
    queue.remove(job)
    error = "Traceback (most recent call last):\nJobIncomplete: 1 of 1 tickets not written back: 422 invalid group"
    FailedJobRegistry(queue=queue).add(job, ttl=3600, exc_string=error)
    Result.create_failure(job, ttl=3600, exc_string=error)
    return job_id


def flush(redis: Redis) -> None:
    redis.flushall()
