"""RQ jobs and the worker that runs them.

One job carries one ticket event (JSON). The worker scores the tickets waiting in the queue ahead
of their jobs, on a background thread, while it writes the current ticket back (BatchScorer). At the
default TRIAGE_BATCH_SIZE=1 each model call scores one ticket (dynamic int8 lets batch-mates shift
scores, and batch 1 is the fastest layout on a small machine); above 1 one call scores several
queued tickets (micro-batching). Scores are shared through Redis, so each ticket is scored once
whichever worker takes its job."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
import zlib
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
from worker.queueing import JOB_FUNC, job_id
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

    All model calls run one at a time on one background thread. Each job first claims tickets
    waiting in the queue for that thread, so that `ahead` model calls stay queued, then waits for
    its own ticket's scores. While the job writes its ticket back (vendor and Redis round trips,
    Python), the model thread scores the next ones, so the next job finds its scores ready: the
    model and the write-back overlap instead of taking turns. A claim (Redis SET NX on the job id)
    makes each ticket scored once across workers: a worker whose ticket another worker claimed
    waits for that worker's result (shared through Redis by a third thread, off the model's path)
    and scores it itself only if it has not come within `wait_s`.
    """

    keep_local = 64  # scores computed ahead and not yet asked for (other workers took those jobs)

    def __init__(self, scorer: Scorer, store: Store, queue: Queue, batch_size: int = 1, wait_s: float = 2.0,
                 ahead: int = 2):
        self.scorer = scorer
        self.store = store
        self.queue = queue
        self.batch_size = batch_size  # tickets per model call
        self.wait_s = wait_s
        self.ahead = ahead  # model calls kept queued ahead of the jobs: the model never waits for a job
        self._model = ThreadPoolExecutor(1, thread_name_prefix="triage-model")
        self._share = ThreadPoolExecutor(1, thread_name_prefix="triage-share")
        self._inflight: dict[str, Future[None]] = {}  # ticket key -> the model call scoring it ahead
        self._shared: Future[None] | None = None  # the latest sharing of scores
        self._local: OrderedDict[str, Scores] = OrderedDict()  # scored ahead, not yet asked for
        self._lock = threading.Lock()  # _local: filled on the model thread, read on the job's

    def scores_for(self, event: TicketEvent) -> Scores:
        with self._lock:
            scores = self._local.pop(event.key, None)
        if scores is not None:
            self._claim_ahead()
            return scores
        scoring = self._inflight.pop(event.key, None)
        if scoring is None and self.store.claim(job_id(event)):  # nobody scores it yet: first in line
            batch = [event] + self._claim_queued(self.batch_size - 1)
            scoring = self._model.submit(self._score, batch)
            self._inflight.update((e.key, scoring) for e in batch[1:])
        # Keep the model thread supplied with the next tickets before waiting, so it never idles
        # while this thread talks to Redis and the helpdesk.
        self._claim_ahead()
        if scoring is None:
            return self._scores_claimed_elsewhere(event)
        # If the call it shared failed, it is scored on its own below (raising if that fails too).
        with contextlib.suppress(Exception):
            scoring.result()
        with self._lock:
            scores = self._local.pop(event.key, None)
        # None: the call that had it failed; this worker holds the claim, so it scores it now
        return scores if scores is not None else self._score_own(event)

    def settle(self) -> None:
        """Wait for the scoring ahead in flight and the sharing of its scores, if any."""
        for f in list(self._inflight.values()):
            f.result()
        if self._shared is not None:
            self._shared.result()

    def _claim_ahead(self) -> None:
        """Claim queued tickets until `ahead` model calls are queued or running."""
        self._inflight = {k: f for k, f in self._inflight.items() if not f.done()}  # done: in _local
        for _ in range(self.ahead - len(set(self._inflight.values()))):
            batch = self._claim_queued(self.batch_size)
            if not batch:  # nothing waiting (the usual case under light load)
                return
            scoring = self._model.submit(self._score_ahead, batch)
            self._inflight.update((e.key, scoring) for e in batch)

    def _scores_claimed_elsewhere(self, event: TicketEvent) -> Scores:
        """Another worker claimed this ticket: its result is moments away through Redis; past
        `wait_s` (a worker that died) the job scores it itself."""
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            cached = self.store.cached_scores(event.key)
            if cached is not None:
                return cached
            time.sleep(0.002)
        return self._score_own(event)

    def _score_own(self, event: TicketEvent) -> Scores:
        self._model.submit(self._score, [event]).result()  # raises what the model raised
        with self._lock:
            return self._local.pop(event.key)

    def _score_ahead(self, batch: list[TicketEvent]) -> None:
        try:
            self._score(batch)
        except Exception:  # noqa: BLE001 - scoring ahead is an optimisation: the job scores its ticket itself
            log.warning("scoring ahead failed; jobs score their own tickets", exc_info=True)

    def _score(self, batch: list[TicketEvent]) -> None:
        """Score a batch (on the model thread); the scores wait in `_local` for their jobs."""
        scores = dict(zip((e.key for e in batch),
                          self.scorer.score([ticket_text(e.subject, e.text) for e in batch])))
        self._shared = self._share.submit(self._share_scores, scores)
        with self._lock:
            self._local.update(scores)
            while len(self._local) > self.keep_local:
                self._local.popitem(last=False)

    def _share_scores(self, scores: dict[str, Scores]) -> None:
        """For a worker that took one of these jobs meanwhile (it scores the ticket itself if this fails)."""
        try:
            self.store.cache_scores(scores)
        except Exception:  # noqa: BLE001
            log.warning("could not share scores through Redis", exc_info=True)

    def _claim_queued(self, n: int) -> list[TicketEvent]:
        """Events of up to `n` jobs waiting at the head of the queue (peeked, not taken), now claimed.
        A job's own ticket is never among them: RQ took it off the queue, and it is claimed."""
        if n < 1:
            return []
        events = []
        for data in self.store.claim_queued(self.queue.key, Job.redis_job_namespace_prefix, n):
            try:
                func, _, args, _ = self.queue.serializer.loads(_decompress(data))
                if func == JOB_FUNC:
                    events.append(TicketEvent.from_json(args[0]))
            except (EventError, ValueError, TypeError, IndexError):
                continue  # its own job will report it
        return events


def _decompress(data: bytes) -> bytes:
    """A job's stored `data`, as RQ writes it (zlib, or plain from older writers)."""
    try:
        return zlib.decompress(data)
    except zlib.error:
        return data


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
