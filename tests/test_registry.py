"""The model registry: versions, champion / challenger, promote (gate, --force with a reason), rollback,
the audit log, and `triage model list|promote|rollback`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model.registry import Registry, RegistryError
from model.runtime import DEFAULT_MODEL_DIR


def candidate(tmp_path: Path, name: str, passed: bool | None) -> tuple[Path, dict | None]:
    folder = tmp_path / f"incoming-{name}"
    folder.mkdir()
    for f in ("triage.json", "tokenizer.json", "model.int8.onnx"):
        shutil.copy2(Path(DEFAULT_MODEL_DIR) / f, folder / f)
    meta = json.loads((folder / "triage.json").read_text())
    meta["version"] = name
    (folder / "triage.json").write_text(json.dumps(meta))
    gate = None if passed is None else {
        "passed": passed, "champion": "triage-v2", "reasons": [] if passed else ["team urgency macro-F1: 0.30 < 0.36"],
        "checks": [{"name": "team urgency macro-F1", "champion": 0.36, "challenger": 0.42 if passed else 0.30,
                    "passed": passed, "rule": ""}]}
    return folder, gate


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def test_the_shipped_model_is_version_0_and_champion(reg: Registry) -> None:
    [row] = reg.table()
    assert row["n"] == 0 and row["aliases"] == ["champion"] and row["source"] == "shipped"
    assert reg.champion_dir() == Path(DEFAULT_MODEL_DIR).resolve()


def test_add_promote_rollback_with_the_audit_log(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.add(*candidate(tmp_path, "team-1", True), who="ana")
    assert v1.n == 1 and reg.version("challenger").n == 1 and (reg.root / "v1" / "triage.json").is_file()
    assert not (tmp_path / "incoming-team-1").exists()  # moved in
    reg.promote(who="ana")
    assert reg.champion_dir() == reg.root / "v1" and "challenger" not in reg.state().aliases
    with pytest.raises(RegistryError, match="already the champion"):
        reg.promote(1)
    back = reg.rollback(reason="agents complain", who="ben")
    assert back.n == 0 and reg.champion_dir() == Path(DEFAULT_MODEL_DIR).resolve()
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    log = reg.audit()
    assert [e["action"] for e in log] == ["add", "promote", "rollback"]
    assert log[1]["who"] == "ana" and log[1]["gate"]["challenger_macro_f1"] == 0.42 and log[1]["previous"] == 0
    assert log[2]["who"] == "ben" and log[2]["reason"] == "agents complain" and log[2]["at"].endswith("Z")


def test_a_challenger_that_failed_the_gate_is_kept_marked_and_needs_force_with_a_reason(reg: Registry,
                                                                                     tmp_path: Path) -> None:
    reg.add(*candidate(tmp_path, "bad", False))
    assert reg.table()[1]["gate"] == "FAILED" and reg.table()[1]["aliases"] == ["challenger"]
    with pytest.raises(RegistryError, match=r"failed the gate \(team urgency macro-F1.*--force --reason"):
        reg.promote()
    with pytest.raises(RegistryError, match="--force needs --reason"):
        reg.promote(force=True)
    assert reg.state().aliases["champion"] == 0
    reg.promote(force=True, reason="trial week on billing", who="ana")
    entry = reg.audit()[-1]
    assert entry["forced"] is True and entry["reason"] == "trial week on billing"
    assert reg.state().aliases["champion"] == 1


def test_an_ungated_version_needs_force_too(reg: Registry, tmp_path: Path) -> None:
    reg.add(*candidate(tmp_path, "hand-made", None))
    with pytest.raises(RegistryError, match="never gated"):
        reg.promote()


def test_bad_version_names_say_what_exists(reg: Registry) -> None:
    with pytest.raises(RegistryError, match="no version 7; known: 0"):
        reg.promote(7)
    with pytest.raises(RegistryError, match="not a version"):
        reg.promote("latest")
    with pytest.raises(RegistryError, match="no challenger set"):
        reg.promote()
    (reg.root).mkdir(parents=True, exist_ok=True)
    reg.file.write_text("{not json")
    with pytest.raises(RegistryError, match="unreadable"):
        reg.state()


def test_cli_list_promote_rollback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    monkeypatch.setenv("TRIAGE_MODELS_DIR", str(tmp_path / "models"))
    reg = Registry()
    reg.add(*candidate(tmp_path, "team-2", False))
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert "challenger" in out and "FAILED" in out and "0.3 vs 0.36" in out
    assert main(["model", "promote"]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["model", "promote", "1", "--force", "--reason", "pilot", "--by", "ana"]) == 0
    assert "version 1 (team-2) is the champion" in capsys.readouterr().out
    assert main(["model", "rollback"]) == 0 and reg.state().aliases["champion"] == 0
    assert "rolled back: version 0" in capsys.readouterr().out
    assert main(["model", "list", "--audit"]) == 0
    assert [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()] == \
        ["add", "promote", "rollback"]


def test_list_shows_the_routing_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from worker.cli import main

    monkeypatch.setenv("TRIAGE_MODELS_DIR", str(tmp_path / "models"))
    folder, gate = candidate(tmp_path, "team-routed", True)
    meta = json.loads((folder / "triage.json").read_text())
    meta["routing"] = {"field": "group", "labels": ["Billing", "Tier 2", "Service desk"],
                       "figures": {"held_out": {"accuracy": 0.68, "majority_accuracy": 0.36}}}
    (folder / "triage.json").write_text(json.dumps(meta))
    Registry().add(folder, gate=gate)
    assert main(["model", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "3 groups, 0.68 vs 0.36" in lines[2] and " - " in lines[1]  # v0, the shipped model: no routing head
    assert main(["model", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["routing"] is None and rows[1]["routing"]["groups"] == 3
