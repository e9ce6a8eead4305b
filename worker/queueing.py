"""Putting ticket events on the RQ queue: once per revision, JSON only, with retries and a DLQ.

One job carries the events that arrived together (up to MAX_EVENTS_PER_JOB): a burst of webhooks
or a poller's page costs one job, not one per ticket. RQ's bookkeeping for a job (its Redis round
trips between taking it and recording its result, bench/job_overhead_bench.py) is then shared by the
tickets it carries. This grouping pays with the helpdesk near and far, and with one worker or
several (docs/performance.md, "Hot path devices").

A ticket that failed is tried again on its own (Enqueuer.retry_later: a scheduled job of the
tickets that failed together, each with its own count of tries in the job's meta); one that keeps
failing, or cannot succeed, waits in the dead-letter queue on its own (Enqueuer.dead_letter: a
failed RQ job, which `triage dlq` lists and requeues). The RQ retries a job is enqueued with are
for the job as a whole: its worker died, or Redis went away under it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer

from worker.errors import QueueUnavailable
from worker.events import TicketEvent
from worker.store import PREFIX

JOB_FUNC = "worker.jobs.triage_job"
FAILED_TTL_S = 30 * 24 * 3600  # the dead-letter queue keeps jobs this long
MAX_EVENTS_PER_JOB = 16  # a job's tickets are written back one after another: this bounds a job's time
TRIES_META = "tries"  # a job's meta: {event key: failed tries so far} for the tickets it carries again

__all__ = ["JOB_FUNC", "MAX_EVENTS_PER_JOB", "Enqueuer", "QueueUnavailable", "make_queue", "queued_key"]


def make_queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer)


def queued_key(event_key: str) -> str:
    """Names the job that carries a revision, from its enqueueing until the dead-letter queue
    would have forgotten it: a repeated delivery meanwhile is a duplicate."""
    return f"{PREFIX}:queued:{event_key}"


class Enqueuer:
    """Puts ticket events on the queue (once per revision), tries failed tickets again later, and
    files the ones that cannot succeed in the dead-letter queue."""

    def __init__(self, queue: Queue, retry_intervals_s: tuple[int, ...], job_timeout_s: int):
        """`job_timeout_s` is per ticket: a job of N tickets may run N times as long."""
        self.queue = queue
        # RQ's retries of a job as a whole (its worker died, Redis went away under it): at once and at
        # the head of the queue, not behind the backlog; its tickets' own failures are retried per
        # ticket, after the intervals (retry_later)
        self.retry = Retry(max=len(retry_intervals_s), enqueue_at_front=True) if retry_intervals_s else None
        self.job_timeout_s = job_timeout_s

    def submit(self, event: TicketEvent) -> str:
        """'queued', 'duplicate' (already queued or running) or 'done' (already triaged)."""
        return self.submit_many([event])[0]

    def submit_many(self, events: Sequence[TicketEvent]) -> list[str]:
        """Queue the events that are neither triaged nor queued already, in as few jobs as
        MAX_EVENTS_PER_JOB allows; each event's status as submit() says it."""
        if not events:
            return []
        redis = self.queue.connection
        try:
            known = redis.mget([f"{PREFIX}:done:{e.key}" for e in events] + [queued_key(e.key) for e in events])
            statuses, fresh = [], {}
            for i, e in enumerate(events):
                if known[i]:
                    statuses.append("done")
                elif known[len(events) + i] or e.key in fresh:
                    statuses.append("duplicate")
                else:
                    statuses.append("queued")
                    fresh[e.key] = e
            batch = list(fresh.values())
            for start in range(0, len(batch), MAX_EVENTS_PER_JOB):
                self._enqueue(batch[start:start + MAX_EVENTS_PER_JOB])
            return statuses
        except RedisError as e:
            raise QueueUnavailable(f"Redis unreachable: {type(e).__name__}") from None

    def _enqueue(self, events: list[TicketEvent]) -> None:
        """One job and its revisions' markers, in one transaction: a marker never names a job that
        was not queued. Two deliveries of a revision racing here may both be queued; the worker's
        lease (Store.begin) still writes it back once."""
        with self.queue.connection.pipeline() as pipe:
            job = self.queue.enqueue_call(JOB_FUNC, args=tuple(e.to_json() for e in events), retry=self.retry,
                                          timeout=self.job_timeout_s * len(events), failure_ttl=FAILED_TTL_S,
                                          result_ttl=3600, description=describe(events), pipeline=pipe)
            for e in events:
                pipe.set(queued_key(e.key), job.id, ex=FAILED_TTL_S)
            pipe.execute()

    def retry_later(self, events: Sequence[TicketEvent], tries: Mapping[str, int], delay_s: float) -> str:
        """A job of `events`, run in `delay_s` seconds by RQ's scheduler; `tries` (event key -> failed
        tries so far) travels in its meta. Their markers name it. Returns its id."""
        with self.queue.connection.pipeline() as pipe:
            job = self._create(events, meta={TRIES_META: {e.key: tries.get(e.key, 0) for e in events}})
            # RQ schedules to the whole second, truncated: the extra second keeps a retry from coming early
            at = datetime.now(UTC) + timedelta(seconds=int(delay_s) + (1 if delay_s % 1 else 0))
            self.queue.schedule_job(job, at, pipeline=pipe)
            for e in events:
                pipe.set(queued_key(e.key), job.id, ex=FAILED_TTL_S)
            pipe.execute()
        return job.id

    def dead_letter(self, event_jsons: Sequence[str], description: str, error: str,
                    keys: Sequence[str] = ()) -> str:
        """File these events in the dead-letter queue as one failed job with `error` (no ticket
        text): `triage dlq list` shows it, `triage dlq requeue` runs it again with fresh tries.
        `keys`: their revisions, whose markers then name it. Returns its id."""
        with self.queue.connection.pipeline() as pipe:
            job = self.queue.create_job(JOB_FUNC, args=tuple(event_jsons), retry=self.retry,
                                        timeout=self.job_timeout_s * max(1, len(event_jsons)),
                                        failure_ttl=FAILED_TTL_S, result_ttl=3600, description=description)
            job.ended_at = datetime.now(UTC)
            pipe.sadd(self.queue.redis_queues_keys, self.queue.key)
            record_job_failure(job, error, pipe)  # saves it, FAILED, in the failed registry, with its error
            for key in keys:
                pipe.set(queued_key(key), job.id, ex=FAILED_TTL_S)
            pipe.execute()
        return job.id

    def _create(self, events: Sequence[TicketEvent], meta: dict | None = None) -> Job:
        return self.queue.create_job(JOB_FUNC, args=tuple(e.to_json() for e in events), retry=self.retry,
                                     timeout=self.job_timeout_s * len(events), failure_ttl=FAILED_TTL_S,
                                     result_ttl=3600, description=describe(events), meta=meta)

    def job_of(self, event_key: str) -> str | None:
        """The id of the job that carried a revision, if one did."""
        raw = self.queue.connection.get(queued_key(event_key))
        return raw.decode() if isinstance(raw, bytes) else raw


def describe(events: Sequence[TicketEvent]) -> str:
    """What `triage dlq list` shows for a job: the tickets it carries (ids only, never text)."""
    shown = ", ".join(f"{e.source} {e.ticket_id}" for e in events[:4])
    more = f" and {len(events) - 4} more" if len(events) > 4 else ""
    return f"triage {shown}{more}"
