"""RQ jobs and the worker that runs them.

One job carries the ticket events that arrived together (JSON; see worker.queueing). The job
takes its revisions in one round trip (Store.begin), hands their texts to the model thread, then
writes each ticket back as its scores come: while the job thread talks to the helpdesk, the model
scores the next tickets. At the end it records the tickets it settled in one round trip
(TriageService.finish); a worker that dies before leaves them leased to the job, whose next run
finds the bot's notes instead of writing again. The model thread scores only this job's tickets
(no look-ahead into the queue), with a model warmed at load (worker.scoring); why, with figures:
docs/performance.md, "Hot path devices". At the default TRIAGE_BATCH_SIZE=1 each model
call scores one ticket (dynamic int8 lets batch-mates shift scores, and batch 1 is the fastest
layout on a small machine); above 1 one call scores several of the job's tickets (micro-batching).

Failures are per ticket. Whatever one ticket raises (the model, the rules, the write-back) fails
that ticket alone; its job-mates go on and the job ends normally. A ticket that failed and may
succeed later (5xx, a timeout, an unexpected error) is tried again on its own, after the next of
TRIAGE_RETRY_INTERVALS, in a job of the tickets that failed with it (Enqueuer.retry_later); its
count of tries travels with it, so its job-mates are never charged. After its last try, or at
once when trying again cannot help (403, 404, 422, no write-back configured), it waits in the
dead-letter queue on its own, with its error (Enqueuer.dead_letter, `triage dlq`). A 401 files
the job's other tickets of that helpdesk with it, untried: the credential is wrong for all.

A 429 is not a failure and spends no try: the ticket is set aside for what Retry-After says
(capped) while the job writes its other tickets, then tried again. Two 429s in a row from one
helpdesk mean its account is limited: that helpdesk is paused for every worker (AccountPause, shared
through Redis), so N workers do not hammer it. A job that would wait longer than its budget (half a
ticket's TRIAGE_JOB_TIMEOUT in all) hands the tickets left of that helpdesk to a job scheduled for
when the pause ends, uncharged.

The worker (TriageWorker) heartbeats the job it runs from a background thread, with a short TTL,
and sweeps the queue's started registry often, so a job whose worker died runs again (RQ's
retries of the job) within a minute or so; and it rides out a Redis outage instead of exiting."""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import json
import logging
import threading
import time
import traceback
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, get_current_job
from rq.queue import Queue
from rq.timeouts import BaseTimeoutException

from model.textprep import ticket_text
from worker.decision import Scores
from worker.errors import ConfigError, QueueUnavailable, RateLimited, TriageError, VendorAuthError, VendorError
from worker.events import EventError, TicketEvent
from worker.ports import Attempt, Deferred, Scorer, SecondOpinion
from worker.queueing import TRIES_META, Enqueuer, describe
from worker.store import PREFIX, AccountPause
from worker.triage import TriageResult, TriageService

log = logging.getLogger("triage.worker")


@dataclass
class JobContext:
    """What a triage job needs, handed to it by the TriageWorker that runs it (bootstrap builds it)."""

    service: TriageService
    model_thread: ModelThread
    enqueuer: Enqueuer
    pause: AccountPause
    retry_intervals_s: tuple[int, ...]  # a failed ticket's next tries wait these; then the DLQ
    rate_limit_budget_s: float = 60.0  # how long one job may wait on 429s before it hands tickets on
    second_opinion: SecondOpinion | None = None  # the LLM second opinion (worker/escalation.py); None: off

    @property
    def max_tries(self) -> int:
        return len(self.retry_intervals_s) + 1


@dataclass
class _Handover:
    context: JobContext
    fresh: Callable[[], bool]  # the worker's heartbeat reached Redis recently: the job's lease holds


_running: contextvars.ContextVar[_Handover] = contextvars.ContextVar("triage_job_handover")


