"""What a ticket costs a worker besides the model: CPU on the job thread, through RQ and without it.

Same tickets, same sandbox Zendesk (in this process), a fixed scorer instead of the model (its
cost is the model bench's business), a real redis-server. The ways, alternating over --rounds:
  rq-G    the tickets enqueued G at a time (Enqueuer.submit_many: one job per G, as the ingress
          groups deliveries that arrive together), then `TriageWorker.work(burst=True)`: RQ's
          per-job bookkeeping, the job's revision leases, the use case, the zenpy write-back
  direct  `TriageService.process` called on each event in a loop: the use case and the write-back only
Prints the median CPU milliseconds per ticket on the job thread for each, and what RQ adds; then two
parts of the direct way on their own (the Zendesk PUT, ZendeskWriter.apply; the decision log's
record, DecisionLog.record), each over the round's tickets. Run it on an otherwise idle machine:

  python bench/job_overhead_bench.py                 # 400 tickets, 3 rounds, G = 1, 4, 16
  python bench/job_overhead_bench.py --tickets 200 --rounds 5 --groups 1,8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from pipeline_support import EMAIL, TOKEN, runtime, settings  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from connectors.zendesk import normalize  # noqa: E402
from connectors.zendesk.sandbox import ZendeskSandbox  # noqa: E402
from worker.jobs import TriageWorker  # noqa: E402
from worker.local_redis import LocalRedis  # noqa: E402
from worker.triage import decide  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tickets", type=int, default=400, help="tickets per way and round (default 400)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each running every way (default 3)")
    p.add_argument("--groups", default="1,4,16", help="tickets per job to compare (default 1,4,16)")
    args = p.parse_args()

    redis = LocalRedis().start()
    zd = ZendeskSandbox(email=EMAIL, token=TOKEN).start()
    os.environ.update(zd.env)
    rules = Path(tempfile.mkdtemp()) / "rules.yaml"
    rules.write_text((REPO / "deploy" / "rules.example.yaml").read_text())
    for group in ("Escalations", "Billing"):
        zd.add_group(group)
    rt = runtime(settings(redis.url, str(rules), zd))
    bot = str(zd.bot_user_id)
    scorer = rt.scorer

    def events(n: int) -> list:
        ids = [zd.add_ticket(f"Checkout {i}", f"Checkout is down since 9am (ticket {i}); we lose orders, "
                             "this is unacceptable") for i in range(n)]
        return [normalize.parse(zd.event_payload(t["id"]), bot).event for t in ids]

    def via_rq(group: int) -> Callable[[list], float]:
        def run(batch: list) -> float:
            for start in range(0, len(batch), group):
                rt.enqueuer.submit_many(batch[start:start + group])
            worker = TriageWorker([rt.enqueuer.queue], connection=rt.redis, serializer=JSONSerializer,
                                  context=rt.job_context)
            begin = time.thread_time()
            worker.work(burst=True, logging_level="WARNING")
            return time.thread_time() - begin
        return run

    def direct(batch: list) -> float:
        start = time.thread_time()
        for e in batch:
            rt.service.process(e, lambda ev: scorer.score([ev.text])[0])
        return time.thread_time() - start

    def parts(batch: list) -> dict[str, float]:
        service = rt.service
        writer, log = service.writers["zendesk"], service.decisions
        assert log is not None
        decisions = [decide(e, scorer.score([e.text])[0], service.rules(), service.clock()) for e in batch]
        spent = {}
        for name, part in (("PUT (ZendeskWriter.apply)", writer.apply),
                           ("decision log (DecisionLog.record)", lambda e, d: log.record(e, "written", d))):
            start = time.thread_time()
            for e, d in zip(batch, decisions, strict=True):
                part(e, d)
            spent[name] = time.thread_time() - start
        return spent

    ways: dict[str, Callable[[list], float]] = {f"rq-{g}": via_rq(int(g)) for g in args.groups.split(",")}
    ways["direct"] = direct
    ms: dict[str, list[float]] = {w: [] for w in ways}
    part_ms: dict[str, list[float]] = {}
    try:
        for r in range(args.rounds):
            for name, way in ways.items():
                ms[name].append(1e3 * way(events(args.tickets)) / args.tickets)
                print(f"round {r + 1}: {name} {ms[name][-1]:.2f} ms CPU a ticket", file=sys.stderr)
            for name, seconds in parts(events(args.tickets)).items():
                part_ms.setdefault(name, []).append(1e3 * seconds / args.tickets)
    finally:
        zd.stop()
        redis.close()
    plain = statistics.median(ms["direct"])
    print(f"\n{args.tickets} tickets x {args.rounds} rounds, CPU on the job thread per ticket (median):")
    print(f"  the use case and write-back alone:  {plain:.2f} ms")
    for name in ways:
        if name != "direct":
            rq = statistics.median(ms[name])
            label = f"{name} ({name[3:]} ticket{'s' if name[3:] != '1' else ''} a job):"
            print(f"  {label:<35} {rq:.2f} ms, RQ adds {rq - plain:.2f} ms")
    print("  parts of the use case, alone:")
    for name, values in part_ms.items():
        print(f"    {name + ':':<37} {statistics.median(values):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
