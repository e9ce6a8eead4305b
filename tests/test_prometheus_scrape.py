"""A real Prometheus (Debian's `prometheus`) scrapes a running `serve` and a worker process, with our
alert rules loaded: a signed webhook goes through, and its delivery, write-back and the queue show
up in Prometheus' own query API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
import pytest
import yaml

from worker.local_redis import free_port

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_support import RULES, SECRET, runtime, serve, settings, worker_env  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

WORKER = """
import sys
sys.path.insert(0, {tests!r})
from rq.serializers import JSONSerializer
from pipeline_support import FixedScorer
from worker import bootstrap
from worker.jobs import TriageWorker
from worker.settings import load_settings
rt = bootstrap.build(load_settings(dotenv=None))
rt.__dict__["scorer"] = FixedScorer()
kw = {{"context": rt.job_context}} if hasattr(rt, "job_context") else {{}}
if not kw:
    bootstrap.install(rt)
TriageWorker([rt.enqueuer.queue], connection=rt.redis, serializer=JSONSerializer, **kw).work(
    burst=False, with_scheduler=False, logging_level="WARNING")
"""


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus not found: scripts/test installs Debian's `prometheus` package")
        pytest.skip("prometheus not found: `apt-get install prometheus` (scripts/test does)")
    return path


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]


def wait_for(base: str, promql: str, check, timeout: float = 60.0) -> list[dict]:
    deadline, result = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            result = query(base, promql)
        except OSError:
            result = []
        if check(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql}: {result}")


def test_prometheus_scrapes_serve_and_a_worker(redis, redis_server, zd, tmp_path: Path):
    binary = prometheus_binary()
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    s = settings(redis_server.url, str(rules), zd)
    rt = runtime(s)
    server, url = serve(rt)
    worker_port, prom_port = free_port(), free_port()
    env = {**worker_env(s, zd), "TRIAGE_METRICS_PORT": str(worker_port)}
    worker = subprocess.Popen([sys.executable, "-c", WORKER.format(tests=str(Path(__file__).parent))], env=env,
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO / "deploy" / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "triage-serve", "static_configs": [{"targets": [url.removeprefix("http://")]}]},
            {"job_name": "triage-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{prom_port}"
    try:
        tid = zd.add_ticket("Checkout down", "Checkout is down since 9am, this is unacceptable")["id"]
        body, headers = zd.signed_trigger(tid, SECRET)
        assert httpx.post(f"{url}/webhooks/zendesk", content=body, headers=headers, timeout=10).status_code < 300
        up = wait_for(base, "up", lambda r: len(r) == 2 and all(x["value"][1] == "1" for x in r))
        assert {x["metric"]["job"] for x in up} == {"triage-serve", "triage-worker"}
        # serve runs in this test process: its counters may hold earlier tests' counts, the worker's do not
        wait_for(base, 'sum(triage_writebacks_total{job="triage-worker",vendor="zendesk",status="written"})',
                 lambda r: r and r[0]["value"][1] == "1")
        wait_for(base, 'triage_deliveries_total{job="triage-serve",vendor="zendesk",outcome="accepted"}',
                 lambda r: r and float(r[0]["value"][1]) >= 1)
        depth = wait_for(base, "triage_queue_depth", lambda r: len(r) == 1)
        assert depth[0]["metric"]["job"] == "triage-serve"
        labels = wait_for(base, 'triage_labels_total{job="triage-worker",head="urgency"}', lambda r: len(r) == 1)
        assert labels[0]["metric"]["label"] == "high"
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as r:
            groups = json.load(r)["data"]["groups"]
        alerting = [rule for g in groups for rule in g["rules"]]
        assert len(alerting) == 7 and all(rule["health"] in ("ok", "unknown") for rule in alerting)
    except AssertionError as e:
        worker.terminate()
        raise AssertionError(f"{e}; worker stderr: {worker.communicate(timeout=10)[1].decode()[-3000:]}") from None
    finally:
        server.should_exit = True
        for p in (prom, worker):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
