"""End to end on Zendesk: signed webhook -> ingress -> Redis/RQ -> worker -> zenpy -> sandbox."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pipeline_support import (
    HEARTBEAT_TTL_S,
    RULES,
    SECRET,
    SWEEP_S,
    FixedScorer,
    drain,
    free_port,
    runtime,
    serve,
    settings,
    worker_env,
    worker_process_cmd,
)

from connectors.zendesk.sandbox import ZendeskSandbox
from connectors.zendesk.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from worker.dlq import list_failed, requeue
from worker.local_redis import LocalRedis
from worker.queueing import Enqueuer
from worker.settings import Secret
from worker.store import PREFIX


@pytest.fixture
def zd(zd: ZendeskSandbox) -> ZendeskSandbox:
    zd.add_group("Support")
    return zd


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return str(path)


@pytest.fixture
def stack(redis, redis_server, zd, rules_file):
    rt = runtime(settings(redis_server.url, rules_file, zd, api_keys=(Secret("k1"),)))
    server, url = serve(rt)
    with httpx.Client(base_url=url, timeout=10) as http:
        yield rt, http
    server.should_exit = True


def deliver(http: httpx.Client, zd: ZendeskSandbox, ticket_id: int, **kw) -> httpx.Response:
    body, headers = zd.signed_trigger(ticket_id, SECRET, **kw)
    return http.post("/webhooks/zendesk", content=body, headers=headers)


def notes(zd: ZendeskSandbox, ticket_id: int) -> list[dict]:
    return [c for c in zd.comments(ticket_id) if not c["public"] and c["author_id"] == zd.bot_user_id]


def puts(zd: ZendeskSandbox, ticket_id: int) -> int:
    return sum(1 for r in zd.requests if r.method == "PUT" and f"/tickets/{ticket_id}.json" in r.path)


def angry(zd: ZendeskSandbox, **kw) -> int:
    return zd.add_ticket("Checkout down", "Checkout is down since 9am, this is unacceptable",
                         requester="ops@northwind.example", tags=["enterprise"], channel="email", **kw)["id"]


def test_webhook_to_write_back(stack, zd):
    rt, http = stack
    tid = angry(zd)
    r = deliver(http, zd, tid)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    drain(rt)
    t = zd.tickets[tid]
    assert {"enterprise", "triage_sentiment_frustrated", "triage_urgency_high", "escalated"} <= set(t["tags"])
    assert t["priority"] == "urgent"
    [note] = notes(zd, tid)
    assert "sentiment: frustrated" in note["body"] and f"[triage:zendesk:{tid}:" in note["body"]


def test_duplicate_delivery_is_written_once(stack, zd):
    rt, http = stack
    tid = angry(zd)
    answers = [deliver(http, zd, tid).json()["status"] for _ in range(3)]
    assert answers == ["queued", "duplicate", "duplicate"]
    drain(rt)
    assert deliver(http, zd, tid).json()["status"] in ("done", "duplicate")  # a late redelivery
    drain(rt)
    assert puts(zd, tid) == 1 and len(notes(zd, tid)) == 1


def test_our_own_update_fires_no_new_job(stack, zd):
    rt, http = stack
    tid = angry(zd)
    fired = []
    zd.on_update = lambda ticket, audit: fired.append(ticket["id"])
    deliver(http, zd, tid)
    drain(rt)
    assert fired == [tid]
    # The trigger our update fires names the bot as current user: skipped, nothing queued.
    r = deliver(http, zd, tid, current_user_id=zd.bot_user_id)
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    assert rt.enqueuer.queue.count == 0


def test_new_customer_comment_is_triaged_again(stack, zd):
    rt, http = stack
    tid = zd.add_ticket("Question", "How do I export my data?", requester="a@b.example")["id"]
    deliver(http, zd, tid)
    drain(rt)
    assert "triage_sentiment_neutral" in zd.tickets[tid]["tags"]
    zd.add_comment(tid, "Still nothing, the export is broken and this is unacceptable")
    assert deliver(http, zd, tid).json()["status"] == "queued"
    drain(rt)
    tags = zd.tickets[tid]["tags"]
    assert "triage_sentiment_frustrated" in tags and "triage_sentiment_neutral" not in tags
    assert len(notes(zd, tid)) == 2


def test_priority_an_agent_set_is_kept(stack, zd):
    rt, http = stack
    tid = angry(zd)
    zd.edit_ticket(tid, priority="low")  # an agent's choice
    deliver(http, zd, tid)
    drain(rt)
    t = zd.tickets[tid]
    assert t["priority"] == "low" and "triage_urgency_high" in t["tags"]


def test_429_with_retry_after_is_retried(stack, zd):
    rt, http = stack
    tid = angry(zd)
    zd.fail_next(429, times=1, retry_after=1, method="PUT")
    deliver(http, zd, tid)
    started = time.monotonic()
    drain(rt)
    assert time.monotonic() - started >= 1.0  # waited what Retry-After said
    assert zd.tickets[tid]["priority"] == "urgent" and len(notes(zd, tid)) == 1


def test_5xx_forever_goes_to_the_dlq_and_requeue_succeeds(stack, zd, caplog):
    rt, http = stack
    tid = angry(zd)
    zd.fail_next(503, times=None, method="PUT")
    deliver(http, zd, tid)
    with caplog.at_level(logging.INFO):
        drain(rt)
    [failed] = list_failed(rt.enqueuer.queue)
    assert str(tid) in failed["description"] and "503" in failed["error"]
    assert "unacceptable" not in failed["error"]  # ticket text stays out of errors
    # and out of the logs (RQ attaches a failed job's arguments, our events, to its error record)
    failures = [r for r in caplog.records if r.name == "triage.worker" and r.levelno == logging.ERROR]
    assert failures and all("unacceptable" not in repr(vars(r)) for r in caplog.records)
    zd.clear_faults()
    requeue(rt.enqueuer.queue, [], everything=True)
    drain(rt)
    assert list_failed(rt.enqueuer.queue) == []
    assert zd.tickets[tid]["priority"] == "urgent" and len(notes(zd, tid)) == 1


def test_a_ticket_that_keeps_failing_does_not_hold_back_its_job_mates(stack, zd):
    rt, _ = stack
    ids = [angry(zd) for _ in range(3)]
    events = [rt.writers["zendesk"].fetch_event(t) for t in ids]
    assert rt.enqueuer.submit_many(events) == ["queued"] * 3 and rt.enqueuer.queue.count == 1  # one job
    zd.fail_next(503, times=None, method="PUT", path=rf"/tickets/{ids[1]}\.json$")
    drain(rt)  # the ticket is tried 4 times (TRIAGE_RETRY_INTERVALS 1,1,1), then waits in the DLQ alone
    [failed] = list_failed(rt.enqueuer.queue)
    assert failed["error"].startswith(f"1 ticket(s) not written back (zendesk:{ids[1]}:")
    assert failed["error"].endswith("(503 ServiceUnavailable) (4 tries)")
    assert failed["description"] == f"triage zendesk {ids[1]}" and puts(zd, ids[1]) == 4
    assert [puts(zd, t) for t in (ids[0], ids[2])] == [1, 1]  # the retries took only the failing ticket
    zd.clear_faults()
    requeue(rt.enqueuer.queue, [], everything=True)
    drain(rt)
    assert list_failed(rt.enqueuer.queue) == []
    assert [len(notes(zd, t)) for t in ids] == [1, 1, 1] and [puts(zd, t) for t in (ids[0], ids[2])] == [1, 1]


def test_a_429_sets_its_ticket_aside_and_the_job_writes_the_rest_first(stack, zd):
    rt, _ = stack
    ids = [angry(zd) for _ in range(3)]
    zd.fail_next(429, times=1, retry_after=1, method="PUT", path=rf"/tickets/{ids[1]}\.json$")
    rt.enqueuer.submit_many([rt.writers["zendesk"].fetch_event(t) for t in ids])
    drain(rt)
    assert [len(notes(zd, t)) for t in ids] == [1, 1, 1] and [puts(zd, t) for t in (ids[0], ids[2])] == [1, 1]
    assert list_failed(rt.enqueuer.queue) == [] and rt.enqueuer.queue.scheduled_job_registry.count == 0  # one job
    order = [(r.path, r.status) for r in zd.requests if r.method == "PUT"]
    assert order == [(f"/api/v2/tickets/{ids[0]}.json", 200), (f"/api/v2/tickets/{ids[1]}.json", 429),
                     (f"/api/v2/tickets/{ids[2]}.json", 200), (f"/api/v2/tickets/{ids[1]}.json", 200)]


def test_429s_never_spend_a_try(stack, zd):
    """Issue 15 §3: six 429s on one ticket, where 4 tries are all it has (TRIAGE_RETRY_INTERVALS 1,1,1):
    written once, its job-mates once, nothing in the DLQ; two in a row paused the account for all."""
    rt, _ = stack
    ids = [angry(zd) for _ in range(3)]
    zd.fail_next(429, times=6, retry_after=1, method="PUT", path=rf"/tickets/{ids[1]}\.json$")
    rt.enqueuer.submit_many([rt.writers["zendesk"].fetch_event(t) for t in ids])
    drain(rt, until=30)
    assert list_failed(rt.enqueuer.queue) == []
    assert [len(notes(zd, t)) for t in ids] == [1, 1, 1] and [puts(zd, t) for t in ids] == [1, 7, 1]
    statuses = [r.status for r in zd.requests if r.method == "PUT" and f"/tickets/{ids[1]}.json" in r.path]
    assert statuses == [429] * 6 + [200]


def test_a_ticket_that_fails_five_times_reaches_the_dlq_alone(stack, zd, redis):
    """Five tries with the default four intervals (here of a second): the 503 ticket alone is filed,
    with its error; its job-mates written once, their tries never counted."""
    rt, _ = stack
    rt.job_context.retry_intervals_s = (1, 1, 1, 1)
    ids = [angry(zd) for _ in range(4)]
    zd.fail_next(503, times=None, method="PUT", path=rf"/tickets/{ids[2]}\.json$")
    rt.enqueuer.submit_many([rt.writers["zendesk"].fetch_event(t) for t in ids])
    drain(rt, until=30)
    [failed] = list_failed(rt.enqueuer.queue)
    assert failed["description"] == f"triage zendesk {ids[2]}" and failed["error"].endswith("(5 tries)")
    assert [puts(zd, t) for t in ids] == [1, 1, 5, 1] and [len(notes(zd, t)) for t in ids] == [1, 1, 0, 1]
    assert rt.enqueuer.job_of(f"zendesk:{ids[2]}:" + rt.writers["zendesk"].fetch_event(ids[2]).revision) == failed["id"]


def test_403_on_one_ticket_leaves_its_job_mates_written(stack, zd):
    rt, _ = stack
    ids = [angry(zd) for _ in range(3)]
    zd.fail_next(403, times=None, method="PUT", path=rf"/tickets/{ids[0]}\.json$")
    rt.enqueuer.submit_many([rt.writers["zendesk"].fetch_event(t) for t in ids])
    drain(rt)
    assert [len(notes(zd, t)) for t in ids] == [0, 1, 1]
    [failed] = list_failed(rt.enqueuer.queue)  # at once: retrying cannot help
    assert f"zendesk:{ids[0]}:" in failed["error"] and "403" in failed["error"] and puts(zd, ids[0]) == 1


def test_401_stops_the_job_and_says_which_credential(stack, zd):
    rt, _ = stack
    ids = [angry(zd) for _ in range(3)]
    zd.fail_next(401, times=None, method="PUT")
    rt.enqueuer.submit_many([rt.writers["zendesk"].fetch_event(t) for t in ids])
    drain(rt)
    assert [puts(zd, t) for t in ids] == [1, 0, 0]  # the other two were not tried with a rejected token
    [failed] = list_failed(rt.enqueuer.queue)
    assert failed["error"].startswith("3 ticket(s) not written back") and puts(zd, ids[0]) == 1
    assert "ZENDESK_EMAIL / ZENDESK_API_TOKEN" in failed["error"]
    zd.clear_faults()
    requeue(rt.enqueuer.queue, [], everything=True)  # once the token is fixed
    drain(rt)
    assert [len(notes(zd, t)) for t in ids] == [1, 1, 1]


def test_a_revision_in_two_jobs_is_written_once(stack, zd):
    # The jobs run one after the other here; test_triage_core shows two at once (the lease).
    rt, _ = stack
    tid = angry(zd)
    event = rt.writers["zendesk"].fetch_event(tid)
    rt.enqueuer._enqueue([event, event])  # a job that has it twice (the enqueuer never does that)
    rt.enqueuer._enqueue([event])  # as if two ingress processes had raced past the queued check
    drain(rt)
    assert puts(zd, tid) == 1 and len(notes(zd, tid)) == 1


def test_bad_credentials_stop_with_a_clear_error(stack, zd):
    rt, http = stack
    tid = angry(zd)
    zd.fail_next(401, times=None)
    deliver(http, zd, tid)
    drain(rt)
    [failed] = list_failed(rt.enqueuer.queue)
    assert "ZENDESK_API_TOKEN" in failed["error"]
    assert sum(1 for r in zd.requests if f"/tickets/{tid}.json" in r.path) == 1  # the PUT, not retried


def kill_worker_at_write_back(rt, zd: ZendeskSandbox, hang_on: int) -> list[int]:
    """Start a worker process; the sandbox applies each update it gets, and holds its answer to the
    one for ticket `hang_on`, where the worker is killed. Returns the tickets whose updates applied."""
    applied: list[int] = []

    def hang(ticket, audit):
        applied.append(ticket["id"])
        if ticket["id"] == hang_on:
            time.sleep(30)

    zd.on_update = hang
    proc = subprocess.Popen(worker_process_cmd(), env=worker_env(rt.settings, zd))
    deadline = time.monotonic() + 30
    while hang_on not in applied and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    zd.on_update = None
    assert hang_on in applied, "the worker never reached that write-back"
    return applied


def drain_after_dead_worker(rt) -> None:
    """Wait out the dead worker's job heartbeat, then drain: the new worker's sweep gives it the job."""
    time.sleep(HEARTBEAT_TTL_S + 0.5)
    drain(rt)


def test_worker_killed_mid_job_writes_back_exactly_once(stack, zd):
    rt, http = stack
    tid = angry(zd)
    deliver(http, zd, tid)
    assert kill_worker_at_write_back(rt, zd, hang_on=tid) == [tid]  # applied; the worker never heard back
    assert len(notes(zd, tid)) == 1
    drain_after_dead_worker(rt)
    assert len(notes(zd, tid)) == 1 and zd.tickets[tid]["priority"] == "urgent"
    assert list_failed(rt.enqueuer.queue) == []


def test_worker_killed_before_recording_its_job_writes_nothing_twice(stack, zd):
    """A job records its tickets at its end: a worker that dies after writing two of three leaves
    them leased to the job; its next run finds their notes and writes only the third."""
    rt, _ = stack
    ids = [angry(zd) for _ in range(3)]
    events = [rt.writers["zendesk"].fetch_event(t) for t in ids]
    Enqueuer(rt.enqueuer.queue, (1, 1, 1), job_timeout_s=2).submit_many(events)  # as the worker's settings say
    assert kill_worker_at_write_back(rt, zd, hang_on=ids[2]) == ids
    assert not any(rt.redis.exists(f"{PREFIX}:done:{e.key}") for e in events)  # written, not recorded
    drain_after_dead_worker(rt)
    # the third PUT is still hanging in the sandbox (it is recorded when answered): none was sent again
    assert [len(notes(zd, t)) for t in ids] == [1, 1, 1] and [puts(zd, t) for t in ids[:2]] == [1, 1]
    assert sum(1 for r in zd.requests if r.method == "PUT") == 2
    assert list_failed(rt.enqueuer.queue) == []


def test_redis_down_answers_503_and_nothing_is_lost(zd, rules_file):
    server = LocalRedis(appendonly=True).start()
    try:
        rt = runtime(settings(server.url, rules_file, zd))
        http_server, url = serve(rt)
        with httpx.Client(base_url=url, timeout=10) as http:
            before = [angry(zd) for _ in range(2)]
            assert all(deliver(http, zd, t).status_code == 202 for t in before)
            server.stop()
            during = angry(zd)
            r = deliver(http, zd, during)
            assert r.status_code == 503 and r.headers["Retry-After"]
            assert http.get("/readyz").status_code == 503
            server.start()
            assert deliver(http, zd, during).status_code == 202  # Zendesk's retry
            drain(rt)
            for t in [*before, during]:
                assert zd.tickets[t]["priority"] == "urgent" and len(notes(zd, t)) == 1
        http_server.should_exit = True
    finally:
        server.close()


@pytest.mark.parametrize("case, status", [
    ("no signature", 401), ("wrong signature", 401), ("stale", 401), ("not json", 400),
    ("not a ticket", 422), ("too big", 413),
])
def test_bad_requests_get_a_clear_answer(stack, zd, case, status):
    _, http = stack
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = b'{"kind": "helpdesk-triage/zendesk-trigger/v1", "ticket": {}}'
    if case == "not json":
        body = b"{not json"
    if case == "too big":
        body = b"x" * 1_100_000
    headers = {SIGNATURE_HEADER: sign(SECRET, ts, body), TIMESTAMP_HEADER: ts}
    if case == "no signature":
        headers.pop(SIGNATURE_HEADER)
    if case == "wrong signature":
        headers[SIGNATURE_HEADER] = sign("other-secret", ts, body)
    if case == "stale":
        old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
        headers = {SIGNATURE_HEADER: sign(SECRET, old, body), TIMESTAMP_HEADER: old}
    r = http.post("/webhooks/zendesk", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_health_and_scoring_api(stack):
    rt, http = stack
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz").json()
    assert ready["ready"] and ready["checks"]["model"].startswith("ok")
    assert http.post("/v1/score", json={"texts": ["x"]}).status_code == 401
    r = http.post("/v1/score", json={"texts": ["the site is down", "thanks!"]}, headers={"X-API-Key": "k1"})
    assert r.status_code == 200, r.text
    assert [x["sentiment"]["label"] for x in r.json()["results"]] == ["frustrated", "satisfied"]
    assert http.post("/v1/score", json={"texts": []}, headers={"X-API-Key": "k1"}).status_code == 422
    assert "/v1/score" in http.get("/openapi.json").json()["paths"]


def start_serve(s, zd, processes: int) -> tuple[subprocess.Popen, int, list[str]]:
    """`triage serve --processes N` (the real CLI and model), once every process listens: the
    process, its port and the pids of its ingress processes (none when N is 1: it serves itself)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--processes", str(processes)], env=worker_env(s, zd), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    listening = 0  # the parent checks settings, model and credentials, then each process listens
    deadline = time.monotonic() + 120
    while listening < processes and time.monotonic() < deadline and proc.poll() is None:
        listening += " listening on " in proc.stdout.readline()  # type: ignore[union-attr]
    assert listening == processes, f"serve did not start its processes (exit status {proc.poll()})"
    children = [c for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]  # not multiprocessing's tracker
    return proc, port, children


