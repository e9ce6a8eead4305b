"""Model versions under one folder, aliases `champion` and `challenger`, and an audit log.

    models/
      registry.json     versions (number, name, folder, gate verdict, when), aliases, champion history
      audit.jsonl       one line per change: who, when, what, the gate's figures, the reason
      v1/ v2/ ...       artifact folders added by `triage learn` (version 0 is the shipped model, in place)

The folder is TRIAGE_MODELS_DIR (default ./models). Every change takes an exclusive lock on
models/.lock and rewrites registry.json atomically, so two admins (or a learn run and an admin)
cannot lose each other's change. A challenger that failed the gate is kept and marked; promoting it
needs force and a reason, both kept in the audit log. `rollback` puts back the champion before the
current one. `champion_dir()` is what a worker loads (model/hot.py watches it).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.errors import TriageError

ALIASES = ("champion", "challenger")


class RegistryError(TriageError):
    """A registry change that cannot be made; the message says why and what to do."""


@dataclass
class Version:
    n: int
    name: str  # the model's own version (triage.json)
    path: str  # absolute, or relative to the models folder
    added: str
    source: str = "learn"  # shipped | learn
    gate: dict[str, Any] | None = None  # the gate verdict it was added with (None: not gated)

    @property
    def gate_passed(self) -> bool | None:
        return None if self.gate is None else bool(self.gate.get("passed"))


@dataclass
class State:
    versions: list[Version] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)
    champions: list[int] = field(default_factory=list)  # every champion so far, oldest first (rollback)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _who() -> str:
    try:
        return os.environ.get("TRIAGE_ADMIN") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def default_root() -> Path:
    return Path(os.environ.get("TRIAGE_MODELS_DIR") or "models")


class Registry:
    def __init__(self, root: str | Path | None = None, shipped: str | Path | None = None):
        from model.runtime import DEFAULT_MODEL_DIR

        self.root = Path(root or default_root())
        self.shipped = Path(shipped or DEFAULT_MODEL_DIR).resolve()

    # -- reading -------------------------------------------------------------------------------------

    @property
    def file(self) -> Path:
        return self.root / "registry.json"

    def state(self) -> State:
        """The registry now; a folder without one starts with the shipped model as version 0, champion."""
        if not self.file.is_file():
            return State([Version(0, _name(self.shipped), str(self.shipped), _now(), "shipped")],
                         {"champion": 0}, [0])
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            return State([Version(**v) for v in data["versions"]], dict(data["aliases"]),
                         list(data.get("champions", [])))
        except (ValueError, KeyError, TypeError) as e:
            raise RegistryError(f"{self.file} is unreadable ({type(e).__name__}); restore it from a backup or "
                                "delete the folder's registry.json to start again from the shipped model") from None

    def version(self, n: int | str, state: State | None = None) -> Version:
        state = state or self.state()
        if isinstance(n, str) and n in ALIASES:
            if n not in state.aliases:
                raise RegistryError(f"no {n} set: `triage learn` adds a challenger")
            n = state.aliases[n]
        try:
            number = int(str(n).lstrip("v"))
        except ValueError:
            raise RegistryError(f"{n!r} is not a version: give a number (see `triage model list`), champion "
                                "or challenger") from None
        for v in state.versions:
            if v.n == number:
                return v
        raise RegistryError(f"no version {number}; known: {', '.join(str(v.n) for v in state.versions)}")

    def path(self, v: Version) -> Path:
        p = Path(v.path)
        return p if p.is_absolute() else self.root / p

    def champion_dir(self) -> Path:
        return self.path(self.version("champion"))

    def audit(self) -> list[dict[str, Any]]:
        log = self.root / "audit.jsonl"
        if not log.is_file():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]

    # -- changing --------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[State]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self.state()
                yield state
                self._save(state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, state: State) -> None:
        tmp = self.file.with_name("registry.json.tmp")
        tmp.write_text(json.dumps({"versions": [asdict(v) for v in state.versions], "aliases": state.aliases,
                                   "champions": state.champions}, indent=2), encoding="utf-8")
        os.replace(tmp, self.file)

    def _log(self, action: str, **fields: Any) -> None:
        entry = {"at": _now(), "who": fields.pop("who", None) or _who(), "action": action, **fields}
        with (self.root / "audit.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def add(self, model_dir: str | Path, gate: dict[str, Any] | None = None, who: str = "",
            move: bool = True) -> Version:
        """Add an artifact folder as the next version (moved, or copied, into the models folder) and make
        it the challenger."""
        src = Path(model_dir)
        if not (src / "triage.json").is_file():
            raise RegistryError(f"{src} is not a model folder (no triage.json)")
        with self._locked() as state:
            n = max(v.n for v in state.versions) + 1
            dest = self.root / f"v{n}"
            if dest.exists():
                raise RegistryError(f"{dest} exists but is not in the registry: move it away and retry")
            if move:
                shutil.move(str(src), dest)
            else:
                shutil.copytree(src, dest)
            v = Version(n, _name(dest), dest.name, _now(), "learn", gate)
            state.versions.append(v)
            state.aliases["challenger"] = n
        self._log("add", who=who, version=n, name=v.name, gate=_figures(gate))
        return v

    def promote(self, n: int | str = "challenger", *, force: bool = False, reason: str = "", who: str = "") -> Version:
        """Make a version the champion. One that failed the gate (or was never gated) needs force and a reason."""
        with self._locked() as state:
            v = self.version(n, state)
            if state.aliases.get("champion") == v.n:
                raise RegistryError(f"version {v.n} ({v.name}) is already the champion")
            if v.gate_passed is not True and v.source != "shipped":
                why = "failed the gate" if v.gate_passed is False else "was never gated"
                if not force:
                    detail = "; ".join((v.gate or {}).get("reasons", [])) or "no gate verdict"
                    raise RegistryError(f"version {v.n} ({v.name}) {why} ({detail}); promote it anyway with "
                                        "--force --reason \"why\"")
                if not reason.strip():
                    raise RegistryError("--force needs --reason \"why\": it goes into the audit log")
            if not (self.path(v) / "triage.json").is_file():
                raise RegistryError(f"version {v.n}'s folder {self.path(v)} is missing or incomplete")
            previous = state.aliases.get("champion")
            state.aliases["champion"] = v.n
            state.champions.append(v.n)
            if state.aliases.get("challenger") == v.n:
                del state.aliases["challenger"]
        self._log("promote", who=who, version=v.n, name=v.name, previous=previous, forced=force,
                  reason=reason or None, gate=_figures(v.gate))
        return v

    def rollback(self, *, reason: str = "", who: str = "") -> Version:
        """Put back the champion before the current one."""
        with self._locked() as state:
            if len(state.champions) < 2:
                raise RegistryError("nothing to roll back to: this is the first champion")
            current = state.champions.pop()
            back = self.version(state.champions[-1], state)
            state.aliases["champion"] = back.n
        self._log("rollback", who=who, version=back.n, name=back.name, previous=current, reason=reason or None)
        return back

    def table(self) -> list[dict[str, Any]]:
        state = self.state()
        rows = []
        for v in state.versions:
            aliases = [a for a, n in state.aliases.items() if n == v.n]
            figures = _figures(v.gate) or {}
            rows.append({"n": v.n, "name": v.name, "aliases": aliases, "added": v.added, "source": v.source,
                         "gate": {True: "passed", False: "FAILED", None: "-"}[v.gate_passed], **figures,
                         "routing": _routing(self.path(v)), "path": str(self.path(v))})
        return rows


def _name(folder: Path) -> str:
    try:
        return str(json.loads((folder / "triage.json").read_text())["version"])
    except (OSError, ValueError, KeyError) as e:
        raise RegistryError(f"{folder}: no readable triage.json ({type(e).__name__})") from None


def _figures(gate: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gate's headline figures, for the list and the audit log."""
    if not gate:
        return None
    checks = {c["name"]: c for c in gate.get("checks", [])}
    f1 = checks.get("team urgency macro-F1", {})
    return {"passed": gate.get("passed"), "champion_macro_f1": _round(f1.get("champion")),
            "challenger_macro_f1": _round(f1.get("challenger")), "champion_at_gate": gate.get("champion")}


