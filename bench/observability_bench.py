"""What observability costs: the decision log per ticket, the console's pages with a full log, a scrape.

A real redis-server (started here), the real DecisionLog, the real serve app (in this process,
over HTTP with uvicorn on 127.0.0.1, the console signed in). It measures:
  log      DecisionLog.record (with the metrics observer) per ticket, in batches; the median and
           p95 of the batch means, in milliseconds. That is what a worker adds to each ticket.
  pages    each console page, --requests times, after --decisions decisions were logged: median
           and p95 milliseconds (client side: the whole HTTP request).
  scrape   serve's /metrics (this process's metrics and what Redis holds) and a worker's exposition.

  python bench/observability_bench.py                       # 100,000 decisions, 40 requests a page
  python bench/observability_bench.py --decisions 20000 --requests 20
Figures go in docs/performance.md with the command that made them, never in code.
"""

from __future__ import annotations

import argparse
import html
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import httpx  # noqa: E402
from admin_support import TOKEN, runtime, seed  # noqa: E402
from pipeline_support import serve_app  # noqa: E402

from worker.bootstrap import http_app  # noqa: E402
from worker.decision import Actions, HeadScore, Scores, TriageDecision  # noqa: E402
from worker.events import TicketEvent  # noqa: E402
from worker.local_redis import LocalRedis  # noqa: E402
from worker.metrics import exposition, observe_decision  # noqa: E402


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def bench_log(rt, n: int, batch: int = 500) -> tuple[float, float]:
    log = rt.decision_log
    log.observer = observe_decision
    s = Scores(HeadScore("frustrated", {"frustrated": 0.8, "neutral": 0.15, "satisfied": 0.05}, 0.8),
               HeadScore("high", {"high": 0.7, "medium": 0.2, "low": 0.1}, 0.7), "bench-v1")
    a = Actions(add_tags=("triage_sentiment_frustrated", "triage_urgency_high"), priority="urgent", note=True)
    means, cpu = [], []
    for start in range(0, n, batch):
        events = [TicketEvent(source="zendesk", ticket_id=str(100000 + i), revision="1", subject="Checkout down",
                              text="Checkout is down since 9am, this is unacceptable, we lose orders",
                              tags=("vip", "billing"), requester_email="ann@acme.com", channel="email")
                  for i in range(start, min(start + batch, n))]
        t0, c0 = time.perf_counter(), time.thread_time()
        for e in events:
            log.record(e, "written", TriageDecision(e.key, s, ("urgent", "vip"), a), received_at=time.time() - 1)
        means.append((time.perf_counter() - t0) * 1000 / len(events))
        cpu.append((time.thread_time() - c0) * 1000 / len(events))
    return statistics.median(means), p95(means), statistics.median(cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=100_000, help="decisions in the log before the pages")
    ap.add_argument("--requests", type=int, default=40, help="requests per page")
    args = ap.parse_args()
    redis = LocalRedis().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rt = runtime(redis.url, Path(tmp) / "rules.yaml", decision_log_max=max(args.decisions, 100))
            seed(rt)
            log_ms, log_p95, log_cpu = bench_log(rt, args.decisions)
            print(f"decisions logged: {rt.decision_log.count():,}")
            print(f"log     DecisionLog.record + metrics: median {log_ms:.3f} ms a ticket (wall; p95 "
                  f"{log_p95:.3f} ms), {log_cpu:.3f} ms of the thread's CPU (medians of batches of 500)")
            server, url = serve_app(http_app(rt))
            try:
                with httpx.Client(base_url=url, timeout=30) as http:
                    http.post("/admin/login", data={"token": TOKEN})
                    page = http.get("/admin/rules").text
                    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                    rules = html.unescape(page.split('spellcheck="false">', 1)[1].split("</textarea>", 1)[0])
                    pages = [("GET", "/admin/", None), ("GET", "/admin/feed", None),
                             ("GET", "/admin/feed?label=unsure", None), ("GET", "/admin/feed?rule=vip", None),
                             ("GET", "/admin/feed?source=slack", None), ("GET", "/admin/rules", None),
                             ("POST", "/admin/rules/dryrun", {"csrf": csrf, "text": rules, "n": "200"}),
                             ("GET", "/admin/feedback", None), ("GET", "/admin/dlq", None), ("GET", "/metrics", None)]
                    print(f"pages   {args.requests} requests each, milliseconds (whole HTTP request):")
                    for method, path, data in pages:
                        times = []
                        for _ in range(args.requests):
                            t0 = time.perf_counter()
                            r = http.request(method, path, data=data)
                            times.append((time.perf_counter() - t0) * 1000)
                            assert r.status_code == 200, (path, r.status_code)
                        print(f"  {method:4} {path:32} median {statistics.median(times):7.1f}  p95 {p95(times):7.1f}")
            finally:
                server.should_exit = True
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                exposition()
                times.append((time.perf_counter() - t0) * 1000)
            print(f"scrape  a worker's exposition: median {statistics.median(times):.2f} ms, p95 {p95(times):.2f} ms "
                  f"({len(exposition())} bytes)")
    finally:
        redis.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
