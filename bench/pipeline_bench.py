"""Pipeline throughput and latency: signed Zendesk (or Jira) webhooks -> `triage serve` -> Redis/RQ ->
`triage worker` x W -> zenpy (or `jira` client) write-back into the Zendesk (or Jira Service Management)
sandbox, all on this machine. --helpdesk zendesk|jira|both (default both) picks the sandboxes; each
phase below runs once per helpdesk.

  1. ingress alone   a fresh Redis and `triage serve --processes P` for each P in --serve-processes
                     (default 1 and 2), no worker: N signed webhooks plus dup-rate x N repeated
                     deliveries (shuffled in) from C keep-alive connections; accepted/s,
                     p50/p95/p99 latency, statuses.                            Target >= 500/s, p99 < 50 ms
  2. end to end      per W in --workers: fresh Redis, sandbox tickets, `triage serve` and W `triage
                     worker` processes (TRIAGE_MODEL_THREADS=1, rules deploy/rules.example.yaml), then
                     the same deliveries as fast as the ingress takes them. Checks every ticket got
                     exactly one PUT, one bot note and one applied update (Jira: one labels/priority
                     PUT, one internal bot comment, one bot change of each kind); receipt (first delivery
                     sent) -> write-back (the sandbox applied the PUT; Jira: the note, written last)
                     latency; tickets/s = tickets / (last write-back - first send). Beside it the
                     model runtime alone on the same texts (TriageModel(threads=1, batch_size=1).score
                     in W processes, wall of the slowest), run just before and just after, and the
                     ratio e2e / model (their mean). --repeat R: R rounds, median ratio.  Target >= 0.7
                     Also the CPU each process spent per ticket (workers, ingress, Redis, this process)
                     beside the model's own CPU per text: where the time goes when the CPUs are full.
  3. paced           per W, the same stack fed at --paced-load x phase 2's tickets/s (default half)
                     from an open-loop sender: receipt -> write-back latency when the queue is not backed
                     up (in a burst, latency is mostly time spent queued)
  4. faults          (--faults, Zendesk, instead of 1-3) the burst of phase 2 with --fault-workers W
                     (default 2) while the sandbox answers --fault-rate (default 20%) of the ticket PUTs
                     429 (Retry-After 1) or 503, half each, at random; once a quarter of the tickets are
                     written one worker is SIGKILLed (its process group: its RQ scheduler too). Checks
                     every ticket written exactly once and the DLQ empty; reports the time to the last
                     write-back, the time from the kill to the last write-back of the dead worker's job,
                     the faults injected and the longest run of 503s on one ticket (5 is the only way
                     into the DLQ). Workers run with TRIAGE_RETRY_INTERVALS=--fault-retry-intervals.
Texts: ticket-length real posts (bench/model_bench.py's load_texts, 40-128 tokens); a ticket's subject
(Jira: summary, the text its description) is its text's first words, so the text the worker scores
is the text the model run scores (Jira renders the wiki markup of some posts: the summary counts them).
The load generator and the sandboxes (ThreadingHTTPServer) run in this process and share the CPUs
with the ingress, Redis and the workers. Run it on an otherwise idle machine:

  python bench/pipeline_bench.py                    # 2,000 tickets + 10% duplicates; W = 1 and 2
  python bench/pipeline_bench.py --quick            # smoke run: 200 tickets
  python bench/pipeline_bench.py --helpdesk jira    # Jira Service Management only
  python bench/pipeline_bench.py --vendor-latency-ms 150 --workers 1,2,4,8 --tickets 400   # a helpdesk 150 ms away
  python bench/pipeline_bench.py --faults           # phase 4: 429s, 503s and a killed worker
Results: Markdown on stdout, JSON in bench/out/pipeline_bench.json, process logs in
bench/out/pipeline_bench_logs/. Exit status 1 when a ticket was not written back exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from model_bench import cpu_name, load_texts  # bench/ is on sys.path when run as a script; adds REPO
from redis import Redis
from rq import Worker
from rq.job import Job

from connectors.jira import normalize as jira_normalize
from connectors.jira.sandbox import JiraSandbox
from connectors.sandbox_http import Fault
from connectors.zendesk import normalize
from connectors.zendesk.sandbox import ZendeskSandbox
from model.textprep import ticket_text
from worker.local_redis import LocalRedis, free_port
from worker.queueing import make_queue

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "rules.example.yaml"
HOST, QUEUE, SECRET = "127.0.0.1", "triage-bench", "bench-webhook-secret"
EMAIL, TOKEN = "triage-bot@example.com", "bench-token"
TICKET_PUT = re.compile(r"/api/v2/tickets/(\d+)\.json$")
ISSUE_PUT = re.compile(r"/rest/api/3/issue/([^/]+)$")
HELPDESKS = ("zendesk", "jira")
T0 = time.perf_counter()

MODEL_PROC = """
import json, sys, time
from model.runtime import TriageModel
texts = json.load(open(sys.argv[2]))
m = TriageModel(sys.argv[1], threads=1, batch_size=1)
m.score(texts[:32])
print("ready", flush=True)
sys.stdin.readline()
t, c = time.perf_counter(), time.process_time()
m.score(texts)
print(json.dumps({"n": len(texts), "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}), flush=True)
"""


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU time of a process (None: this one, all threads), or None where /proc has none."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float, scale: float = 1.0) -> float | None:
    return round(scale * float(np.percentile(xs, q)), 2) if xs else None


class Stack:
    """One phase: a Redis, a sandbox Zendesk or Jira, `triage serve` and workers. close() ends all of them."""

    def __init__(self, name: str, model_dir: Path, logs: Path, helpdesk: str = "zendesk", delivery: str = "event",
                 latency_s: float = 0.0, serve_processes: int = 1):
        self.serve_processes = serve_processes  # `triage serve --processes`
        self.delivery = delivery  # Zendesk: event-subscribed webhook or the trigger body
        self.latency_s = latency_s  # added to each sandbox answer
        self.name, self.model_dir, self.logs, self.helpdesk = name, model_dir, logs, helpdesk
        self.tmp = tempfile.mkdtemp(prefix="pipeline-bench-")  # cwd of the processes: no stray .env
        self.procs: list[tuple[str, subprocess.Popen]] = []
        # (ticket id or issue key, what, perf_counter) per change the sandbox applied: Zendesk "update";
        # Jira the bot's webhook events (jira:issue_updated for the edit, comment_created for the note)
        self.changes: list[tuple[int | str, str, float]] = []
        self.redis: LocalRedis | None = None
        self.zd: ZendeskSandbox | None = None
        self.jira: JiraSandbox | None = None
        self.extra_env: dict[str, str] = {}  # for the workers and the ingress (phase 4's retry intervals)
        self.killed: set[str] = set()  # processes killed on purpose (phase 4)

    def __enter__(self) -> Stack:
        try:
            self.redis = LocalRedis().start()
            if self.helpdesk == "jira":
                self.jira = JiraSandbox(email=EMAIL, token=TOKEN).start()
                self.jira.latency_s = self.latency_s
                self.jira.add_project("SUP", "Support")  # a service desk: notes are JSM internal comments
                self.jira.on_change = lambda p: self.changes.append(
                    (p["issue"]["key"], p["webhookEvent"], time.perf_counter()))
            else:
                self.zd = ZendeskSandbox(email=EMAIL, token=TOKEN).start()
                self.zd.latency_s = self.latency_s
                for group in ("Escalations", "Billing"):  # the groups rules.example.yaml routes to
                    self.zd.add_group(group)
                self.zd.on_update = lambda ticket, _: self.changes.append((ticket["id"], "update", time.perf_counter()))
            self.queue = make_queue(Redis.from_url(self.redis.url, socket_timeout=10), QUEUE)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                p.terminate()  # RQ: warm shutdown; uvicorn: graceful
        for name, p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: {name} (pid {p.pid}) did not stop in 10 s: killing its process group")
                os.killpg(p.pid, signal.SIGKILL)  # its own session (start_new_session): RQ's scheduler too
                p.wait(timeout=10)
        self.procs.clear()
        for sandbox in (self.zd, self.jira):
            if sandbox is not None:
                sandbox.stop()
        if self.redis is not None:
            self.redis.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def sandbox(self) -> ZendeskSandbox | JiraSandbox:
        sandbox = self.jira or self.zd
        assert sandbox is not None
        return sandbox

    @property
    def bot(self) -> int | str:
        return self.jira.bot_account_id if self.jira else self.zd.bot_user_id  # type: ignore[union-attr]

    def env(self) -> dict[str, str]:
        assert self.redis
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "JIRA_"))}
        if self.jira:  # deploy/env.example's JIRA_*; no JIRA_GROUP_FIELD: the sandbox's select list lacks the
            # rules' Escalations, and a refused value costs a second PUT; `group` is left to the note
            vendor = {"JIRA_URL": self.jira.url, "JIRA_EMAIL": EMAIL, "JIRA_API_TOKEN": TOKEN,
                      "JIRA_WEBHOOK_SECRET": SECRET, "JIRA_BOT_ACCOUNT_ID": self.jira.bot_account_id}
        else:
            assert self.zd
            vendor = {**self.zd.env, "ZENDESK_SUBDOMAIN": "sandbox", "ZENDESK_EMAIL": EMAIL,
                      "ZENDESK_API_TOKEN": TOKEN, "ZENDESK_WEBHOOK_SECRET": SECRET,
                      "ZENDESK_BOT_USER_ID": str(self.zd.bot_user_id)}
        return {**base, **vendor, "PYTHONPATH": str(REPO), "REDIS_URL": self.redis.url, "TRIAGE_RULES": str(RULES),
                "TRIAGE_MODEL_DIR": str(self.model_dir), "TRIAGE_MODEL_THREADS": "1", "TRIAGE_QUEUE": QUEUE,
                "TRIAGE_LOG_LEVEL": "INFO", **self.extra_env}

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        path = self.logs / f"{self.name}-{name}.log"
        with path.open("wb") as out:  # the child keeps its own descriptor
            p = subprocess.Popen([sys.executable, "-m", "worker.cli", *args], cwd=self.tmp, env=self.env(),
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # Ctrl-C reaches us; close() stops them in order
        self.procs.append((name, p))
        return p

    def cpu(self) -> dict[str, float | None]:
        """CPU seconds so far per role: the workers, the ingress, Redis, and this process (the load
        generator and the sandbox helpdesk)."""
        workers = [cpu_seconds(p.pid) for name, p in self.procs if name.startswith("worker")]
        ingress = [cpu_seconds(p.pid) for name, p in self.procs if name == "ingress"]
        redis = self.redis.proc.pid if self.redis and self.redis.proc else None
        return {"workers": None if None in workers else sum(workers),  # type: ignore[arg-type]
                "ingress": ingress[0] if ingress else None, "redis": cpu_seconds(redis) if redis else None,
                "bench (load + sandbox)": cpu_seconds()}

    def check_alive(self) -> None:
        for name, p in self.procs:
            if p.poll() is not None and name not in self.killed:
                tail = (self.logs / f"{self.name}-{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with status {p.returncode}:\n{tail}")

    def add_tickets(self, items: list[tuple[str, str]]) -> list:
        if self.jira:  # on the portal, request type "Get IT help", priority Medium (the default)
            return [self.jira.add_issue("SUP", subject, text, reporter=f"customer{i % 40}@example.com")
                    for i, (subject, text) in enumerate(items)]
        assert self.zd
        return [self.zd.add_ticket(subject, text, requester=f"customer{i % 40}@example.com",
                                   channel=("web", "email")[i % 2])["id"] for i, (subject, text) in enumerate(items)]

    def scored_texts(self, ids: list) -> list[str]:
        """What the worker will score for each ticket (the trigger or webhook payload, normalised)."""
        if self.jira:
            jira = self.jira
            events = [jira_normalize.parse(jira.webhook_payload(k), jira.bot_account_id).event for k in ids]
        else:
            assert self.zd
            events = [normalize.parse(self.zd.trigger_payload(t), str(self.zd.bot_user_id)).event for t in ids]
        return [ticket_text(e.subject, e.text) if e else "" for e in events]

    def start_ingress(self) -> int:
        port = free_port()
        self.spawn("ingress", "serve", "--host", HOST, "--port", str(port), "--processes", str(self.serve_processes))
        self.ingress_port = port
        return port

    def wait_ready(self, workers: int, timeout: float = 180.0) -> None:
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                conn = http.client.HTTPConnection(HOST, self.ingress_port, timeout=2)
                conn.request("GET", "/healthz")
                ingress_up = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ingress_up = False
            # each of the `--processes N` says when it listens: a burst must not find only some of them
            listening = (self.logs / f"{self.name}-ingress.log").read_text().count(" listening on ")
            ingress_up = ingress_up and listening >= self.serve_processes
            if ingress_up and Worker.count(queue=self.queue) >= workers:  # registered after the model loaded
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: ingress or {workers} worker(s) not ready in {timeout:.0f} s")

    def request(self, ticket_id: int | str, by_bot: bool = False) -> bytes:
        """A signed delivery (Zendesk event webhook ticket.created, or the trigger body; Jira admin webhook
        jira:issue_created, X-Hub-Signature); by_bot: as if the bot had acted, which the ingress skips."""
        if self.jira:
            body, headers = self.jira.signed_webhook(str(ticket_id), SECRET, user=self.bot if by_bot else None)
        else:
            assert self.zd
            bot = self.zd.bot_user_id if by_bot else None
            body, headers = (self.zd.signed_event(int(ticket_id), SECRET, actor_id=bot) if self.delivery == "event"
                             else self.zd.signed_trigger(int(ticket_id), SECRET, current_user_id=bot))
        head = (f"POST /webhooks/{self.helpdesk} HTTP/1.1\r\nHost: {HOST}:{self.ingress_port}\r\n"
                f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()))
        return head.encode() + b"\r\n" + body


# -- load generator: raw HTTP/1.1 over keep-alive connections, one event loop --------------------------
def _head(raw: bytes) -> tuple[int, int, bool]:
    lines = raw.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    return int(lines[0].split()[1]), int(headers.get("content-length", 0)), headers.get("connection") == "close"


async def _send(port: int, reqs: list[bytes], concurrency: int, timeout: float = 10.0) -> list[tuple]:
    """Send every request; per request (send time, latency s, HTTP status or 0, answer's status/error)."""
    results: list[tuple] = [()] * len(reqs)
    todo = iter(range(len(reqs)))

    async def client() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            for i in todo:
                t0 = time.perf_counter()
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
                        t0 = time.perf_counter()
                    reader, writer = conn
                    writer.write(reqs[i])
                    code, length, close = _head(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout))
                    answer = json.loads(await asyncio.wait_for(reader.readexactly(length), timeout) or b"{}")
                    results[i] = (t0, time.perf_counter() - t0, code, answer.get("status") or "error")
                    if close:
                        writer.close()
                        conn = None
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
                    results[i] = (t0, time.perf_counter() - t0, 0, type(e).__name__)
                    if conn:
                        conn[1].close()
                    conn = None
        finally:
            if conn:
                conn[1].close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results


async def _send_paced(port: int, reqs: list[bytes], rate: float) -> list[tuple]:
    """Open loop: request i leaves at start + i / rate on its own connection, whatever came back."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int) -> tuple:
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        return (await _send(port, [reqs[i]], 1))[0]

    return list(await asyncio.gather(*(one(i) for i in range(len(reqs)))))


def deliveries(st: Stack, ids: list, dup_rate: float, seed: int) -> tuple[list[bytes], list]:
    """One signed delivery per ticket plus round(dup_rate x N) repeats of random tickets, shuffled."""
    rng = random.Random(seed)
    owners = ids + [rng.choice(ids) for _ in range(round(dup_rate * len(ids)))]
    rng.shuffle(owners)
    first = {t: st.request(t) for t in ids}  # a repeat is the same delivery again, as Zendesk/Jira retry it
    return [first[t] for t in owners], owners


def deliver(st: Stack, ids: list, args: argparse.Namespace,
            rate: float | None = None) -> tuple[list[tuple], list, float]:
    warm = [st.request(t, by_bot=True) for t in ids[:20]]
    asyncio.run(_send(st.ingress_port, warm, min(4, args.concurrency)))  # 200 skipped: nothing queued
    reqs, owners = deliveries(st, ids, args.dup_rate, args.seed)
    # The sandbox answers from this process, whose heap grows phase after phase: a full garbage
    # collection of it stalled the sandbox ~0.3 s at a time (paced p95 54-94 ms instead of 17-19).
    gc.collect()
    gc.freeze()
    how = f"paced at {rate:.1f}/s" if rate else f"{args.concurrency} concurrent"
    log(f"{st.name}: sending {len(reqs)} signed deliveries ({len(reqs) - len(ids)} repeats), {how}")
    started = time.perf_counter()
    results = asyncio.run(_send_paced(st.ingress_port, reqs, rate) if rate
                          else _send(st.ingress_port, reqs, args.concurrency))
    wall = time.perf_counter() - started
    log(f"{st.name}: sent in {wall:.2f} s ({len(reqs) / wall:.0f}/s)")
    return results, owners, wall


def ingress_summary(results: list[tuple], wall: float) -> dict:
    lat = [r[1] for r in results]
    statuses = Counter(f"{r[2]} {r[3]}" for r in results)
    accepted = sum(1 for r in results if r[2] == 202)
    return {"deliveries": len(results), "accepted": accepted, "wall_s": round(wall, 3),
            "accepted_per_s": round(accepted / wall, 1), "p50_ms": pct(lat, 50, 1e3), "p95_ms": pct(lat, 95, 1e3),
            "p99_ms": pct(lat, 99, 1e3), "max_ms": round(1e3 * max(lat), 2), "statuses": dict(statuses)}


# -- phases --------------------------------------------------------------------------------------------
def run_ingress(args: argparse.Namespace, model_dir: Path, items: list, logs: Path, helpdesk: str,
                processes: int) -> dict:
    with Stack(f"ingress-{helpdesk}-p{processes}", model_dir, logs, helpdesk, args.zendesk_delivery,
               serve_processes=processes) as st:
        ids = st.add_tickets(items)
        st.start_ingress()
        st.wait_ready(0)
        results, _, wall = deliver(st, ids, args)
        out = {"helpdesk": helpdesk, "processes": processes, **ingress_summary(results, wall),
               "jobs_queued": st.queue.count}
    out["target_met"] = out["accepted_per_s"] >= 500 and (out["p99_ms"] or 1e9) < 50
    log(f"{st.name}: {out['accepted_per_s']}/s accepted, p99 {out['p99_ms']} ms, {out['statuses']}")
    return out


def model_rate(model_dir: Path, texts: list[str], procs: int, timeout: float = 600.0) -> dict:
    """TriageModel(threads=1, batch_size=1).score over the texts split across `procs` processes."""
    tmp = tempfile.mkdtemp(prefix="pipeline-bench-model-")
    running: list[subprocess.Popen] = []
    try:
        for k in range(procs):
            path = Path(tmp) / f"texts{k}.json"
            path.write_text(json.dumps(texts[k::procs]))
            running.append(subprocess.Popen([sys.executable, "-c", MODEL_PROC, str(model_dir), str(path)], cwd=REPO,
                                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + timeout
        for p in running:
            ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise RuntimeError(f"model process {p.pid} did not get ready (status {p.poll()})")
        for p in running:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        runs = [json.loads(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0].strip().splitlines()[-1])
                for p in running]
    finally:
        for p in running:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    wall = max(r["wall_s"] for r in runs)
    return {"processes": procs, "wall_s": round(wall, 3), "texts_per_s": round(len(texts) / wall, 1),
            "cpu_ms_per_text": round(1e3 * sum(r["cpu_s"] for r in runs) / len(texts), 2)}


def model_alone(model_dir: Path, texts: list[str], procs: int, when: str) -> dict:
    log(f"model alone ({when}): {procs} process(es) x 1 thread over the same {len(texts)} texts")
    model = model_rate(model_dir, texts, procs)
    log(f"model alone ({when}), {procs} process(es): {model['texts_per_s']} texts/s")
    return model


class Faults:
    """Phase 4: the sandbox answers `rate` of the ticket PUTs 429 (Retry-After 1) or 503, half each, at
    random (seeded); counts what it injected and the longest run of 503s one ticket met."""

    def __init__(self, zd: ZendeskSandbox, rate: float, seed: int):
        self.rate, self.rng, self.lock = rate, random.Random(seed), threading.Lock()
        self.injected: Counter[str] = Counter()
        self.streak: Counter[int] = Counter()
        self.longest_503_run = 0
        self._take = zd._take_fault
        zd._take_fault = self.take  # type: ignore[method-assign]

    def take(self, method: str, path: str) -> Fault | None:
        m = TICKET_PUT.search(path)
        if method == "PUT" and m:
            tid = int(m.group(1))
            with self.lock:
                x = self.rng.random()
                if x < self.rate / 2:
                    self.injected["429"] += 1
                    return Fault(429, 1, 1.0, None, None)
                if x < self.rate:
                    self.injected["503"] += 1
                    self.streak[tid] += 1
                    self.longest_503_run = max(self.longest_503_run, self.streak[tid])
                    return Fault(503, 1, None, None, None)
                self.streak[tid] = 0
        return self._take(method, path)


def kill_worker(st: Stack, name: str) -> tuple[float, set[int]]:
    """SIGKILL a worker's process group (the worker and its RQ scheduler, as a lost machine): the time,
    and the tickets of the job it was running."""
    proc = dict(st.procs)[name]
    held: set[int] = set()
    for w in Worker.all(queue=st.queue):
        job_id = w.get_current_job_id() if w.pid == proc.pid else None
        job = Job.fetch(job_id, connection=st.queue.connection, serializer=st.queue.serializer) if job_id else None
        if job is not None:
            held = {int(json.loads(a)["ticket_id"]) for a in job.args}
    st.killed.add(name)
    os.killpg(proc.pid, signal.SIGKILL)
    at = time.perf_counter()
    log(f"{st.name}: SIGKILLed {name} (pid {proc.pid}) running a job of {len(held)} tickets")
    return at, held


def run_e2e(args: argparse.Namespace, model_dir: Path, items: list, texts: list[str], w: int, logs: Path,
            helpdesk: str, pace: float | None = None, faults: bool = False) -> dict:
    """A burst (as fast as the ingress takes it) or, with `pace`, deliveries paced at pace/s; with
    `faults`, phase 4 (see the module)."""
    # the changes each ticket must get exactly once; the last one ends the job (Jira: the note, written last)
    kinds = ("jira:issue_updated", "comment_created") if helpdesk == "jira" else ("update",)
    last = kinds[-1]
    kind = "faults" if faults else "paced" if pace else "e2e"
    with Stack(f"{kind}-{helpdesk}-w{w}", model_dir, logs, helpdesk, args.zendesk_delivery,
               args.vendor_latency_ms / 1e3) as st:
        injector = None
        if faults:
            assert st.zd is not None, "phase 4 runs on the Zendesk sandbox"
            st.extra_env["TRIAGE_RETRY_INTERVALS"] = args.fault_retry_intervals
            injector = Faults(st.zd, args.fault_rate, args.seed)
        kill_at, killed_at, dead_job = len(items) // 4, None, set()
        ids = st.add_tickets(items)
        differ = sum(a != b for a, b in zip(st.scored_texts(ids), texts))  # Jira renders wiki markup in posts
        for k in range(w):
            st.spawn(f"worker{k + 1}", "worker", "--name", f"bench-{k + 1}-{os.getpid()}")
        st.start_ingress()
        log(f"{st.name}: waiting for the ingress and {w} worker(s) to load the model")
        st.wait_ready(w)
        cpu_before = st.cpu()
        results, owners, send_wall = deliver(st, ids, args, pace)
        first_send: dict[int | str, float] = {}
        for owner, r in zip(owners, results):
            first_send[owner] = min(first_send.get(owner, r[0]), r[0])

        deadline, next_log, idle_since = time.monotonic() + args.timeout, 0.0, None
        while time.monotonic() < deadline:
            done = len({t for t, what, _ in list(st.changes) if what == last})
            if done >= len(ids):
                break
            if faults and killed_at is None and done >= kill_at:
                killed_at, dead_job = kill_worker(st, "worker1")
            st.check_alive()
            now = time.monotonic()
            if now >= next_log:
                rate = done / max(1e-9, time.perf_counter() - min(first_send.values()))
                log(f"{st.name}: {done}/{len(ids)} tickets written back ({rate:.1f}/s), {st.queue.count} jobs queued")
                busy = st.queue.count or st.queue.started_job_registry.count or st.queue.scheduled_job_registry.count
                idle_since = None if busy else idle_since or now
                if idle_since and now - idle_since > 5:
                    log(f"{st.name}: queue idle for 5 s with {len(ids) - done} tickets not written back: giving up")
                    break
                next_log = now + 2
            time.sleep(0.1)
        cpu_after = st.cpu()
        time.sleep(1.5)  # a late duplicate write would show up now
        requests, bot, changes = st.sandbox.requests, st.bot, list(st.changes)
        if st.jira:  # the edit is PUT /rest/api/3/issue/{key or id}; the note an internal (JSM) comment
            key_of = {st.jira.issue(k)["id"]: k for k in ids} | {k: k for k in ids}
            puts = Counter(key_of.get(m.group(1)) for r in requests
                           if r.method == "PUT" and (m := ISSUE_PUT.search(r.path)))
            notes = {k: sum(1 for c in st.jira.comments(k) if not c["public"] and c["author"] == bot) for k in ids}
        else:
            puts = Counter(int(m.group(1)) for r in requests  # a refused PUT (409: retry) changed nothing
                           if r.method == "PUT" and r.status < 300 and (m := TICKET_PUT.search(r.path)))
            notes = {t: sum(1 for c in st.zd.comments(t) if not c["public"] and c["author_id"] == bot)  # type: ignore
                     for t in ids}
        applied = {kind: Counter(t for t, what, _ in changes if what == kind) for kind in kinds}
        written: dict[int | str, float] = {}
        for t, what, at in changes:
            if what == last:
                written.setdefault(t, at)
        exactly_once = sum(1 for t in ids if puts[t] == notes[t] == 1 and all(c[t] == 1 for c in applied.values()))
        queue_left = {"queued": st.queue.count, "failed (DLQ)": st.queue.failed_job_registry.count,
                      "scheduled": st.queue.scheduled_job_registry.count}
        sandbox_errors = Counter(f"{r.method} {r.status}" for r in requests if r.status >= 300)
        calls = Counter(r.method for r in requests)
        db = st.queue.connection  # each queued revision names its job: how the deliveries were grouped
        jobs = len(set(db.mget(list(db.scan_iter("triage:queued:*", count=1000))) or []))

    lat = [written[t] - first_send[t] for t in ids if t in written]
    cpu_ms = {role: round(1e3 * (cpu_after[role] - before) / len(ids), 2)  # type: ignore[operator]
              for role, before in cpu_before.items() if before is not None and cpu_after[role] is not None}
    span = (max(written.values()) - min(first_send.values())) if written else float("nan")
    out = {"helpdesk": helpdesk, "workers": w, "rate": pace, "tickets": len(ids), "written_back": len(written),
           "exactly_once": exactly_once,
           "more_than_once": sum(1 for t in ids if max(puts[t], notes[t], *(c[t] for c in applied.values())) > 1),
           "ingress": ingress_summary(results, send_wall), "p50_s": pct(lat, 50), "p95_s": pct(lat, 95),
           "max_s": round(max(lat), 2) if lat else None, "span_s": round(span, 2),
           "p50_ms": pct(lat, 50, 1e3), "p95_ms": pct(lat, 95, 1e3),
           "max_ms": round(1e3 * max(lat), 1) if lat else None,
           "tickets_per_s": round(len(written) / span, 1) if written else 0.0,
           "cpu_ms_per_ticket": cpu_ms, "sandbox_calls": dict(calls), "sandbox_errors": dict(sandbox_errors),
           "queue_after": queue_left, "jobs": jobs,
           "scored_text_matches_model_run": not differ, "scored_texts_differing": differ}
    if injector is not None:
        late = [written[t] - killed_at for t in dead_job if t in written and killed_at and written[t] > killed_at]
        out["faults"] = {
            "rate": args.fault_rate, "retry_intervals": args.fault_retry_intervals, "injected": dict(injector.injected),
            "longest_503_run_on_a_ticket": injector.longest_503_run, "killed_after_written": kill_at,
            "dead_job_tickets": len(dead_job), "dead_job_written_after_kill": len(late),
            "dead_job_last_write_back_after_kill_s": round(max(late), 1) if late else None,
            "dlq": queue_left["failed (DLQ)"], "first_send_to_last_write_back_s": out["span_s"]}
        f = out["faults"]
        out["target_met"] = (exactly_once == len(ids) and not out["more_than_once"] and f["dlq"] == 0
                             and out["span_s"] <= 240 and (f["dead_job_last_write_back_after_kill_s"] or 0) <= 120)
        log(f"{st.name}: faults {f}")
    log(f"{st.name}: {len(written)}/{len(ids)} written back, {exactly_once} exactly once, "
        f"{out['tickets_per_s']} tickets/s, p50 {out['p50_s']} s, p95 {out['p95_s']} s")
    return out


def report_faults(args: argparse.Namespace, model_dir: Path, meta: dict, run: dict) -> int:
    f = run["faults"]
    dups = round(args.dup_rate * args.tickets)
    print(f"\n## Fault paths: {args.tickets} tickets + {dups} repeated deliveries, {run['workers']} workers (one "
          f"SIGKILLed after {f['killed_after_written']} write-backs), {f['rate']:.0%} of ticket PUTs answered 429 "
          f"(Retry-After 1) or 503; TRIAGE_RETRY_INTERVALS={f['retry_intervals']}; model {model_dir.name} "
          f"({meta['version']}); {os.cpu_count()} CPUs ({cpu_name()})\n")
    print("| written back | exactly once | more than once | DLQ | first send -> last write-back s | dead worker's job: "
          "tickets, written after the kill, last one s after the kill | injected | longest 503 run | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {run['written_back']}/{run['tickets']} | {run['exactly_once']}/{run['tickets']} | "
          f"{run['more_than_once']} | {f['dlq']} | {f['first_send_to_last_write_back_s']} | {f['dead_job_tickets']}, "
          f"{f['dead_job_written_after_kill']}, {f['dead_job_last_write_back_after_kill_s']} | "
          f"{', '.join(f'{k}: {v}' for k, v in sorted(f['injected'].items()))} | "
          f"{f['longest_503_run_on_a_ticket']} | {'met' if run['target_met'] else 'MISSED'} (every ticket once, "
          f"DLQ empty, <= 240 s; the dead worker's tickets <= 120 s after the kill) |")
    print(f"\nsandbox calls {run['sandbox_calls']}, answers >= 300: {run['sandbox_errors']}, queue after "
          f"{run['queue_after']}; receipt -> write-back p50 / p95 / max {run['p50_s']} / {run['p95_s']} / "
          f"{run['max_s']} s")
    out = Path(args.out).with_name("pipeline_bench_faults.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu_name(),
                               "cpus": os.cpu_count(), "args": {k: v for k, v in vars(args).items() if k != "out"},
                               "run": run}, indent=1))
    log(f"wrote {out}")
    return 0 if run["target_met"] else 1


# -- main ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tickets", type=int, help="tickets per phase (default 2000; 200 with --quick)")
    p.add_argument("--dup-rate", type=float, default=0.1,
                   help="repeated deliveries per ticket, shuffled in (default 0.1: 10%% of N more requests)")
    p.add_argument("--helpdesk", choices=("zendesk", "jira", "both"), default="both",
                   help="sandbox helpdesk(s) to run every phase against (default both)")
    p.add_argument("--workers", default="1,2", help="worker process counts to run end to end (default 1,2)")
    p.add_argument("--serve-processes", default="1,2",
                   help="phase 1: `triage serve --processes N` for each N in this list (default 1,2); "
                        "phases 2 and 3 run one ingress process")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    p.add_argument("--zendesk-delivery", choices=("event", "trigger"), default="event",
                   help="Zendesk webhooks as event-subscribed ticket.created webhooks (default; they carry the "
                        "ticket's state, so the write-back is one PUT) or as the trigger body (minute-precise "
                        "updated_at: the writer reads the ticket first, GET + PUT)")
    p.add_argument("--vendor-latency-ms", type=float, default=0.0,
                   help="add this to every sandbox answer, as for a helpdesk across the internet (default 0: "
                        "the sandbox answers at once); shows how many workers a remote helpdesk needs")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of phase 2, each W with the model alone measured just before and just after "
                        "it (default 1); more rounds give the median ratio (phase 3 runs in every round)")
    p.add_argument("--paced-load", type=float, default=0.5,
                   help="phase 3: deliveries paced at this fraction of the burst's e2e tickets/s, for the "
                        "latency a ticket sees when the queue is not backed up (default 0.5; 0 skips it)")
    p.add_argument("--paced-tickets", type=int, help="tickets in phase 3 (default 400; 100 with --quick)")
    p.add_argument("--faults", action="store_true",
                   help="phase 4 only: 429s and 503s on a share of the writes, one worker SIGKILLed (Zendesk)")
    p.add_argument("--fault-workers", type=int, default=2, help="workers in phase 4, one of them killed (default 2)")
    p.add_argument("--fault-rate", type=float, default=0.2,
                   help="share of ticket PUTs answered 429 (Retry-After 1) or 503, half each (default 0.2)")
    p.add_argument("--fault-retry-intervals", default="2,5,10,20",
                   help="TRIAGE_RETRY_INTERVALS of the phase 4 workers (default 2,5,10,20: five tries)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 tickets unless --tickets says otherwise")
    p.add_argument("--skip-ingress", action="store_true", help="skip phase 1 (ingress alone)")
    p.add_argument("--skip-e2e", action="store_true", help="skip phase 2 (end to end and the model runs)")
    p.add_argument("--model-dir", default=str(REPO / "model" / "artifacts" / "triage-v3"),
                   help="exported model folder (default model/artifacts/triage-v3, the shipped model)")
    p.add_argument("--fallback-model-dir", default=str(REPO / "runs" / "mini"),
                   help="used when --model-dir has no model (default runs/mini)")
    p.add_argument("--seed", type=int, default=13, help="text sample and delivery order seed (default 13)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for the write-backs of one end-to-end run (default 600)")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "pipeline_bench.json"))
    args = p.parse_args(argv)
    args.tickets = args.tickets or (200 if args.quick else 2000)
    args.paced_tickets = args.paced_tickets or (100 if args.quick else 400)
    args.helpdesks = list(HELPDESKS) if args.helpdesk == "both" else [args.helpdesk]
    try:
        args.workers = [int(x) for x in args.workers.split(",") if x.strip()]
        args.serve_processes = [int(x) for x in args.serve_processes.split(",") if x.strip()]
    except ValueError:
        p.error("--workers, --serve-processes: give counts like 1,2")
    if (args.tickets < 1 or args.concurrency < 1 or not 0 <= args.dup_rate <= 10
            or min(args.workers + args.serve_processes + [args.repeat], default=0) < 1):
        p.error("--tickets, --concurrency, --workers, --serve-processes and --repeat must be at least 1; "
                "--dup-rate 0..10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    model_dir = Path(args.model_dir)
    if not (model_dir / "triage.json").is_file():
        log(f"no model at {model_dir}; using {args.fallback_model_dir}")
        model_dir = Path(args.fallback_model_dir)
    meta = json.loads((model_dir / "triage.json").read_text())
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs: something else runs, figures will be low")
    texts, lengths = load_texts(args.tickets, args.seed, model_dir / "tokenizer.json", int(meta["max_tokens"]), 40, 128)
    if len(texts) < args.tickets:
        log(f"only {len(texts)} texts of 40-128 tokens found")
        return 1
    items = [(" ".join(t.split(" ")[:8]), t) for t in texts]  # subject: the text's first words
    log(f"{len(texts)} texts, tokens mean {np.mean(lengths):.1f}; model {model_dir} ({meta['version']})")
    logs = Path(args.out).parent / "pipeline_bench_logs"
    logs.mkdir(parents=True, exist_ok=True)

    if args.faults:
        return report_faults(args, model_dir, meta, run_e2e(args, model_dir, items, texts, args.fault_workers, logs,
                                                           "zendesk", faults=True))
    ingress = [] if args.skip_ingress else [run_ingress(args, model_dir, items, logs, hd, n)
                                            for hd in args.helpdesks for n in args.serve_processes]
    e2e, paced = [], []
    for round_ in range(1, 1 + (0 if args.skip_e2e else args.repeat)):
        for w in args.workers:
            # The model alone runs just before and just after the end-to-end runs it is compared with:
            # on a shared machine the speed of the same code drifts by a third within minutes.
            before = model_alone(model_dir, texts, w, "before")
            runs = [run_e2e(args, model_dir, items, texts, w, logs, hd) for hd in args.helpdesks]
            after = model_alone(model_dir, texts, w, "after")
            model = {k: round((before[k] + after[k]) / 2, 2) for k in ("texts_per_s", "cpu_ms_per_text")}
            model |= {"before": before, "after": after}
            for run in runs:
                run |= {"round": round_, "model": model}
                run["e2e_over_model"] = round(run["tickets_per_s"] / model["texts_per_s"], 3)
                run["target_met"] = run["e2e_over_model"] >= 0.7
                e2e.append(run)
                pace = args.paced_load * run["tickets_per_s"]
                if pace > 0:
                    paced.append(run_e2e(args, model_dir, items[:args.paced_tickets], texts[:args.paced_tickets],
                                         w, logs, run["helpdesk"], pace) | {"round": round_})

    dups = round(args.dup_rate * args.tickets)
    far = f"; every sandbox answer delayed {args.vendor_latency_ms:g} ms" if args.vendor_latency_ms else ""
    print(f"\n## Pipeline: {args.tickets} tickets + {dups} repeated deliveries, {args.concurrency} concurrent; "
          f"model {model_dir.name} ({meta['version']}); {os.cpu_count()} CPUs ({cpu_name()}){far}\n")
    if ingress:
        print("### Ingress alone (`triage serve --processes N`, no worker)\n")
        print("| helpdesk | N | deliveries | accepted/s | p50 ms | p95 ms | p99 ms | max ms | answers | jobs queued | "
              "target |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for i in ingress:
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(i["statuses"].items()))
            print(f"| {i['helpdesk']} | {i['processes']} | {i['deliveries']} | {i['accepted_per_s']:.0f} "
                  f"| {i['p50_ms']} | {i['p95_ms']} "
                  f"| {i['p99_ms']} | {i['max_ms']} | {answers} | {i['jobs_queued']} | "
                  f"{'met' if i['target_met'] else 'MISSED'} (>= 500/s, p99 < 50 ms) |")
        print()
    if e2e:
        print("### End to end (webhook -> ingress -> RQ -> `triage worker` x W -> write-back)\n")
        print("| helpdesk | W | round | written back | exactly once | e2e tickets/s | receipt->write-back p50 / p95 s "
              "| ingress/s, p99 ms | model alone texts/s: before / after | e2e/model | target |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in e2e:
            m = r["model"]
            print(f"| {r['helpdesk']} | {r['workers']} | {r['round']} | {r['written_back']}/{r['tickets']} | "
                  f"{r['exactly_once']}/{r['tickets']} | "
                  f"{r['tickets_per_s']} | {r['p50_s']} / {r['p95_s']} | {r['ingress']['accepted_per_s']:.0f}, "
                  f"{r['ingress']['p99_ms']} | {m['before']['texts_per_s']} / {m['after']['texts_per_s']} | "
                  f"{r['e2e_over_model']:.2f} | {'met' if r['target_met'] else 'MISSED'} (>= 0.7) |")
        if args.repeat > 1:
            print()
            for hd in args.helpdesks:
                for w in args.workers:
                    ratios = sorted(r["e2e_over_model"] for r in e2e if r["helpdesk"] == hd and r["workers"] == w)
                    print(f"{hd} W={w}: e2e/model median {statistics.median(ratios):.2f} over {len(ratios)} rounds "
                          f"(range {ratios[0]:.2f}-{ratios[-1]:.2f})")
        for r in e2e:
            n = r["scored_texts_differing"]
            why = " (Jira renders their wiki markup: {code}, [text|url] links)" if r["helpdesk"] == "jira" else ""
            print(f"\n{r['helpdesk']} W={r['workers']}: sandbox calls {r['sandbox_calls']}, "
                  f"errors {r['sandbox_errors'] or 'none'}, queue after {r['queue_after']}, "
                  f"{r['jobs']} jobs ({r['tickets'] / max(r['jobs'], 1):.1f} tickets a job), tickets written more "
                  f"than once: {r['more_than_once']}" + (f"; {n} of the worker's texts differ from the model "
                                                         f"run's{why}" if n else ""))
        print("\n'exactly once': one applied PUT (a refused 409 changes nothing), one internal bot note and one "
              "applied update per ticket (Jira: one "
              "labels/priority PUT, one internal JSM comment by the bot, one bot issue_updated and one "
              "comment_created change; write-back = the note, written last). Model alone: "
              "TriageModel(threads=1, batch_size=1).score over the same texts in W processes (wall of the "
              "slowest), run just before and just after the end-to-end runs of that W; e2e/model divides by "
              "their mean. Rules: deploy/rules.example.yaml (the Zendesk "
              "sandbox has its Escalations and Billing groups; Jira runs without JIRA_GROUP_FIELD, so a rule's "
              "`group` is not written there and the note says so).")
        print("\n### Where the CPU goes (ms of CPU per ticket over the burst, all processes on this machine)\n")
        print("| helpdesk | W | round | workers | the model alone, same texts | ingress | Redis | bench: load "
              "generator + sandbox | total | CPUs busy |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in e2e:
            c = r["cpu_ms_per_ticket"]
            total = sum(c.values())
            busy = total * r["tickets"] / 1e3 / (r["span_s"] * (os.cpu_count() or 1))
            print(f"| {r['helpdesk']} | {r['workers']} | {r['round']} | {c.get('workers')} | "
                  f"{r['model']['cpu_ms_per_text']} | "
                  f"{c.get('ingress')} | {c.get('redis')} | {c.get('bench (load + sandbox)')} | {total:.2f} | "
                  f"{busy:.0%} |")
    if paced:
        print(f"\n### Paced (deliveries at {args.paced_load:.0%} of the burst's e2e tickets/s: the latency a "
              f"ticket sees when the queue is not backed up)\n")
        print("| helpdesk | W | round | rate /s | written back | exactly once | receipt->write-back p50 / p95 / "
              "max ms |")
        print("|---|---|---|---|---|---|---|")
        for r in paced:
            print(f"| {r['helpdesk']} | {r['workers']} | {r['round']} | {r['rate']:.1f} | "
                  f"{r['written_back']}/{r['tickets']} | "
                  f"{r['exactly_once']}/{r['tickets']} | {r['p50_ms']} / {r['p95_ms']} / {r['max_ms']} |")
        first = args.workers[0]
        for hd in args.helpdesks:
            for w in args.workers:
                mine = [r for r in paced if r["helpdesk"] == hd and r["workers"] == w and r["p50_ms"]]
                ratios = [(r["p50_ms"] / one["p50_ms"], r["p95_ms"] / one["p95_ms"]) for r in mine for one in paced
                          if (one["helpdesk"], one["workers"], one["round"]) == (hd, first, r["round"])]
                over = (f"; over W={first}'s in the same round: p50 {statistics.median(x for x, _ in ratios):.2f}x, "
                        f"p95 {statistics.median(y for _, y in ratios):.2f}x" if w != first and ratios else "")
                if mine:
                    print(f"\n{hd} W={w} paced: p50 median {statistics.median(r['p50_ms'] for r in mine):.1f} ms, "
                          f"p95 median {statistics.median(r['p95_ms'] for r in mine):.1f} ms over {len(mine)} "
                          f"rounds{over}")
    print("\nThe load generator and the sandbox helpdesks (ThreadingHTTPServer) run in the bench process and share "
          f"the {os.cpu_count()} CPUs with the ingress, Redis and the workers.")

    import onnxruntime
    import rq

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu_name(), "cpus": os.cpu_count(),
        "load_average_at_start": round(load, 2), "versions": {"onnxruntime": onnxruntime.__version__,
                                                              "rq": rq.__version__},
        "model_dir": str(model_dir), "model_version": meta["version"], "rules": str(RULES),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "texts": {"n": len(texts), "token_mean": round(float(np.mean(lengths)), 1)},
        "ingress": ingress, "e2e": e2e, "paced": paced}, indent=1))
    log(f"wrote {out}")
    return 0 if all(r["exactly_once"] == r["tickets"] and not r["more_than_once"] for r in e2e + paced) else 1


if __name__ == "__main__":
    sys.exit(main())