def _routing(folder: Path) -> dict[str, Any] | None:
    """The routing head's headline (model/routing_head.py), None when the version has none."""
    try:
        routing = json.loads((folder / "triage.json").read_text()).get("routing")
    except (OSError, ValueError):
        return None
    if not routing:
        return None
    held = (routing.get("figures") or {}).get("held_out") or {}
    return {"field": routing.get("field"), "groups": len(routing.get("labels") or ()),
            "accuracy": held.get("accuracy"), "majority_accuracy": held.get("majority_accuracy")}


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


# -- `triage model list | promote | rollback` ------------------------------------------------------------


def add_commands(msub: Any, fmt: Any) -> None:
    import argparse

    where = "the models folder: $TRIAGE_MODELS_DIR, default ./models"
    p = msub.add_parser("list", help="model versions, aliases and gate figures",
                        description=f"Every model version in {where} (version 0: the shipped model).")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--audit", action="store_true", help="the audit log instead: who changed what, when")
    p.set_defaults(func=_cmd_list)
    p = msub.add_parser("promote", formatter_class=fmt, help="make a version the champion",
                        description="Make a version (default: the challenger) the champion that workers score "
                                    "with. A version that failed the promotion gate needs --force and --reason.",
                        epilog="examples:\n  triage model promote            # the challenger, if it passed the gate\n"
                               "  triage model promote 3 --force --reason \"agents prefer it on billing tickets\"")
    p.add_argument("version", nargs="?", default="challenger", help="a number from `triage model list`, or challenger")
    p.add_argument("--force", action="store_true", help="promote even though it failed the gate")
    p.add_argument("--reason", default="", help="why (kept in the audit log; required with --force)")
    p.add_argument("--by", default="", help="who (default $TRIAGE_ADMIN or the login name)")
    p.set_defaults(func=_cmd_promote)
    p = msub.add_parser("compare", formatter_class=fmt, help="shadow mode: champion against challenger on live tickets",
                        description="While a challenger is set, workers following the models folder also score "
                                    "each ticket with it (never writing its answers back) and record both answers "
                                    "in Redis (no ticket text). This reports how often they agree and, on tickets "
                                    "agents have since handled (a history pulled after the fact), how often each "
                                    "was right.",
                        epilog="example:\n  triage history pull zendesk --since 2026-12-01 --out recent.jsonl\n"
                               "  triage model compare --history recent.jsonl")
    p.add_argument("--history", action="append", default=[], help="history file(s) with the agents' labels")
    p.set_defaults(func=_cmd_compare)
    p = msub.add_parser("rollback", help="put back the previous champion")
    p.add_argument("--reason", default="", help="why (kept in the audit log)")
    p.add_argument("--by", default="", help="who (default $TRIAGE_ADMIN or the login name)")
    p.set_defaults(func=_cmd_rollback)
    del argparse


