"""/triage latency over real HTTP: signed slash commands -> `triage serve` (its own process, the real
Bolt app, the real model) -> the answer posted to the command's response_url.

  ack    client sends the signed POST /slack/events -> the HTTP answer arrives (Slack's 3 s limit)
                                                             target p95 < 300 ms
  full   client sends -> the answer's POST reaches the response_url (the local Slack sandbox, in this
         process, time-stamps its arrival)                   target p95 < 1.5 s

Set-up: a fresh Redis (LocalRedis) unless REDIS_URL is set, connectors/slack/sandbox.py as the Slack
Web API and response_url endpoint (in this process), `triage serve` with TRIAGE_MODEL_THREADS=1 and
deploy/rules.example.yaml. Texts: ticket-length real posts (bench/model_bench.py's load_texts,
60-128 tokens), or built-in samples when the data folder is missing. Phases:

  sequential   N commands from one sender, each sent once the previous one's answer arrived (what
               one agent sees)
  burst        N commands from C concurrent senders, each waiting for its answer before its next
               command (C agents triaging at once, as fast as they can click: a busy team's peak)

Run it on an otherwise idle machine:
  python bench/slack_bench.py                       # 300 sequential + 300 from 8 senders
  python bench/slack_bench.py --quick               # smoke run: 40 + 40 from 4 senders
  python bench/slack_bench.py --model-dir runs/my-model --concurrency 16
Results: Markdown on stdout, JSON in bench/out/slack_bench.json, the server's log in
bench/out/slack_bench_serve.log. Exit status 1 when a target is missed or an answer is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from connectors.slack.sandbox import SlackSandbox  # noqa: E402
from worker.local_redis import LocalRedis, free_port  # noqa: E402

SECRET = "bench-signing-secret"
ACK_P95_MS, FULL_P95_MS = 300.0, 1500.0
SAMPLES = [
    "The checkout page has been down for an hour and we are losing sales, fix it now!",
    "Thanks a lot, the export works again. Have a nice weekend!",
    "How do I change the billing address on my invoices?",
    "I was charged twice this month and nobody answers my emails. This is unacceptable.",
    "Login fails with error 500 for all our users since the update this morning",
    "Could you add dark mode to the mobile app at some point?",
    "Our integration stopped syncing orders overnight; customers are calling us.",
    "Small typo on the pricing page: 'anual' should be 'annual'.",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, max(0, round(q / 100 * len(ys)) - 1))] if ys else float("nan")


def texts_for(n: int, model_dir: Path) -> tuple[list[str], str]:
    try:
        from model_bench import load_texts

        texts, _ = load_texts(n, 7, model_dir / "tokenizer.json", 128, 60, 128)
        if len(texts) >= n:
            return [t[:3900] for t in texts], "real posts, 60-128 tokens"
    except (OSError, ImportError, KeyError) as e:
        log(f"real texts unavailable ({type(e).__name__}: {e}); using built-in samples")
    rng = random.Random(7)
    return [rng.choice(SAMPLES) for _ in range(n)], "built-in samples"


class Serve:
    """`triage serve` in its own process, pointed at the sandbox and Redis."""

    def __init__(self, redis_url: str, sb: SlackSandbox, model_dir: Path, log_path: Path):
        self.port = free_port()
        env = {**os.environ, "REDIS_URL": redis_url, "SLACK_BOT_TOKEN": sb.token, "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": sb.api_url, "TRIAGE_MODEL_DIR": str(model_dir), "TRIAGE_MODEL_THREADS": "1",
               "TRIAGE_RULES": str(REPO / "deploy" / "rules.example.yaml"), "TRIAGE_QUEUE": "slack-bench",
               "TRIAGE_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
        for name in ("ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_WEBHOOK_SECRET",
                     "SLACK_APP_TOKEN", "SLACK_WATCH_CHANNELS", "SLACK_ALERT_CHANNEL"):
            env.pop(name, None)
        self.log = log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=REPO, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"triage serve exited ({self.proc.returncode}); see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"triage serve not ready after {timeout:.0f}s; see {self.log.name}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Answers:
    """Wakes a sender when its command's answer reaches the response_url."""

    def __init__(self, sb: SlackSandbox):
        self.events: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        sb.on_response = self.arrived

    def expect(self, url: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(url, threading.Event())

    def arrived(self, url: str, body: dict) -> None:
        self.expect(url).set()


def one(http: httpx.Client, sb: SlackSandbox, answers: Answers, text: str) -> dict:
    """Send one signed /triage and wait for its answer (a person waits for it before the next)."""
    fields = sb.command(text)
    done = answers.expect(fields["response_url"])
    body, headers = sb.signed_form(SECRET, fields)
    t0 = time.perf_counter()
    r = http.post("/slack/events", content=body, headers=headers)
    ack = time.perf_counter() - t0
    done.wait(30)
    return {"t0": t0, "ack_s": ack, "status": r.status_code, "url": fields["response_url"]}


def collect(sb: SlackSandbox, sent: list[dict]) -> None:
    """Each command's full time, from the sandbox's arrival stamp of the answer."""
    for s in sent:
        times = sb.response_times(s["url"])
        s["full_s"] = times[0] - s["t0"] if times else None
        posted = sb.responses(s["url"])
        s["answer_ok"] = bool(posted) and "Sentiment" in json.dumps(posted[0].get("blocks") or [])


def phase(name: str, http: httpx.Client, sb: SlackSandbox, answers: Answers, texts: list[str],
          senders: int) -> dict:
    log(f"{name}: {len(texts)} commands from {senders} sender(s)")
    started = time.perf_counter()
    if senders == 1:
        sent = [one(http, sb, answers, t) for t in texts]
    else:
        local = threading.local()

        def send(text: str) -> dict:
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=str(http.base_url), timeout=30)
            return one(local.http, sb, answers, text)

        with ThreadPoolExecutor(senders) as pool:
            sent = list(pool.map(send, texts))
    collect(sb, sent)
    wall = time.perf_counter() - started
    acks = [s["ack_s"] * 1000 for s in sent]
    fulls = [s["full_s"] * 1000 for s in sent if s["full_s"] is not None]
    out = {"phase": name, "commands": len(sent), "senders": senders, "wall_s": round(wall, 2),
           "statuses": sorted({s["status"] for s in sent}), "answered": len(fulls),
           "answers_ok": sum(s["answer_ok"] for s in sent), "per_s": round(len(sent) / wall, 1)}
    for key, xs in (("ack_ms", acks), ("full_ms", fulls)):
        out[key] = {"p50": round(statistics.median(xs), 1) if xs else None, "p95": round(pct(xs, 95), 1),
                    "p99": round(pct(xs, 99), 1), "max": round(max(xs), 1) if xs else None}
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = os.environ.get("TRIAGE_MODEL_DIR") or str(REPO / "model" / "artifacts" / "triage-v3")
    p.add_argument("--model-dir", default=default_model, help=f"exported model folder (default {default_model})")
    p.add_argument("--commands", type=int, default=300, help="commands per phase (default 300)")
    p.add_argument("--concurrency", type=int, default=8, help="senders in the burst phase (default 8)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="smoke run: 40 commands a phase, 4 senders")
    p.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = p.parse_args(argv)
    if args.quick:
        args.commands, args.concurrency, args.warmup = 40, 4, 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_dir = Path(args.model_dir)
    if not (model_dir / "triage.json").is_file():
        raise SystemExit(f"no exported model in {model_dir}: pass --model-dir (a folder with triage.json, "
                         f"tokenizer.json, model.int8.onnx)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts, kind = texts_for(args.warmup + 2 * args.commands, model_dir)
    redis = None if os.environ.get("REDIS_URL") else LocalRedis().start()
    redis_url = os.environ.get("REDIS_URL") or redis.url  # type: ignore[union-attr]
    sb = SlackSandbox().start()
    serve = Serve(redis_url, sb, model_dir, out / "slack_bench_serve.log")
    try:
        log(f"starting triage serve (model {model_dir})")
        serve.wait_ready()
        answers = Answers(sb)
        with httpx.Client(base_url=serve.url, timeout=30) as http:
            warm = phase("warm-up", http, sb, answers, texts[: args.warmup], 1)
            rest = texts[args.warmup:]
            results = [phase("sequential", http, sb, answers, rest[: args.commands], 1),
                       phase("burst", http, sb, answers, rest[args.commands:], args.concurrency)]
    finally:
        serve.close()
        sb.stop()
        if redis is not None:
            redis.close()
    report = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_avg_1m": round(os.getloadavg()[0], 2), "platform": platform.platform()},
              "model_dir": str(model_dir), "texts": kind, "warmup": warm, "phases": results,
              "targets": {"ack_p95_ms": ACK_P95_MS, "full_p95_ms": FULL_P95_MS}}
    (out / "slack_bench.json").write_text(json.dumps(report, indent=2))
    print(f"\n/triage <text> over real HTTP, signed; model {model_dir.name}; {kind}; "
          f"{os.cpu_count()} CPUs, load average {report['machine']['load_avg_1m']} at the end\n")
    print("| phase | commands | senders | ack p50 | ack p95 | ack p99 | full p50 | full p95 | full p99 | "
          "answered | cmds/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for r in results:
        a, f = r["ack_ms"], r["full_ms"]
        print(f"| {r['phase']} | {r['commands']} | {r['senders']} | {a['p50']} ms | {a['p95']} ms | {a['p99']} ms | "
              f"{f['p50']} ms | {f['p95']} ms | {f['p99']} ms | {r['answers_ok']}/{r['commands']} | {r['per_s']} |")
        ok &= r["statuses"] == [200] and r["answers_ok"] == r["commands"]
        ok &= a["p95"] < ACK_P95_MS and f["p95"] < FULL_P95_MS
    print(f"\ntargets: ack p95 < {ACK_P95_MS:.0f} ms, full answer p95 < {FULL_P95_MS:.0f} ms -> "
          f"{'met' if ok else 'MISSED'}\nJSON: {out / 'slack_bench.json'}")
    if args.quick:
        print("a smoke run; the full run: python bench/slack_bench.py  (300 sequential + 300 from 8 senders)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
