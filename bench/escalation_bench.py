"""The LLM second opinion must not slow the tickets it does not escalate: escalation off vs on, same run.

Per arm (off, on, interleaved, --repeat R rounds): a fresh Redis, the Zendesk sandbox with the tickets,
one `triage worker` process (the real model, TRIAGE_MODEL_THREADS=1, default tags + a note) and, for `on`, the
LLM sandbox answering every question in --llm-latency seconds (default 1 s) with TRIAGE_LLM_ESCALATE=
abstained,language. Events are queued as the ingress queues them (Enqueuer.submit, one job each); the
write-back time of a ticket is when the sandbox applies its PUT.

  burst   all --tickets at once: non-escalated tickets/s = their count / (their last write-back - the
          first send), and their receipt -> write-back p50/p95 (queue time, mostly)
  paced   --paced tickets sent at --paced-rate a second (open loop): non-escalated p50/p95 latency

Which tickets escalate is decided once, by scoring the texts with the same model here (a head
abstains, or the language gate says it cannot read the text): the same set in both arms. The `on`
arm also checks that each escalated ticket was decided by the LLM and every ticket written once.

  nice -n 10 python bench/escalation_bench.py                 # 300 burst + 150 paced tickets, 2 rounds
  nice -n 10 python bench/escalation_bench.py --quick         # 60 + 40, 1 round
Results: Markdown on stdout, JSON in bench/out/escalation_bench.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from connectors.llm.sandbox import LlmSandbox  # noqa: E402
from connectors.zendesk.normalize import to_event  # noqa: E402
from connectors.zendesk.sandbox import ZendeskSandbox  # noqa: E402
from model.textprep import ticket_text  # noqa: E402
from worker.local_redis import LocalRedis  # noqa: E402
from worker.queueing import Enqueuer, make_queue  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SOURCES = [DATA / "mooc_forum_urgency" / "all_courses.csv", DATA / "jira_hadoop_priority" / "hadoop_bugs.csv",
           DATA / "multilingual_sentiment" / "val.csv"]
EMAIL, TOKEN, SECRET = "triage-bot@example.com", "bench-token", "bench-secret"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    csv.field_size_limit(1 << 24)
    pools = []
    for path in SOURCES:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r["text"][:600] for r in csv.DictReader(f) if len(r.get("text") or "") > 20]
        rng.shuffle(rows)
        pools.append(rows)
    # mostly English support-like posts; a sixth in other languages (tweets) for the language gate
    out = pools[0][: n * 5 // 12] + pools[1][: n * 5 // 12]
    out += pools[2][: n - len(out)]
    rng.shuffle(out)
    return out


def subject(text: str) -> str:
    return " ".join(text.split()[:6]) or "Ticket"


def escalated_set(texts: list[str], model_dir: str) -> set[int]:
    from model.runtime import TriageModel
    from worker.escalation import escalation_reason
    from worker.scoring import to_scores

    model = TriageModel.load(model_dir or None, threads=1)
    out = set()
    for i, t in enumerate(texts):  # the text the worker scores: subject + body
        s = to_scores(model.score([ticket_text(subject(t), t)], top_words=0)[0])
        if escalation_reason(s, ("abstained", "language"), 0.0, None):
            out.add(i)
    return out


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 1)


class Arm:
    """One stack: Redis, the Zendesk sandbox, one worker process; `llm` set: escalation on."""

    def __init__(self, llm: LlmSandbox | None, model_dir: str, logs: Path, name: str):
        self.redis = LocalRedis().start()
        self.zd = ZendeskSandbox(email=EMAIL, token=TOKEN).start()
        self.written: dict[int, float] = {}
        self.puts: dict[int, int] = {}
        self._lock = threading.Lock()
        self.zd.on_update = self._on_update
        env = {**os.environ, **self.zd.env, "REDIS_URL": self.redis.url, "TRIAGE_QUEUE": "bench",
               "TRIAGE_MODEL_THREADS": "1", "ZENDESK_SUBDOMAIN": "sandbox", "ZENDESK_EMAIL": EMAIL,
               "ZENDESK_API_TOKEN": TOKEN, "ZENDESK_WEBHOOK_SECRET": SECRET,
               "ZENDESK_BOT_USER_ID": str(self.zd.bot_user_id), "TRIAGE_LOG_LEVEL": "WARNING"}
        env = {k: v for k, v in env.items() if not k.startswith("TRIAGE_LLM_")}
        if model_dir:
            env["TRIAGE_MODEL_DIR"] = model_dir
        rules = logs / "rules.yaml"  # the default tags and the note (which says who decided)
        rules.write_text("rules:\n  - name: explain\n    then: {note: true}\n")
        env["TRIAGE_RULES"] = str(rules)
        if llm is not None:
            env.update({"TRIAGE_LLM_BASE_URL": llm.base_url, "TRIAGE_LLM_MODEL": llm.model,
                        "TRIAGE_LLM_API_KEY": llm.api_key, "TRIAGE_LLM_ESCALATE": "abstained,language",
                        "TRIAGE_LLM_DEADLINE": "30", "TRIAGE_LLM_CONCURRENCY": "8", "TRIAGE_LLM_DAILY_CALLS": "0"})
        self.log = (logs / f"worker-{name}.log").open("w")
        self.proc = subprocess.Popen([str(Path(sys.executable).with_name("triage")), "worker"], cwd=REPO, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        from redis import Redis

        self.client = Redis.from_url(self.redis.url)
        self.enqueuer = Enqueuer(make_queue(self.client, "bench"), (1, 2), 60)
        deadline = time.monotonic() + 120
        while not self.client.smembers("rq:workers:bench") and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.proc.returncode}): see {self.log.name}")
            time.sleep(0.2)

    def _on_update(self, ticket: dict, audit: dict) -> None:
        with self._lock:
            tid = int(ticket["id"])
            self.written.setdefault(tid, time.perf_counter())
            self.puts[tid] = self.puts.get(tid, 0) + 1

    def add(self, texts: list[str]) -> list[int]:
        return [self.zd.add_ticket(subject(t), t)["id"] for t in texts]

    def send(self, tid: int) -> float:
        event = to_event(self.zd.trigger_payload(tid), str(self.zd.bot_user_id))
        assert event is not None
        at = time.perf_counter()
        self.enqueuer.submit(event)
        return at

    def wait(self, ids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(i in self.written for i in ids):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{sum(i not in self.written for i in ids)} tickets not written back in {timeout:.0f}s")

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        self.zd.stop()
        self.redis.close()


def run_arm(arm: Arm, texts: list[str], paced: list[str], rate: float, esc: set[int], esc_paced: set[int],
            check_llm: bool) -> dict[str, Any]:
    ids = arm.add(texts)
    sent = {tid: arm.send(tid) for tid in ids}
    arm.wait(ids, 600)
    plain = [tid for k, tid in enumerate(ids) if k not in esc]
    lat = [arm.written[t] - sent[t] for t in plain]
    first = min(sent.values())
    burst = {"tickets": len(ids), "non_escalated": len(plain),
             "rate_per_s": round(len(plain) / (max(arm.written[t] for t in plain) - first), 2),
             "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95)}
    pids = arm.add(paced)
    psent: dict[int, float] = {}
    start = time.perf_counter()
    for k, tid in enumerate(pids):
        due = start + k / rate
        while (now := time.perf_counter()) < due:
            time.sleep(min(0.005, due - now))
        psent[tid] = arm.send(tid)
    arm.wait(pids, 600)
    pplain = [tid for k, tid in enumerate(pids) if k not in esc_paced]
    plat = [arm.written[t] - psent[t] for t in pplain]
    result: dict[str, Any] = {"burst": burst, "paced": {"tickets": len(pids), "non_escalated": len(pplain),
                                                         "rate_sent": rate, "p50_ms": pct(plat, 0.5),
                                                         "p95_ms": pct(plat, 0.95)}}
    time.sleep(1.0)  # a late second write would show here
    every = ids + pids
    result["written_once"] = all(arm.puts.get(t) == 1 for t in every)
    plain_all = plain + pplain
    result["unexpected_escalations"] = sum(  # the worker asked the LLM about a ticket this process did not
        any("LLM second opinion" in c["body"] for c in arm.zd.comments(t) if not c["public"]) for t in plain_all)
    if check_llm:
        escalated = [tid for k, tid in enumerate(ids) if k in esc] + [tid for k, tid in enumerate(pids)
                                                                    if k in esc_paced]
        by_llm, other = 0, []
        for tid in escalated:
            notes = [c["body"] for c in arm.zd.comments(tid) if not c["public"]]
            if any("decided by the LLM second opinion" in n for n in notes):
                by_llm += 1
            else:  # why not: the note's second-opinion line, or none (the worker did not escalate it)
                other += [next((ln for n in notes for ln in n.splitlines() if "LLM" in ln), "no LLM line")]
        result["escalated"], result["decided_by_llm"], result["not_by_llm"] = len(escalated), by_llm, other
        esc_lat = [arm.written[t] - (sent.get(t) or psent[t]) for t in escalated if t in psent]
        result["paced"]["escalated_p50_ms"] = pct(esc_lat, 0.5)
    return result


def median(rounds: list[dict], *path: str) -> float | None:
    vals = []
    for r in rounds:
        v: Any = r
        for p in path:
            v = v[p]
        if v is not None:
            vals.append(v)
    return round(statistics.median(vals), 2) if vals else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tickets", type=int, help="burst tickets per arm (default 300; 60 with --quick)")
    p.add_argument("--paced", type=int, help="paced tickets per arm (default 150; 40 with --quick)")
    p.add_argument("--paced-rate", type=float, default=10.0, help="paced tickets a second (default 10)")
    p.add_argument("--llm-latency", type=float, default=1.0, help="the LLM sandbox's answer time, s (default 1)")
    p.add_argument("--repeat", type=int, help="rounds of off/on (default 2; 1 with --quick)")
    p.add_argument("--model-dir", default="", help="model folder (default: $TRIAGE_MODEL_DIR or the shipped model)")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    n = args.tickets or (60 if args.quick else 300)
    m = args.paced or (40 if args.quick else 150)
    repeat = args.repeat or (1 if args.quick else 2)
    out_dir = REPO / "bench" / "out"
    logs = out_dir / "escalation_bench_logs"
    logs.mkdir(parents=True, exist_ok=True)
    if not args.model_dir:  # one model folder for this process and every worker, named once
        from model.runtime import DEFAULT_MODEL_DIR

        args.model_dir = os.environ.get("TRIAGE_MODEL_DIR") or str(DEFAULT_MODEL_DIR)
    texts = load_texts(n + m, args.seed)
    burst, paced = texts[:n], texts[n:]
    log("scoring the texts once to know which escalate ...")
    esc_all = escalated_set(texts, args.model_dir)
    esc, esc_paced = {i for i in esc_all if i < n}, {i - n for i in esc_all if i >= n}
    log(f"{len(esc)} of {n} burst and {len(esc_paced)} of {m} paced tickets escalate")
    rounds: dict[str, list[dict]] = {"off": [], "on": []}
    with LlmSandbox(api_key="sk-bench") as llm:
        llm.think_s = args.llm_latency
        for r in range(repeat):
            for name in ("off", "on"):
                log(f"round {r + 1}/{repeat}: escalation {name} ...")
                arm = Arm(llm if name == "on" else None, args.model_dir, logs, f"{name}{r}")
                try:
                    rounds[name].append(run_arm(arm, burst, paced, args.paced_rate, esc, esc_paced, name == "on"))
                finally:
                    arm.close()
                log(json.dumps(rounds[name][-1]))
        calls = llm.calls
    summary = {name: {"burst_rate_per_s": median(rs, "burst", "rate_per_s"),
                      "burst_p95_ms": median(rs, "burst", "p95_ms"),
                      "paced_p50_ms": median(rs, "paced", "p50_ms"), "paced_p95_ms": median(rs, "paced", "p95_ms"),
                      "written_once": all(x["written_once"] for x in rs)} for name, rs in rounds.items()}
    # the same round's arms ran back to back: their ratio cancels most of what else the machine did
    ratios = [{"burst_rate": round(on["burst"]["rate_per_s"] / off["burst"]["rate_per_s"], 3),
               "paced_p95": round(on["paced"]["p95_ms"] / off["paced"]["p95_ms"], 3)}
              for off, on in zip(rounds["off"], rounds["on"], strict=True)]
    summary["on/off"] = {"burst_rate_per_s": median(ratios, "burst_rate"), "paced_p95_ms": median(ratios, "paced_p95"),
                         "burst_p95_ms": None, "paced_p50_ms": None, "written_once": summary["on"]["written_once"]}
    meta = {"tickets": n, "paced": m, "paced_rate": args.paced_rate, "llm_latency_s": args.llm_latency,
            "repeat": repeat, "model_dir": args.model_dir, "escalated_burst": len(esc),
            "escalated_paced": len(esc_paced), "llm_calls": calls,
            "decided_by_llm": [x.get("decided_by_llm") for x in rounds["on"]],
            "escalated_checked": [x.get("escalated") for x in rounds["on"]], "cpus": os.cpu_count(), "ratios": ratios,
            "load_average": os.getloadavg()}
    (out_dir / "escalation_bench.json").write_text(json.dumps({"meta": meta, "summary": summary, "rounds": rounds},
                                                              indent=1))
    print(f"Escalation off vs on, non-escalated tickets only ({n} burst + {m} paced at {args.paced_rate:g}/s, "
          f"{len(esc)}+{len(esc_paced)} escalated, LLM sandbox {args.llm_latency:g} s, one worker, "
          f"median of {repeat} round(s); on/off: the median of each round's ratio):\n")
    print("| escalation | burst tickets/s | burst p95 ms | paced p50 ms | paced p95 ms | written once |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        cells = [s[k] if s[k] is not None else "-" for k in ("burst_rate_per_s", "burst_p95_ms", "paced_p50_ms",
                                                             "paced_p95_ms", "written_once")]
        print(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    print(f"\nLLM calls {calls}; escalated tickets decided by the LLM per round: {meta['decided_by_llm']} "
          f"of {meta['escalated_checked']}")
    unexpected = [x["unexpected_escalations"] for x in rounds["on"]]
    if any(unexpected):
        print(f"\nWARNING: the workers escalated tickets this process did not expect ({unexpected} per round): "
              f"did the model folder change during the run? Those figures mix escalated tickets in.")
    ok = all(s["written_once"] for s in summary.values()) and meta["decided_by_llm"] == meta["escalated_checked"]
    ok = ok and not any(unexpected)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