def triage_job(*event_jsons: str) -> list[dict]:
    """The RQ entry point: the worker running it hands over what it needs (TriageWorker)."""
    handover = _running.get(None)
    if handover is None:
        raise ConfigError("triage jobs run in `triage worker` (worker.jobs.TriageWorker), not a plain RQ worker")
    job = get_current_job()
    owner = job.id if job is not None else uuid.uuid4().hex
    tries = dict((job.meta or {}).get(TRIES_META, {})) if job is not None else {}
    return _JobRun(handover, owner, tries).run(event_jsons)


class _BudgetSpent(Exception):
    """The job's 429 budget is spent: the ticket goes to a later job, uncharged."""

    def __init__(self, wait_s: float):
        self.wait_s = wait_s


class _JobRun:
    """One run of one job: its tickets one after another, each failing on its own. A ticket met by
    a 429 is set aside until its Retry-After has passed and taken up again after the others."""

    limited_after = 2  # 429s in a row from one helpdesk (no success between): its account is limited

    def __init__(self, handover: _Handover, owner: str, tries: dict[str, int]):
        self.ctx = handover.context
        self.fresh = handover.fresh
        self.service = self.ctx.service
        self.owner = owner
        self.tries = tries  # event key -> failed tries before this run
        self.waited = 0.0  # seconds this run spent waiting on 429s
        self.streak: dict[str, int] = defaultdict(int)  # source -> 429s in a row
        self.retry: list[tuple[TicketEvent, str]] = []  # failed, to be tried again (or filed: last try)
        self.dead: list[tuple[TicketEvent, str]] = []  # failed where trying again cannot help
        self.deferred: dict[str, tuple[list[TicketEvent], float]] = {}  # source -> its tickets left, pause

    def run(self, event_jsons: Sequence[str]) -> list[dict]:
        events: list[TicketEvent] = []
        for i, raw in enumerate(event_jsons):
            try:
                event = TicketEvent.from_json(raw)
            except (EventError, json.JSONDecodeError) as e:
                log.error("event %d of job %s is not a ticket event: %s", i + 1, self.owner, e)
                self.ctx.enqueuer.dead_letter([raw], f"unreadable event from job {self.owner}",
                                              f"bad event in job: {e}")
                continue
            if all(event.key != seen.key for seen in events):  # a revision twice in one job: once
                events.append(event)
        attempts = self.service.begin(events, self.owner)
        model = self.ctx.model_thread
        todo = [e for e, a in zip(events, attempts, strict=True) if a.taken]
        scores = dict(zip((e.key for e in todo), model.score_later(todo), strict=True))
        work: deque[tuple[TicketEvent, Attempt | None]] = deque(zip(events, attempts, strict=True))
        aside: list[tuple[float, int, TicketEvent]] = []  # (when it may be tried again, order, event): a heap
        outcomes: list[TriageResult] = []
        stopped: dict[str, str] = {}  # source -> the 401 that stopped its other tickets
        try:
            while work or aside:
                if not work:
                    work.append(self._take_up(heapq.heappop(aside)))
                event, attempt = work.popleft()
                if attempt is None:  # set aside after a 429, its lease given back: take it again
                    attempt = self.service.begin([event], self.owner)[0]
                if event.source in stopped or event.source in self.deferred:
                    if attempt.taken:  # free for a duplicate delivery's job meanwhile
                        self.service.release(event, self.owner)
                    if event.source in stopped:
                        self.dead.append((event, f"not attempted: {stopped[event.source]}"))
                    else:
                        self.deferred[event.source][0].append(event)
                    continue
                if not self.fresh():  # our heartbeat has not reached Redis: the job may be run elsewhere
                    raise QueueUnavailable("this worker lost touch with Redis; the job runs again when it is back")
                try:
                    outcome = self._one(event, attempt, scores)
                except Deferred:  # the LLM second opinion's follow-up job writes it back (the lease went back)
                    continue
                except _BudgetSpent as d:
                    self.deferred[event.source] = ([event], d.wait_s)
                except RateLimited as e:
                    heapq.heappush(aside, (time.monotonic() + self._limited(event, e), len(aside) + len(work), event))
                except (RedisError, BaseTimeoutException):
                    raise  # the job's business: Redis went away, or the job ran out of time
                except VendorAuthError as e:
                    self.dead.append((event, str(e)))
                    if e.status != 403:  # a 403 may concern one ticket only; a 401 concerns them all
                        stopped[event.source] = str(e)
                except (VendorError, ConfigError) as e:
                    (self.retry if isinstance(e, VendorError) and e.retryable else self.dead).append((event, str(e)))
                except Exception as e:  # the model, the rules, a connector's bug: this ticket alone
                    log.error("ticket %s failed: %s", event.key, _error_text(e))
                    log.debug("ticket %s failed", event.key, exc_info=True)
                    self.retry.append((event, _error_text(e)))
                else:
                    self.streak[event.source] = 0
                    outcomes.append(outcome)
        except BaseException:
            model.cancel_queued()  # the job's next run scores its tickets again
            with contextlib.suppress(RedisError):  # else that run finds their notes (AGAIN)
                self.service.finish(outcomes)
            raise
        self.service.finish(outcomes)  # the job's tickets recorded in one round trip
        self._settle_failures()
        return [_result(o) for o in outcomes]

    def _limited(self, event: TicketEvent, e: RateLimited) -> float:
        """A 429 (no try spent): this ticket waits Retry-After (capped); two in a row from one helpdesk
        pause it for every worker (AccountPause). Returns the ticket's wait."""
        self.streak[event.source] += 1
        wait = min(max(e.retry_after, 0.0), self.ctx.pause.max_wait_s)
        if self.streak[event.source] >= self.limited_after:
            wait = self.ctx.pause.hold(event.source, wait)
            log.info("%s is rate limited: all workers pause its write-backs for %.1f s", event.source, wait)
        else:
            log.info("%s answered 429 for ticket %s: it is tried again in %.1f s, after the job's others (no try "
                     "spent)", event.source, event.ticket_id, wait)
        return wait

    def _take_up(self, entry: tuple[float, int, TicketEvent]) -> tuple[TicketEvent, Attempt | None]:
        """A ticket set aside after a 429, once its wait is over (or deferred: the budget is spent)."""
        ready, _, event = entry
        wait = ready - time.monotonic()
        if wait > 0 and event.source not in self.deferred:
            if self.waited + wait > self.ctx.rate_limit_budget_s:
                self.deferred[event.source] = ([], wait)
            else:
                time.sleep(wait)
                self.waited += wait
        return event, None

    def _one(self, event: TicketEvent, attempt: Attempt, scores: dict[str, Callable[[], Scores]]) -> TriageResult:
        """One ticket, after the helpdesk's account-wide pause if one is on (within the job's budget)."""
        wait = self.ctx.pause.remaining(event.source) if attempt.taken else 0.0  # DONE/BUSY: nothing to write
        if wait > 0:
            if self.waited + wait > self.ctx.rate_limit_budget_s:
                self.service.release(event, self.owner)
                raise _BudgetSpent(wait)
            time.sleep(wait)
            self.waited += wait
        second = self.ctx.second_opinion  # may raise Deferred: the ticket waits for the LLM
        return self.service.complete(event, attempt, self.owner, lambda e: scores[e.key]() if second is None
                                     else second.review(e, scores[e.key]()))

    def _settle_failures(self) -> None:
        """Failed tickets: tried again later (grouped by their next delay) or filed in the DLQ alone."""
        enqueuer, intervals = self.ctx.enqueuer, self.ctx.retry_intervals_s
        later: dict[int, list[TicketEvent]] = defaultdict(list)
        tries: dict[str, int] = {}
        for event, error in self.retry:
            tries[event.key] = self.tries.get(event.key, 0) + 1
            if tries[event.key] >= self.ctx.max_tries:
                self.dead.append((event, f"{error} ({tries[event.key]} tries)"))
                continue
            delay = intervals[tries[event.key] - 1]
            log.warning("write-back of %s failed (try %d of %d), tried again in %d s: %s", event.key,
                        tries[event.key], self.ctx.max_tries, delay, error)
            later[delay].append(event)
        for delay, events in later.items():
            enqueuer.retry_later(events, tries, delay)
        for source, (events, wait) in self.deferred.items():
            if events:
                log.info("%s: %d ticket(s) wait out its rate limit in a later job (%.0f s), no try spent", source,
                         len(events), wait)
                enqueuer.retry_later(events, {e.key: self.tries.get(e.key, 0) for e in events}, max(1.0, wait))
        by_error: dict[str, list[TicketEvent]] = defaultdict(list)
        for event, error in self.dead:
            by_error[error.removeprefix("not attempted: ")].append(event)
        for error, events in by_error.items():
            for e in events:
                log.error("write-back of %s failed and waits in the dead-letter queue: %s", e.key, error)
            shown = "; ".join(e.key for e in events[:4]) + (f" and {len(events) - 4} more" if len(events) > 4 else "")
            enqueuer.dead_letter([e.to_json() for e in events], describe(events),
                                 f"{len(events)} ticket(s) not written back ({shown}): {error}",
                                 keys=[e.key for e in events])


