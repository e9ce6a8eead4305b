"""Bench-only switches (bench/pipeline_bench.py --arms): turns hot-path devices off in the processes
the bench starts, so one run measures each device's gain. On PYTHONPATH only when BENCH_DEVICES_OFF
is set; production code has no such switch.

  peek   the worker's look-ahead: the next job's first ticket scored at a job's last one
  group  the ingress's webhook grouping (GroupSubmit): one job per delivery instead
  beat   TriageWorker's heartbeat/set_state overrides (fewer round trips): RQ's own instead
  warm   the model's warm-up call at load (worker.scoring.ModelScorer): the first ticket makes it
"""

import os

_off = {x for x in os.environ.get("BENCH_DEVICES_OFF", "").split(",") if x}

if "peek" in _off:
    from worker.queueing import Enqueuer

    Enqueuer.peek = lambda self, n: []  # type: ignore[method-assign]

if "group" in _off:
    import asyncio

    from connectors.webhook import GroupSubmit

    async def _alone(self, event):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(None, self.enqueuer.submit, event)

    GroupSubmit.submit = _alone  # type: ignore[method-assign]

if "warm" in _off:
    from worker.scoring import ModelScorer

    def _cold(self, model):  # type: ignore[no-untyped-def]
        self.model = model

    ModelScorer.__init__ = _cold  # type: ignore[method-assign]

if "beat" in _off:
    from rq import SimpleWorker

    from worker.jobs import TriageWorker

    TriageWorker.heartbeat = SimpleWorker.heartbeat  # type: ignore[method-assign]
    TriageWorker.set_state = SimpleWorker.set_state  # type: ignore[method-assign]

if _off:
    import sys

    print(f"bench switches: off {','.join(sorted(_off))}", file=sys.stderr, flush=True)
