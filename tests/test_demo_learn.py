"""`triage demo --learn`: the real command on a small generated team, and the branch a passing gate takes.

The command runs as a newcomer runs it (its own process, its own Redis and sandbox Zendesk), with a
home folder in tmp_path (the feature cache goes there) and no public data (the generated team, no
replay: fast). Nothing may be written outside the demo folder but that cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model.runtime import DEFAULT_MODEL_DIR
from worker import demo_learn

REPO = Path(__file__).resolve().parent.parent
TEAM = 900  # the generated team's smallest size whose every class clears learn's per-class floor


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_the_learning_loop_runs_as_a_newcomer_runs_it(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TRIAGE_MODELS_DIR", "TRIAGE_MODEL_DIR")
           and not k.startswith(("ZENDESK_", "ZENPY_"))}
    env.update(HOME=str(home), TRIAGE_DATA_ROOT=str(tmp_path / "no-data"), MPLCONFIGDIR=str(home / ".config"))
    repo_before = {d: _listing(REPO / d) for d in ("models", "history", "demo-learn")}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "demo", "--learn", "--tickets", str(TEAM),
                           "--dir", "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=420)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out, out

    # each step on one line, with the real command it ran
    for line in ("[1/6] a sandbox Zendesk stands for yours: $ export ZENDESK_SUBDOMAIN=",
                 "[2/6] pull the solved tickets, with the agents' priorities and corrections: "
                 "$ triage history pull zendesk --out demo/history/zendesk.jsonl",
                 "[3/6] learn a challenger from them, compared with the champion (the shipped model): "
                 "$ triage learn --data demo/history/zendesk.jsonl",
                 "[4/6] the registry's versions: $ triage model list",
                 "[5/6] a worker follows the models folder: the champion writes, the challenger shadows: "
                 "$ TRIAGE_MODEL_DIR=demo/models triage worker"):
        assert line in out, (line, out)
    assert f"{TEAM} tickets of a generated team" in out
    assert "rows in demo/history/zendesk.jsonl" in out  # history pull's own summary
    assert "report: demo/models/v1/learn_report/report.md (plot: demo/models/v1/learn_report/coverage.png)" in out
    assert "shadow: the challenger triage-v3+team-" in out and "never written to the ticket" in out
    registry = json.loads((work / "demo/models/registry.json").read_text())
    audit = [json.loads(line) for line in (work / "demo/models/audit.jsonl").read_text().splitlines()]
    challenger = registry["versions"][1]
    if challenger["gate"]["passed"]:
        assert "gate PASSED" in out and "[6/6] the challenger passed the gate: make it the champion: " \
                                          "$ triage model promote" in out
        assert [a["action"] for a in audit] == ["add", "promote"]
    else:  # the generated team's head unlearns obvious urgency (support-like checks): refused, forced, rolled back
        assert "gate FAILED: " in out and "It is kept, marked FAILED, and not promoted." in out
        assert "[6/6] the challenger failed the gate: promote refuses it: $ triage model promote" in out
        assert "refused: version 1 (" in out and "--force --reason" in out
        assert [a["action"] for a in audit] == ["add", "promote", "rollback"]
        assert audit[1]["forced"] and audit[1]["reason"] == "demo: to see the hot swap"
        assert f"the worker swapped to {challenger['name']} " in out  # hot swap, no restart
        assert "the worker swapped to triage-v3 " in out  # and back after the rollback
    assert (work / "demo/models/v1/learn_report/coverage.png").is_file()

    # nothing outside the demo folder, except the feature cache (and matplotlib's) in the home folder
    assert sorted(p.name for p in work.iterdir()) == ["demo"]
    assert sorted(p.name for p in (work / "demo").iterdir()) == [".triage-demo-learn", "history", "models"]
    assert any((home / ".cache/helpdesk-triage/features").glob("*.npz"))
    assert {p.name for p in home.iterdir()} <= {".cache", ".config"}
    assert {d: _listing(REPO / d) for d in repo_before} == repo_before


def test_the_demo_folder_is_never_someone_elses(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(demo_learn.DemoDirError, match="is not a demo folder: pick another with --dir"):
        demo_learn.prepare_dir(theirs)
    ours = demo_learn.prepare_dir(tmp_path / "ours")
    (ours / "models").mkdir()
    (ours / "models" / "registry.json").write_text("{}")
    assert demo_learn.prepare_dir(ours) == ours and not (ours / "models").exists()  # an earlier demo's: emptied


def test_a_challenger_that_passed_is_promoted_and_the_worker_swaps_to_it(tmp_path: Path, redis_server, redis,
                                                                          monkeypatch, capsys) -> None:
    from connectors.zendesk.sandbox import ZendeskSandbox
    from model.registry import Registry

    candidate = tmp_path / "candidate"
    shutil.copytree(DEFAULT_MODEL_DIR, candidate, ignore=shutil.ignore_patterns("*.fp32.onnx"))
    meta = json.loads((candidate / "triage.json").read_text())
    meta["version"] = "triage-v3-passed"
    (candidate / "triage.json").write_text(json.dumps(meta))
    registry = Registry(tmp_path / "models")
    challenger = registry.add(candidate, gate={"passed": True, "checks": [], "reasons": []})
    for name in ("ZENPY_FORCE_NETLOC", "ZENPY_FORCE_SCHEME", "ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL",
                 "ZENDESK_API_TOKEN", "ZENDESK_BOT_USER_ID", "ZENDESK_WEBHOOK_SECRET", "REDIS_URL",
                 "TRIAGE_MODELS_DIR"):
        monkeypatch.setenv(name, "")  # restored after the test: the demo sets them
    with ZendeskSandbox(email=demo_learn.BOT[0], token=demo_learn.BOT[1]) as zd:
        demo_learn._environment(zd, redis_server.url, registry.root)
        assert demo_learn._live(zd, redis_server.url, registry, challenger, passed=True) == 0
    out = capsys.readouterr().out
    assert "[6/6] the challenger passed the gate: make it the champion: $ triage model promote" in out
    assert "is the champion; workers with TRIAGE_MODEL_DIR=" in out  # promote's own answer
    assert "the worker swapped to triage-v3-passed " in out and "refused" not in out
    assert registry.version("champion").n == challenger.n
