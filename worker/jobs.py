"""RQ jobs and the worker that runs them.

One job carries the ticket events that arrived together (JSON; see worker.queueing). The job
takes its revisions in one round trip (Store.begin), hands their texts to the model thread, then
writes each ticket back as its scores come: while the job thread talks to the helpdesk, the model
scores the next tickets. At the end it records the tickets it settled in one round trip
(TriageService.finish); a worker that dies before leaves them leased to the job, whose next run
finds the bot's notes instead of writing again. At the default TRIAGE_BATCH_SIZE=1 each model
call scores one ticket (dynamic int8 lets batch-mates shift scores, and batch 1 is the fastest
layout on a small machine); above 1 one call scores several of the job's tickets (micro-batching).

A ticket whose write-back fails does not hold back the others. The job then fails naming the
tickets left; RQ retries it (honouring Retry-After), and the retry takes only those, since the
others are done. After the last retry the job waits in the dead-letter queue (`triage dlq`). A 429
or a 401 (the account is limited, the credentials are wrong) leaves the job's other tickets of
that helpdesk untried, for the retry; a job may carry tickets of several helpdesks."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.job import Job, get_current_job

from model.textprep import ticket_text
from worker.decision import Scores
from worker.errors import ConfigError, JobIncomplete, RateLimited, VendorAuthError, VendorError
from worker.events import EventError, TicketEvent
from worker.ports import Scorer
from worker.triage import Outcome

log = logging.getLogger("triage.worker")


def triage_job(*event_jsons: str) -> list[dict]:
    """The RQ entry point: everything it needs comes from the process's bootstrap."""
    from worker.bootstrap import runtime

    rt = runtime()
    job = get_current_job()
    owner = job.id if job is not None else uuid.uuid4().hex
    events: list[TicketEvent] = []
    failed: list[_Failure] = []
    for i, raw in enumerate(event_jsons):
        try:
            event = TicketEvent.from_json(raw)
        except (EventError, json.JSONDecodeError) as e:
            failed.append(_Failure(f"event {i + 1}", f"bad event in job: {e}", retryable=False))
            continue
        if all(event.key != seen.key for seen in events):  # a revision twice in one job: once
            events.append(event)
    attempts = rt.service.begin(events, owner)
    todo = [e for e, a in zip(events, attempts, strict=True) if a not in ("done", "busy")]
    scores = dict(zip((e.key for e in todo), rt.model_thread.score_later(todo), strict=True))
    outcomes: list[Outcome] = []
    stopped: dict[str, VendorError] = {}  # source -> the 429 or 401 that stopped its other tickets
    try:
        for n, (event, attempt) in enumerate(zip(events, attempts, strict=True)):
            if n == len(events) - 1:  # the model's last call for this job is queued: give it the next one's
                with contextlib.suppress(RedisError):  # an optimisation: never a reason to fail the job
                    rt.model_thread.score_ahead(rt.enqueuer.peek(rt.model_thread.ahead))
            if event.source in stopped:  # left for the retry, free for a duplicate delivery's job meanwhile
                failed.append(_Failure(event.key, "not attempted", stopped[event.source].retryable, tried=False))
                if attempt not in ("done", "busy"):
                    rt.service.release(event, owner)
                continue
            try:
                outcome = rt.service.complete(event, attempt, owner, lambda e: scores[e.key]())
            except (VendorError, ConfigError) as e:
                failed.append(_Failure(event.key, str(e), isinstance(e, VendorError) and e.retryable))
                if isinstance(e, RateLimited):  # the account is limited: the retry waits what it asked
                    _retry_after(e.retry_after)
                if isinstance(e, RateLimited) or (isinstance(e, VendorAuthError) and e.status != 403):
                    stopped[event.source] = e  # a 403 may concern one ticket only; a 401 concerns them all
                continue
            outcomes.append(outcome)
    except BaseException:
        rt.model_thread.cancel_queued()  # the retry scores its tickets again
        with contextlib.suppress(RedisError):  # else the retry finds their notes ('again')
            rt.service.finish(outcomes)
        raise
    rt.service.finish(outcomes)  # the job's tickets recorded in one round trip
    if failed:
        _fail(failed, len(event_jsons))
    return [o.to_dict() for o in outcomes]


@dataclass(frozen=True)
class _Failure:
    key: str  # the event key, or "event N" for one that could not be read
    error: str
    retryable: bool
    tried: bool = True  # False: left for the retry after a 429 or 401 on another ticket


def _fail(failed: list[_Failure], total: int) -> None:
    if not any(f.retryable for f in failed):  # bad credentials, tickets gone: retrying cannot help
        _no_retry()
    tried = [f for f in failed if f.tried]
    for f in tried:
        log.error("write-back of %s failed%s: %s", f.key, "" if f.retryable else " and will not be retried", f.error)
    shown = "; ".join(f"{f.key} ({f.error})" for f in tried[:5])
    more = f"; {len(failed) - len(tried[:5])} more" if len(failed) > len(tried[:5]) else ""
    raise JobIncomplete(f"{len(failed)} of {total} tickets not written back: {shown}{more}")


def _no_retry() -> None:
    job = get_current_job()
    if job is not None:
        job.retries_left = 0


