"""deploy/prometheus, deploy/grafana, the compose profile and the k8s additions, checked with the real
tools: promtool (Debian's `prometheus` package; scripts/test installs it) for the config, the alert
rules and their unit tests, and every dashboard query; a JSON Schema for the KEDA ScaledObject."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from redis import Redis

REPO = Path(__file__).resolve().parent.parent
PROM = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
K8S = REPO / "deploy" / "k8s"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool not found: scripts/test installs Debian's `prometheus` package")
        pytest.skip("promtool not found: `apt-get install prometheus` (scripts/test does)")
    return path


def run(*args: str, cwd: Path = PROM) -> str:
    r = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_scrape_config_is_valid():
    assert "SUCCESS" in run("check", "config", "prometheus.yml")


def test_alert_rules_are_valid_and_their_unit_tests_pass():
    out = run("check", "rules", "alerts.yml")
    assert "SUCCESS: 7 rules found" in out
    assert "SUCCESS" in run("test", "rules", "alerts_test.yml")
    names = {r["alert"] for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert {"TriageBacklogGrowing", "TriageDeadLetters", "TriageWritebackErrors", "TriageLabelDrift",
            "TriageSurge"} <= names


def _dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "helpdesk-triage.json").read_text())


def test_every_dashboard_query_is_valid_promql(tmp_path: Path):
    """promtool parses each panel's query, as a recording rule (Grafana's $__rate_interval -> 5m)."""
    exprs = [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]
    assert len(exprs) >= 19
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(exprs)} rules found" in run("check", "rules", "queries.yml", cwd=tmp_path)


def exported_names(redis: Redis) -> set[str]:
    """Every series name serve's and a worker's /metrics can show."""
    from worker.metrics import REGISTRY, RedisCollector

    redis.set("triage:monitor:state", json.dumps({"psi": {"sentiment:hourly": 0.1}, "rates": {"abstain:current": 0}}))
    names: set[str] = set()
    for family in [*REGISTRY.collect(), *RedisCollector(redis, "triage").collect()]:
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count", ""),
                    "info": ("_info",)}.get(family.type, ("",))
        names |= {family.name + s for s in suffixes}
    return names


def test_the_dashboard_shows_what_the_issue_asks_for_from_metrics_we_export(redis: Redis):
    d = _dashboard()
    titles = " | ".join(p["title"].lower() for p in d["panels"])
    for words in ("tickets decided", "sentiment mix", "urgency mix", "abstain rate", "high-urgency rate",
                  "latency", "write-back errors", "queue depth", "dead letters", "drift"):
        assert words in titles, words
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    known = exported_names(redis)
    for p in d["panels"]:
        assert p["datasource"]["uid"] == "triage-prometheus"
        for t in p["targets"]:
            for name in re.findall(r"\btriage_[a-z_]+", t["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert name in known or base in known, f"{p['title']}: {name} is not exported"
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert ds["datasources"][0]["uid"] == "triage-prometheus"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "helpdesk-triage.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_alert_rules_use_metrics_we_export(redis: Redis):
    known = exported_names(redis)
    for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]:
        for r in g["rules"]:
            for name in re.findall(r"\btriage_[a-z_]+", r["expr"]):
                assert name in known, f"{r['alert']}: {name}"


def test_compose_monitoring_profile_mounts_the_provisioning():
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana", "monitor"):
        assert services[name]["profiles"] == ["monitoring"], name
    assert services["monitor"]["command"] == ["monitor"]
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            src = volume.split(":")[0]
            if src.startswith("./"):
                assert (REPO / "deploy" / src).exists(), volume
    assert "9100" in str(compose["x-triage"]["environment"]["TRIAGE_METRICS_PORT"])
    scrape = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    assert jobs["triage-serve"]["static_configs"][0]["targets"] == ["serve:8000"]
    assert jobs["triage-worker"]["dns_sd_configs"][0]["port"] == 9100


def test_k8s_scrape_annotations_and_the_keda_scaled_object():
    docs = {}
    for f in ("serve.yaml", "worker.yaml", "monitor.yaml", "keda.yaml"):
        for d in yaml.safe_load_all((K8S / f).read_text()):
            docs[(d["kind"], d["metadata"]["name"])] = d
    for name, port in (("triage-serve", "8000"), ("triage-worker", "9100")):
        ann = docs[("Deployment", name)]["spec"]["template"]["metadata"]["annotations"]
        assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": port, "prometheus.io/path": "/metrics"}
    worker = docs[("Deployment", "triage-worker")]["spec"]["template"]["spec"]["containers"][0]
    assert worker["ports"][0]["containerPort"] == 9100
    config = yaml.safe_load_all((K8S / "config.yaml").read_text())
    assert next(config)["data"]["TRIAGE_METRICS_PORT"] == "9100"
    scaled = docs[("ScaledObject", "triage-worker")]
    schema = json.loads((K8S / "schemas" / "scaledobject.schema.json").read_text())
    jsonschema.validate(scaled, schema)
    assert scaled["spec"]["scaleTargetRef"]["name"] == "triage-worker"
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == "rq:queue:triage"
    assert docs[("Deployment", "triage-monitor")]["spec"]["template"]["spec"]["containers"][0]["args"] == ["monitor"]
    broken = json.loads(json.dumps(scaled))
    del broken["spec"]["triggers"][0]["metadata"]["listName"]
    broken["spec"]["triggers"][0]["metadata"]["listLength"] = 4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