def _result(o: TriageResult) -> dict:
    return {"status": str(o.status), "key": o.key, "decision": o.decision.to_dict() if o.decision else None}


def _error_text(e: BaseException) -> str:
    """An error for the log and the DLQ: ours say what happened (never ticket text); another's
    message might quote the text, so only its type and where it was raised."""
    if isinstance(e, TriageError):
        return str(e)
    frames = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} ({frames[-1].name})" if frames else ""
    return f"{type(e).__name__}{where} (the worker log has the traceback at DEBUG)"


class ModelThread:
    """All model calls, one at a time, on one background thread of the worker process: while the
    job thread writes a ticket back, the model scores the job's next ones.

    It scores only the tickets of the job this worker has taken. An earlier design also scored the
    first ticket of the job waiting next in the queue, read from RQ's private job hash; it paid
    only with one worker and the helpdesk near; it was removed (docs/performance.md, "Hot path devices").

    A call of several texts that raises is made again text by text: only the text that cannot be
    scored fails (its ticket), not its batch-mates."""

    def __init__(self, scorer: Scorer, batch_size: int = 1):
        self.scorer = scorer
        self.batch_size = batch_size  # tickets per model call
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="triage-model")
        self._queued: list[Future[list[Scores | Exception]]] = []

    def score_later(self, events: Sequence[TicketEvent]) -> list[Callable[[], Scores]]:
        """Queue the events' scoring now; each callable waits for its event's scores (raising what
        the model raised for that text). Calls are queued in order, so the first scores come first."""
        self._queued = [f for f in self._queued if not f.done()]
        waits: list[Callable[[], Scores]] = []
        for start in range(0, len(events), self.batch_size):
            chunk = events[start:start + self.batch_size]
            call = self._pool.submit(self._score, [ticket_text(e.subject, e.text) for e in chunk])
            self._queued.append(call)
            waits += [_nth(call, i) for i in range(len(chunk))]
        return waits

    def _score(self, texts: list[str]) -> list[Scores | Exception]:
        try:
            return list(self.scorer.score(texts))
        except Exception as e:
            if len(texts) == 1:
                return [e]
        out: list[Scores | Exception] = []
        for text in texts:
            try:
                out += self.scorer.score([text])
            except Exception as e:
                out.append(e)
        return out

    def cancel_queued(self) -> None:
        """Drop the model calls not started yet (their job stopped early)."""
        for f in self._queued:
            f.cancel()
        self._queued = []