def _cmd_list(args: Any) -> int:
    reg = Registry()
    if args.audit:
        for entry in reg.audit():
            print(json.dumps(entry, sort_keys=True))
        return 0
    rows = reg.table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'n':>3}  {'name':<34} {'aliases':<20} {'gate':<7} {'macro-F1 vs champion':<22} "
          f"{'routing (accuracy vs majority)':<32} added")
    for r in rows:
        figures = (f"{r['challenger_macro_f1']} vs {r['champion_macro_f1']}"
                   if r.get("challenger_macro_f1") is not None else "-")
        route = r.get("routing")
        routed = (f"{route['groups']} {route['field']}s, {route['accuracy']} vs {route['majority_accuracy']}"
                  if route else "-")
        print(f"{r['n']:>3}  {r['name'][:34]:<34} {','.join(r['aliases']) or '-':<20} {r['gate']:<7} "
              f"{figures:<22} {routed:<32} {r['added']}")
    print(f"models folder: {reg.root}", file=__import__('sys').stderr)
    return 0


def _publish(reg: Registry) -> str:
    """Tell every worker (through Redis, when REDIS_URL is set) which version to score with."""
    url = os.environ.get("REDIS_URL", "").strip()
    where = f"workers with TRIAGE_MODEL_DIR={reg.root} switch within seconds, no restart"
    if not url:
        return where + " (REDIS_URL not set: they read registry.json)"
    from redis import Redis
    from redis.exceptions import RedisError

    from worker.champion import publish

    try:
        publish(Redis.from_url(url), reg)
    except RedisError as e:
        return f"{where}; Redis unreachable ({type(e).__name__}): workers read registry.json meanwhile"
    return where


def _cmd_promote(args: Any) -> int:
    reg = Registry()
    v = reg.promote(args.version, force=args.force, reason=args.reason, who=args.by)
    print(f"version {v.n} ({v.name}) is the champion; {_publish(reg)}")
    return 0


def _cmd_compare(args: Any) -> int:
    from redis import Redis

    from worker.history import read_rows
    from worker.shadow import ShadowLog, compare

    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        raise RegistryError("set REDIS_URL: the shadow answers are in the workers' Redis")
    rows = [r for path in args.history for r in read_rows(path)]
    print(json.dumps(compare(ShadowLog(Redis.from_url(url)).entries(), rows), indent=2))
    return 0


def _cmd_rollback(args: Any) -> int:
    reg = Registry()
    v = reg.rollback(reason=args.reason, who=args.by)
    print(f"rolled back: version {v.n} ({v.name}) is the champion again; {_publish(reg)}")
    return 0