@pytest.mark.parametrize("processes", [1, 2])
def test_serve_takes_webhooks_in_one_or_more_processes(redis, redis_server, zd, rules_file, processes):
    proc, port, children = start_serve(settings(redis_server.url, rules_file, zd), zd, processes)
    try:
        assert len(children) == (processes if processes > 1 else 0)
        tickets = [angry(zd) for _ in range(20)]
        answers = []
        for tid in tickets:  # one connection each: the kernel spreads them over both processes
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                answers.append(deliver(http, zd, tid).json()["status"])
        assert answers == ["queued"] * 20
        assert redis.llen("rq:queue:triage-test") == 20
    finally:
        proc.terminate()  # one process ends by the signal after a graceful shutdown, as uvicorn does
        assert proc.wait(timeout=20) == (0 if processes > 1 else -signal.SIGTERM)
    assert all(not Path(f"/proc/{c}").exists() for c in children)


def test_serve_stops_when_one_process_dies(redis, redis_server, zd, rules_file):
    """Then whatever runs `triage serve` (compose, Kubernetes) restarts it whole."""
    proc, _, children = start_serve(settings(redis_server.url, rules_file, zd), zd, 2)
    try:
        os.kill(int(children[0]), signal.SIGKILL)
        assert proc.wait(timeout=20) == 1
        assert "exited with status -9: stopping the others" in proc.stdout.read()  # type: ignore[union-attr]
        assert not Path(f"/proc/{children[1]}").exists()
    finally:
        proc.kill()