def _nth(call: Future[list[Scores | Exception]], i: int) -> Callable[[], Scores]:
    def wait() -> Scores:
        got = call.result()[i]
        if isinstance(got, Exception):
            raise got
        return got

    return wait


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
    scoring it.

    The job runs on the main thread, so a background thread ("triage-beat") keeps RQ's heartbeats
    of it (maintain_heartbeats: the worker, the execution and the job keys) every `beat_every_s`,
    with a TTL of `job_heartbeat_ttl_s` instead of the job's whole timeout; and every
    `sweep_every_s` one worker of the queue (a lock) sweeps its started registry, where RQ retries
    the jobs whose heartbeat ran out (their worker died). A dead worker's job therefore runs again
    within job_heartbeat_ttl_s + sweep_every_s + the first retry interval.

    A Redis outage is ridden out: a job cut short by it is left to the sweep (its tickets are
    leased to it: its next run writes nothing twice), the worker waits for Redis with backoff and
    says so in the log, and its maintenance (every `maintenance_every_s`, even while idle) starts
    RQ's scheduler again where it died, so scheduled retries run once Redis is back.

    Its heartbeat and set_state are RQ's own, made quiet in an outage; earlier overrides that saved
    Redis round trips between jobs (skipping beats, caching the state in RQ's private `_state`)
    were removed: no gain measured (docs/performance.md, "Hot path devices").

    Depends on RQ internals (rq pinned to 3.0.x in pyproject.toml): the scheduler's `_process`
    (run_maintenance_tasks) and the `dequeue_timeout` property, tested in tests/test_worker.py."""

    job_heartbeat_ttl_s = 30
    beat_every_s = 5.0
    sweep_every_s = 10.0
    overdue_s = 15.0  # a scheduled job this late has no running scheduler: the sweep enqueues it
    maintenance_every_s = 30
    redis_wait_s = (0.5, 30.0)  # first and longest wait between two tries to reach Redis
    _withhold = _WithholdJobArguments()

    def __init__(self, queues: Any, *args: Any, context: JobContext | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", self.maintenance_every_s)
        super().__init__(queues, *args, **kwargs)
        self.context = context
        self.log.addFilter(self._withhold)  # once per logger: addFilter skips a filter it holds
        self._current: tuple[Job, Execution] | None = None
        self._current_lock = threading.Lock()
        self._beat_ok = time.monotonic()  # the last time a beat reached Redis
        self._beats_stop = threading.Event()

    # -- the beat thread -------------------------------------------------------------------------------

    def work(self, *args: Any, **kwargs: Any) -> bool:
        from worker.metrics import serve_worker_metrics

        serve_worker_metrics()  # TRIAGE_METRICS_PORT: this worker's /metrics (docs/observability.md)
        self._beats_stop.clear()
        beats = threading.Thread(target=self._beat_loop, name="triage-beat", daemon=True)
        beats.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self._beats_stop.set()
            beats.join(timeout=5)

    def _beat_loop(self) -> None:
        next_sweep, failing = 0.0, False
        while True:
            try:
                with self._current_lock:
                    if self._current is not None:
                        self.maintain_heartbeats(*self._current)
                self._beat_ok = time.monotonic()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.sweep_every_s
                    self.sweep()
                if failing:
                    self.log.info("Worker %s: Redis is back: heartbeats resumed", self.name)
                failing = False
            except RedisError as e:
                if not failing:
                    self.log.warning("Worker %s: heartbeat failed, Redis unreachable (%s): retrying every %g s",
                                     self.name, type(e).__name__, self.beat_every_s)
                failing = True
            except Exception:  # never let the beat thread die: a job without heartbeats runs twice
                self.log.exception("Worker %s: heartbeat failed", self.name)
            if self._beats_stop.wait(self.beat_every_s):
                return

    def beating(self) -> bool:
        """The last heartbeat reached Redis less than half a heartbeat TTL ago."""
        return time.monotonic() - self._beat_ok < self.job_heartbeat_ttl_s / 2

    def sweep(self) -> None:
        """If no other worker swept in the last sweep_every_s: run again the jobs of our queues whose
        worker died (RQ's StartedJobRegistry.cleanup), and enqueue the scheduled jobs (retries) overdue
        by more than `overdue_s`: RQ's scheduler runs in one worker at a time, and when that worker
        dies the others wait for its lock to expire."""
        names = ",".join(q.name for q in self.queues)
        if not self.connection.set(f"{PREFIX}:sweep:{names}", self.name, nx=True, ex=max(1, int(self.sweep_every_s))):
            return
        for queue in self.queues:
            queue.started_job_registry.cleanup()
            registry = queue.scheduled_job_registry
            for job_id in registry.get_jobs_to_schedule(int(time.time() - self.overdue_s)):
                if registry.remove(job_id):  # ours to enqueue (a scheduler coming back meanwhile: leases hold)
                    with contextlib.suppress(NoSuchJobError):
                        queue.enqueue_job(Job.fetch(job_id, connection=self.connection, serializer=self.serializer))
                        self.log.info("Worker %s: enqueued retry %s, overdue (no scheduler running)", self.name,
                                      job_id)

    def prepare_execution(self, job: Job) -> Execution:
        execution = super().prepare_execution(job)
        with self._current_lock:
            self._current = (job, execution)
        return execution

    def execute_job(self, job: Job, queue: Queue) -> None:
        token = _running.set(_Handover(self._context(), self.beating)) if self.context else None
        try:
            super().execute_job(job, queue)
        except RedisError as e:
            self.log.warning("Worker %s: Redis went away during job %s (%s); the job runs again once Redis is "
                             "back (nothing is written twice)", self.name, job.id, type(e).__name__)
            self.wait_for_redis()
        finally:
            with self._current_lock:
                self._current = None
            if token is not None:
                _running.reset(token)

    def _context(self) -> JobContext:
        assert self.context is not None
        return self.context

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """A job's execution lives this long without a heartbeat (the beat thread renews it)."""
        return self.job_heartbeat_ttl_s

    # -- riding out a Redis outage ---------------------------------------------------------------------

    def wait_for_redis(self) -> None:
        """Until Redis answers (or a stop is requested), with backoff; each wait in the log."""
        wait, longest = self.redis_wait_s
        while not self._stop_requested:
            try:
                self.connection.ping()
                self.log.info("Worker %s: Redis is back", self.name)
                return
            except RedisError as e:
                self.log.warning("Worker %s: Redis unreachable (%s): trying again in %.1f s", self.name,
                                 type(e).__name__, wait)
                time.sleep(wait)
                wait = min(wait * 2, longest)

    def check_for_suspension(self, burst: bool) -> None:
        # in an outage, the dequeue that follows meets it and waits for Redis (RQ's own backoff)
        with contextlib.suppress(RedisError):
            super().check_for_suspension(burst)

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance (its registries; a scheduler that died is started again), tolerating an
        outage. A scheduler of ours that died gives its locks back first, so it can start again now
        rather than when they expire."""
        try:
            scheduler = self.scheduler
            if scheduler is not None and self.last_cleaned_at is not None and (
                    scheduler._process is None or not scheduler._process.is_alive()):
                scheduler.release_locks()
            super().run_maintenance_tasks()
        except RedisError as e:
            self.log.warning("Worker %s: maintenance skipped, Redis unreachable (%s)", self.name, type(e).__name__)

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes at least every maintenance_every_s (RQ's default: every 405 s)."""
        return max(1, min(self.worker_ttl - 15, self.maintenance_every_s))

    # -- an outage: RQ's bookkeeping calls that must not raise ---------------------------------------

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat; in a Redis outage it is skipped (the beat thread and the dequeue loop
        report the outage and wait for Redis)."""
        with contextlib.suppress(RedisError):
            super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's set_state; in a Redis outage the state is not recorded (the next one is)."""
        with contextlib.suppress(RedisError):
            super().set_state(state, pipeline)
