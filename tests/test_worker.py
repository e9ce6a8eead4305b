"""TriageWorker's overrides of RQ, tested directly on a real Redis: the background heartbeat of the
job it runs, the sweep (dead workers' jobs, overdue retries), riding out a Redis outage (heartbeat and
set_state included), the log filter; and the account-wide 429 pause."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from worker.jobs import TriageWorker, _WithholdJobArguments
from worker.local_redis import LocalRedis
from worker.queueing import make_queue
from worker.store import AccountPause


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seconds, not TriageWorker's half minute (RQ scores a registry in whole seconds: 2 at least)."""
    monkeypatch.setattr(TriageWorker, "job_heartbeat_ttl_s", 2)
    monkeypatch.setattr(TriageWorker, "beat_every_s", 0.2)
    monkeypatch.setattr(TriageWorker, "sweep_every_s", 0.2)


def worker(redis: Redis, name: str = "w1") -> TriageWorker:
    return TriageWorker([make_queue(redis, "triage-test")], connection=redis, serializer=JSONSerializer, name=name)


def test_a_job_longer_than_its_heartbeat_ttl_is_kept_alive_and_not_run_twice(redis: Redis, quick: None) -> None:
    queue = make_queue(redis, "triage-test")
    job = queue.enqueue("time.sleep", 4.5, retry=None)  # over twice the heartbeat TTL
    scores: list[float] = []
    other = worker(redis, "w2")  # another worker's sweeps meanwhile

    def watch() -> None:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and job.get_status() != JobStatus.FINISHED:
            entries = redis.zrange(queue.started_job_registry.key, 0, -1, withscores=True)
            scores.extend(score - time.time() for _, score in entries)
            redis.delete("triage:sweep:triage-test")  # let it sweep every time
            other.sweep()
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    worker(redis).work(burst=True, logging_level="WARNING")
    watcher.join()
    assert job.get_status() == JobStatus.FINISHED and queue.count == 0
    assert len(scores) > 10 and min(scores) > 0  # the execution never expired while the job ran


def test_the_sweep_runs_a_dead_workers_job_again(redis: Redis, quick: None) -> None:
    queue = make_queue(redis, "triage-test")
    job = queue.enqueue("time.sleep", 0, retry=None)
    job.retries_left = 1
    job.save()
    dead = worker(redis, "dead")
    taken = queue.dequeue_any([queue], None, connection=redis, serializer=JSONSerializer)[0]
    dead.prepare_execution(taken)  # what SimpleWorker.execute_job does first ...
    dead.prepare_job_execution(taken)
    # ... and the worker dies here: nobody beats for it; its execution's TTL is 2 s
    assert queue.started_job_registry.count == 1
    worker(redis, "w2").sweep()
    assert queue.started_job_registry.count == 1  # not yet
    time.sleep(2.1)
    redis.delete("triage:sweep:triage-test")
    worker(redis, "w2").sweep()
    assert queue.started_job_registry.count == 0 and queue.job_ids == [job.id]  # queued again, at once


def test_the_sweep_enqueues_retries_no_scheduler_took(redis: Redis) -> None:
    queue = make_queue(redis, "triage-test")
    late = queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=30), "time.sleep", 0)
    soon = queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), "time.sleep", 0)  # the scheduler's
    worker(redis).sweep()
    assert queue.job_ids == [late.id] and queue.scheduled_job_registry.get_job_ids() == [soon.id]
    worker(redis, "w2").sweep()  # within sweep_every_s of the first: another worker does not sweep again
    assert queue.job_ids == [late.id]


def test_the_log_filter_withholds_a_failed_jobs_arguments() -> None:
    record = logging.LogRecord("rq.worker", logging.ERROR, __file__, 1, "job failed", None, None)
    record.arguments, record.kwargs = ('{"text": "my card 4111"}',), {"x": "y"}
    assert _WithholdJobArguments().filter(record)
    assert record.arguments == record.kwargs == "(withheld: ticket data)"


def test_short_heartbeat_ttl_and_an_idle_worker_wakes_for_maintenance(redis: Redis) -> None:
    w = worker(redis)
    job = make_queue(redis, "triage-test").enqueue("time.sleep", 0, job_timeout=1920)
    assert w.get_heartbeat_ttl(job) == TriageWorker.job_heartbeat_ttl_s  # not the job's 32 minutes
    assert w.dequeue_timeout <= TriageWorker.maintenance_every_s and w.maintenance_interval.__int__() <= 30


def test_a_worker_waits_for_redis_and_tolerates_it_gone_meanwhile(caplog: pytest.LogCaptureFixture) -> None:
    server = LocalRedis().start()
    try:
        redis = Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        w = worker(redis)
        w.redis_wait_s = (0.1, 0.4)
        server.stop()
        w.set_state("busy")  # neither raises in an outage
        w.heartbeat()
        w.check_for_suspension(burst=False)
        w.run_maintenance_tasks()
        threading.Timer(1.0, server.start).start()
        with caplog.at_level(logging.INFO, logger="rq.worker"):
            started = time.monotonic()
            w.wait_for_redis()
        assert time.monotonic() - started >= 0.9
        messages = [r.getMessage() for r in caplog.records]
        assert any("Redis unreachable (ConnectionError): trying again in" in m for m in messages)
        assert messages[-1].endswith("Redis is back")
        w.set_state("busy")  # not recorded during the outage: sent now
        assert redis.hget(w.key, "state") == b"busy"
    finally:
        server.close()


def test_a_429_pauses_the_account_for_every_worker(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AccountPause, "check_every_s", 0.0)
    mine, theirs = AccountPause(redis, max_wait_s=2), AccountPause(redis, max_wait_s=2)
    assert theirs.remaining("zendesk") == 0
    assert mine.hold("zendesk", 30) == 2  # capped
    assert 1.5 < theirs.remaining("zendesk") <= 2 and theirs.remaining("jira") == 0
    assert mine.hold("zendesk", 0.5) == pytest.approx(2, abs=0.1)  # a longer pause already set stays
    time.sleep(2.05)
    assert theirs.remaining("zendesk") == 0 and mine.remaining("zendesk") == 0