def test_serve_refuses_zero_processes():
    out = subprocess.run([sys.executable, "-m", "worker.cli", "serve", "--processes", "0"], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "expected a whole number of 1 or more, got '0'" in out.stderr


def test_serve_on_a_busy_port_says_so(redis_server, zd, rules_file):
    s = settings(redis_server.url, rules_file, zd)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for processes in ("1", "2"):
            out = subprocess.run([sys.executable, "-m", "worker.cli", "serve", "--host", "127.0.0.1", "--port",
                                  str(port), "--processes", processes], env=worker_env(s, zd), capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 1
            assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr


def test_a_worker_killed_mid_16_ticket_job_is_finished_by_the_other_within_the_bound(stack, zd):
    """Issue 15 §2: the survivor's sweep finds the dead worker's job once its heartbeat (kept by a
    background thread, short TTL) runs out, and RQ runs it again; each ticket written once. The
    bound is the heartbeat TTL + the sweep interval + the first retry interval (+ start-up slack);
    here in seconds, TriageWorker's defaults make it about a minute."""
    rt, _ = stack
    ids = [angry(zd) for _ in range(16)]
    events = [rt.writers["zendesk"].fetch_event(t) for t in ids]
    Enqueuer(rt.enqueuer.queue, (1, 1, 1), job_timeout_s=2).submit_many(events)  # one job, as the workers' settings
    assert rt.enqueuer.queue.count == 1
    applied = kill_worker_at_write_back(rt, zd, hang_on=ids[7])
    killed_at = time.monotonic()
    assert applied == ids[:8]
    survivor = subprocess.Popen(worker_process_cmd(burst=False, scheduler=True), env=worker_env(rt.settings, zd))
    try:
        deadline = killed_at + 60
        while time.monotonic() < deadline and not all(notes(zd, t) for t in ids):
            time.sleep(0.1)
        took = time.monotonic() - killed_at
        assert all(notes(zd, t) for t in ids), "the survivor did not finish the dead worker's job"
        bound = HEARTBEAT_TTL_S + SWEEP_S + 1 + 10  # + a worker process's start-up (imports) on a busy machine
        assert took < bound, f"{took:.1f} s after the kill"
        time.sleep(1)  # a second write would show now
        assert [len(notes(zd, t)) for t in ids] == [1] * 16
        # the 8th PUT still hangs in the sandbox (recorded when answered): none was sent again
        assert [puts(zd, t) for t in ids[:7] + ids[8:]] == [1] * 15 and puts(zd, ids[7]) == 0
        assert list_failed(rt.enqueuer.queue) == [] and survivor.poll() is None
    finally:
        survivor.terminate()
        survivor.wait(timeout=20)


class CannotEncode(FixedScorer):
    """As the tokenizer does with a text it cannot encode (issue 20 §1: a lone surrogate)."""

    def score(self, texts):
        if any("#unencodable" in t for t in texts):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
        return super().score(texts)


@pytest.mark.parametrize("where", ["scoring", "write-back"])
def test_any_exception_on_one_ticket_fails_it_alone(stack, zd, where):
    """Issue 20 §1: what one ticket raises (here the model, or a connector's bug in the write-back)
    fails that ticket alone: its job-mates are written once; it is tried again on its own and
    reaches the DLQ by itself with the error's type and place (never the ticket's text)."""
    rt, _ = stack
    ids = [angry(zd) for _ in range(2)]
    ids.insert(1, zd.add_ticket("Checkout down #unencodable", "Checkout is down, unacceptable",
                                requester="a@b.example")["id"])
    ids.append(angry(zd))
    if where == "scoring":
        rt.model_thread.scorer = CannotEncode()
    else:
        writer = rt.writers["zendesk"]
        apply = writer.apply

        def buggy(event, decision):
            if event.ticket_id == str(ids[1]):
                raise KeyError("custom_fields")
            return apply(event, decision)

        writer.apply = buggy
    rt.enqueuer.submit_many([rt.writers["zendesk"].fetch_event(t) for t in ids])
    assert rt.enqueuer.queue.count == 1
    drain(rt, until=30)
    assert [len(notes(zd, t)) for t in ids] == [1, 0, 1, 1] and [puts(zd, t) for t in (ids[0], *ids[2:])] == [1] * 3
    [failed] = list_failed(rt.enqueuer.queue)
    expected = "TypeError at" if where == "scoring" else "KeyError at"
    assert failed["description"] == f"triage zendesk {ids[1]}" and expected in failed["error"]
    assert failed["error"].endswith("(4 tries)") and "unacceptable" not in failed["error"]


def test_a_worker_rides_out_a_redis_outage_and_scheduled_retries_run_after_it(zd, rules_file, tmp_path):
    """Issue 20 §5: Redis goes away while the worker is mid-job and while a retry is scheduled. The
    worker keeps running (it waits for Redis with backoff and says so), its RQ scheduler is started
    again once Redis is back, the retry runs, the cut-short job runs again; each ticket written once."""
    server = LocalRedis(appendonly=True).start()
    log_path = tmp_path / "worker.log"
    proc = None
    try:
        rt = runtime(settings(server.url, rules_file, zd))
        first, hung, last = angry(zd), angry(zd), angry(zd)
        zd.fail_next(503, times=1, method="PUT", path=rf"/tickets/{first}\.json$")
        applied: list[int] = []

        def hang(ticket, audit):
            applied.append(ticket["id"])
            if ticket["id"] == hung:
                time.sleep(4)  # the worker waits for this answer while Redis goes away

        zd.on_update = hang
        env = {**worker_env(rt.settings, zd), "TRIAGE_RETRY_INTERVALS": "5,5,5"}
        # maintenance every 2 s; the sweep's own enqueueing of overdue retries out of the way: the scheduler must
        extra = "TriageWorker.maintenance_every_s, TriageWorker.overdue_s = 2, 600"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(worker_process_cmd(burst=False, scheduler=True, extra=extra), env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        rt.enqueuer.submit(rt.writers["zendesk"].fetch_event(first))  # fails once: its retry is due in 5 s
        deadline = time.monotonic() + 30
        while not any(r.status == 503 for r in zd.requests) and time.monotonic() < deadline:
            time.sleep(0.05)
        rt.enqueuer.submit_many([rt.writers["zendesk"].fetch_event(t) for t in (hung, last)])
        while hung not in applied and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hung in applied, "the worker never reached the second job"
        server.stop()  # mid-job, and before the retry is due
        time.sleep(7)
        assert proc.poll() is None, log_path.read_text()
        server.start()
        back = time.monotonic()
        while not all(notes(zd, t) for t in (first, hung, last)) and time.monotonic() < back + 30:
            time.sleep(0.1)
        took = time.monotonic() - back
        assert all(notes(zd, t) for t in (first, hung, last)), log_path.read_text()[-3000:]
        time.sleep(1)
        assert [len(notes(zd, t)) for t in (first, hung, last)] == [1, 1, 1]
        assert puts(zd, first) == 2 and puts(zd, last) == 1  # hung's PUT applied once, answered late
        assert proc.poll() is None and took < 20
        text = log_path.read_text()
        assert "Redis went away during job" in text and "Redis is back" in text
        assert "found an unhandled exception" not in text
    finally:
        zd.on_update = None
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        server.close()
