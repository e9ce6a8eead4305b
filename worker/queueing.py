"""Putting ticket events on the RQ queue: once per revision, JSON only, with retries and a DLQ."""

from __future__ import annotations

import hashlib
import re

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from worker.errors import TriageError
from worker.events import TicketEvent
from worker.store import PREFIX

JOB_FUNC = "worker.jobs.triage_job"
FAILED_TTL_S = 30 * 24 * 3600  # the dead-letter queue keeps jobs this long
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class QueueUnavailable(TriageError):
    """Redis could not be reached: the sender should retry later (HTTP 503)."""


def job_id(event: TicketEvent) -> str:
    """RQ allows letters, digits, _ and - in job ids. A key with other characters (a Slack ts has a
    dot) gets them replaced plus a short hash of the key, so two keys never share an id."""
    raw = f"{PREFIX}-{event.key}".replace(":", "-")
    safe = _UNSAFE.sub("_", raw)
    return safe if safe == raw else f"{safe}-{hashlib.sha1(event.key.encode()).hexdigest()[:8]}"


def make_queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer)


class Enqueuer:
    def __init__(self, queue: Queue, retry_intervals_s: tuple[int, ...], job_timeout_s: int):
        self.queue = queue
        self.retry = Retry(max=len(retry_intervals_s), interval=list(retry_intervals_s)) if retry_intervals_s else None
        self.job_timeout_s = job_timeout_s

    def submit(self, event: TicketEvent) -> str:
        """'queued', 'duplicate' (already queued or running) or 'done' (already triaged)."""
        try:
            if self.queue.connection.exists(f"{PREFIX}:done:{event.key}"):
                return "done"
            # unique=True checks and enqueues in one Lua script: a duplicate delivery racing
            # this one cannot slip in between.
            self.queue.enqueue_call(JOB_FUNC, args=(event.to_json(),), job_id=job_id(event), unique=True,
                                    retry=self.retry, timeout=self.job_timeout_s, failure_ttl=FAILED_TTL_S,
                                    result_ttl=3600, description=f"triage {event.source} ticket {event.ticket_id}")
            return "queued"
        except DuplicateJobError:
            return "duplicate"
        except RedisError as e:
            raise QueueUnavailable(f"Redis unreachable: {type(e).__name__}") from None
