"""RQ jobs and the worker that runs them.

One job carries one ticket event (JSON). The worker scores the tickets waiting in the queue ahead
of their jobs, on a background thread, while it writes the current ticket back (BatchScorer). At the
default TRIAGE_BATCH_SIZE=1 each model call scores one ticket (dynamic int8 lets batch-mates shift
scores, and batch 1 is the fastest layout on a small machine); above 1 one call scores several
queued tickets (micro-batching). Scores are shared through Redis, so each ticket is scored once
whichever worker takes its job."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from redis.client import Pipeline
from rq import SimpleWorker
from rq.job import Job, get_current_job
from rq.queue import Queue

from model.textprep import ticket_text
from worker.decision import Scores
from worker.errors import RateLimited, VendorError
from worker.events import EventError, TicketEvent
from worker.ports import Scorer
from worker.store import Store

log = logging.getLogger("triage.worker")


def triage_job(event_json: str) -> dict:
    """The RQ entry point: everything it needs comes from the process's bootstrap."""
    from worker.bootstrap import runtime

    rt = runtime()
    try:
        event = TicketEvent.from_json(event_json)
    except (EventError, json.JSONDecodeError) as e:
        _no_retry()
        raise EventError(f"bad event in job: {e}") from None
    try:
        return rt.service.process(event, rt.batch_scorer.scores_for).to_dict()
    except RateLimited as e:
        _retry_after(e.retry_after)
        raise
    except VendorError as e:
        if not e.retryable:  # bad credentials, ticket gone: retrying cannot help
            _no_retry()
            log.error("write-back to %s ticket %s failed and will not be retried: %s",
                      event.source, event.ticket_id, e)
        raise


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


class BatchScorer:
    """The scores of the ticket a job carries, computed ahead of the job where possible.

    All model calls run one at a time on one background thread. Each job first claims the next
    tickets waiting in the queue for that thread, then waits for its own ticket's scores. While the
    job writes its ticket back (vendor and Redis round trips, Python), the model thread scores the
    next ones, so the next job finds its scores ready: the model and the write-back overlap instead
    of taking turns. A claim (Redis SET NX) makes each ticket scored once across workers: a worker
    whose ticket another worker claimed waits for that worker's result (shared through Redis) and
    scores it itself only if it has not come within `wait_s`.
    """

    keep_local = 64  # scores computed ahead and not yet asked for (other workers took those jobs)

    def __init__(self, scorer: Scorer, store: Store, queue: Queue, batch_size: int = 1, wait_s: float = 2.0):
        self.scorer = scorer
        self.store = store
        self.queue = queue
        self.batch_size = batch_size  # tickets per model call
        self.wait_s = wait_s
        self._model = ThreadPoolExecutor(1, thread_name_prefix="triage-model")
        self._pending: list[Future[None]] = []  # scoring ahead, in submission order
        self._local: OrderedDict[str, Scores] = OrderedDict()  # scored ahead, not yet asked for
        self._lock = threading.Lock()  # _local: filled on the model thread, read on the job's

    def scores_for(self, event: TicketEvent) -> Scores:
        # First give the model thread the next tickets, so it never idles while this thread talks to
        # Redis; then take this ticket's scores, most likely being computed right now.
        ahead = self._claim_queued(self.batch_size, skip=event.key)
        earlier, self._pending = self._pending, [self._model.submit(self._score_ahead, ahead)] if ahead else []
        for f in earlier:
            f.result()
        with self._lock:
            scores = self._local.pop(event.key, None)
        return scores if scores is not None else self._score_now(event)

    def settle(self) -> None:
        """Wait for the scoring ahead in flight, if any."""
        for f in self._pending:
            f.result()

    def _score_now(self, event: TicketEvent) -> Scores:
        if not self.store.claim([event.key]):
            # Another worker is scoring this ticket ahead: its result is moments away.
            deadline = time.monotonic() + self.wait_s
            while time.monotonic() < deadline:
                cached = self.store.cached_scores(event.key)
                if cached is not None:
                    return cached
                time.sleep(0.002)
        batch = [event] + self._claim_queued(self.batch_size - 1, skip=event.key)
        return self._model.submit(self._score, batch).result()[event.key]

    def _score_ahead(self, batch: list[TicketEvent]) -> None:
        try:
            scores = self._score(batch)
        except Exception:  # noqa: BLE001 - scoring ahead is an optimisation: the job scores its ticket itself
            log.warning("scoring ahead failed; jobs score their own tickets", exc_info=True)
            return
        with self._lock:
            self._local.update(scores)
            while len(self._local) > self.keep_local:
                self._local.popitem(last=False)

    def _score(self, batch: list[TicketEvent]) -> dict[str, Scores]:
        scores = dict(zip((e.key for e in batch),
                          self.scorer.score([ticket_text(e.subject, e.text) for e in batch])))
        self.store.cache_scores(scores)  # for a worker that took one of these jobs meanwhile
        return scores

    def _claim_queued(self, n: int, skip: str) -> list[TicketEvent]:
        """Up to `n` unclaimed events from the head of the queue (peeked, not taken), now claimed."""
        if n < 1:
            return []
        with self._lock:
            scored = set(self._local)
        queued = {e.key: e for e in self._queued(n + 1) if e.key != skip and e.key not in scored}
        if not queued:  # nothing waiting (the usual case under light load): no claim round trip
            return []
        return [queued[k] for k in self.store.claim(list(queued), limit=n)]

    def _queued(self, n: int) -> list[TicketEvent]:
        """Events of the next `n` jobs waiting in the queue."""
        ids = self.queue.get_job_ids(0, n)
        if not ids:
            return []
        events = []
        for job in Job.fetch_many(ids, connection=self.queue.connection, serializer=self.queue.serializer):
            if job is None or job.func_name != "worker.jobs.triage_job":
                continue
            try:
                events.append(TicketEvent.from_json(job.args[0]))
            except (EventError, ValueError, IndexError):
                continue  # its own job will report it
        return events


class TriageWorker(SimpleWorker):
    """A non-forking RQ worker: the model stays loaded; a fork per ticket would cost more than
    scoring it. `heartbeat_grace_s` bounds how long a dead worker's job waits to be retried."""

    heartbeat_grace_s = 60
    # RQ beats three times per job, three Redis round trips each. A standalone beat is skipped when
    # the last beat (of any kind) set the same TTL less than this long ago; a beat that sets another
    # TTL is always sent; a standalone beat goes in one round trip.
    heartbeat_every_s = 1.0
    _beat_at, _beat_ttl = -math.inf, 0

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        ttl, at = timeout or self.worker_ttl + 60, time.monotonic()
        if pipeline is not None:
            self._beat_at, self._beat_ttl = at, ttl
            return super().heartbeat(timeout, pipeline)
        if ttl == self._beat_ttl and at - self._beat_at < self.heartbeat_every_s:
            return None
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipe)
            pipe.execute()
        self._beat_at, self._beat_ttl = at, ttl
        return None

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        if job.timeout == -1:
            return super().get_heartbeat_ttl(job, working_time)
        return int(job.timeout or 180) + self.heartbeat_grace_s