def _retry_after(seconds: float) -> None:
    """Make the next retry wait what the vendor asked for (Retry-After), not the fixed backoff."""
    job = get_current_job()
    if job is None or not job.retries_left or not job.retry_intervals:
        return
    intervals = list(job.retry_intervals)
    index = max(len(intervals) - job.retries_left, 0)
    if index < len(intervals):
        # RQ schedules to the whole second, truncated: without the extra second a retry could come
        # up to a second before the vendor said it may.
        intervals[index] = max(1, math.ceil(seconds)) + 1
        job.retry_intervals = intervals


class ModelThread:
    """All model calls, one at a time, on one background thread of the worker process.

    Between two jobs (the last write-back, RQ's bookkeeping, the next job's start) the model would
    sit idle. So when a job reaches its last ticket it hands the model the first `ahead` tickets
    of the job waiting next in the queue (score_ahead); if this worker takes that job, their
    scores are ready or under way. If another worker takes it, that work is lost: one model call
    per job at most, and only when both workers reach the queue within one write-back."""

    keep_ahead = 8  # scored ahead and not asked for (another worker took the job)

    def __init__(self, scorer: Scorer, batch_size: int = 1, ahead: int = 1):
        self.scorer = scorer
        self.batch_size = batch_size  # tickets per model call
        self.ahead = ahead
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="triage-model")
        self._queued: list[Future[list[Scores]]] = []
        self._ahead: OrderedDict[str, Callable[[], Scores]] = OrderedDict()  # event key -> its scores

    def score_later(self, events: Sequence[TicketEvent]) -> list[Callable[[], Scores]]:
        """Queue the events' scoring now; each callable waits for its event's scores (raising what
        the model raised). Calls are queued in order, so the first scores come first."""
        found = {e.key: self._ahead.pop(e.key) for e in events if e.key in self._ahead}
        waits = self._submit([e for e in events if e.key not in found])
        return [found[e.key] if e.key in found else next(waits) for e in events]

    def score_ahead(self, events: Sequence[TicketEvent]) -> None:
        """Start scoring events of a job not taken yet (see the class)."""
        fresh = [e for e in events if e.key not in self._ahead]
        for e, wait in zip(fresh, self._submit(fresh), strict=True):
            self._ahead[e.key] = wait
        while len(self._ahead) > self.keep_ahead:
            self._ahead.popitem(last=False)

    def _submit(self, events: Sequence[TicketEvent]) -> Iterator[Callable[[], Scores]]:
        self._queued = [f for f in self._queued if not f.done()]
        waits: list[Callable[[], Scores]] = []
        for start in range(0, len(events), self.batch_size):
            chunk = events[start:start + self.batch_size]
            call = self._pool.submit(self.scorer.score, [ticket_text(e.subject, e.text) for e in chunk])
            self._queued.append(call)
            waits += [_nth(call, i) for i in range(len(chunk))]
        return iter(waits)

    def cancel_queued(self) -> None:
        """Drop the model calls not started yet (their job stopped early)."""
        for f in self._queued:
            f.cancel()
        self._queued = []
        self._ahead.clear()


def _nth(call: Future[list[Scores]], i: int) -> Callable[[], Scores]:
    return lambda: call.result()[i]


class _WithholdJobArguments(logging.Filter):
    """RQ attaches a failed job's arguments to its error record (`extra`): for a triage job, the
    ticket events and their text, which a structured (JSON) log handler would print. The record
    keeps the job id, queue and function; the arguments stay in Redis, where `triage dlq` reads them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in ("arguments", "kwargs"):
            if name in record.__dict__:
                setattr(record, name, "(withheld: ticket data)")
        return True


class TriageWorker(SimpleWorker):
    """A non-forking RQ worker: the model stays loaded; a fork per ticket would cost more than
    scoring it. `heartbeat_grace_s` bounds how long a dead worker's job waits to be retried."""

    heartbeat_grace_s = 60
    # RQ beats several times per job, each a Redis round trip of its own unless it rides in a
    # pipeline. A standalone beat is skipped when the last beat (of any kind) was less than this
    # long ago and left the worker's key at least a minute to live; a standalone beat goes in one
    # round trip. Pipelined beats are always sent: they cost no round trip of their own.
    heartbeat_every_s = 1.0
    _beat_at, _beat_ttl = -math.inf, 0
    _withhold = _WithholdJobArguments()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log.addFilter(self._withhold)  # once per logger: addFilter skips a filter it holds

    def work(self, *args: Any, **kwargs: Any) -> bool:
        from worker.metrics import serve_worker_metrics

        serve_worker_metrics()  # TRIAGE_METRICS_PORT: this worker's /metrics (docs/observability.md)
        return super().work(*args, **kwargs)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        ttl, at = timeout or self.worker_ttl + 60, time.monotonic()
        if pipeline is not None:
            self._beat_at, self._beat_ttl = at, ttl
            return super().heartbeat(timeout, pipeline)
        if at - self._beat_at < self.heartbeat_every_s and self._beat_ttl >= 60:
            return None
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipe)
            pipe.execute()
        self._beat_at, self._beat_ttl = at, ttl
        return None

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ sets 'idle' twice between two jobs; a state already recorded costs no round trip."""
        if pipeline is None and state == self._state:
            return
        super().set_state(state, pipeline)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        if job.timeout == -1:
            return super().get_heartbeat_ttl(job, working_time)
        return int(job.timeout or 180) + self.heartbeat_grace_s
