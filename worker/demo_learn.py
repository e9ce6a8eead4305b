"""`triage demo --learn`: the learning loop of docs/learning.md on a sandbox Zendesk, no account needed.

Each step prints, on one line, the real command it runs, and runs it as typed (parsed by the `triage`
parser, so the demo and the commands cannot drift apart):

  1. a sandbox Zendesk holding a team's solved tickets (connectors/zendesk/sandbox_history.py: the
     synthetic set in $TRIAGE_DATA_ROOT/synthetic_tickets_nc, else a generated team)
  2. triage history pull zendesk     (the ZENDESK_* variables point it at the sandbox)
  3. triage learn                    (the challenger goes into DIR/models, never ./models)
  4. triage model list
  5. a worker following DIR/models: the champion writes, the challenger shadows
  6. gate passed: triage model promote, and the worker hot-swaps to it; gate failed: promote refuses,
     then --force --reason to show the hot swap, and triage model rollback. After the swap, a ticket's
     note from the new champion: its learned group, and the example rules' suggestion (suggest mode)

Everything the demo writes goes under DIR (default ./demo-learn), except the feature cache of
`triage learn` (~/.cache/helpdesk-triage/features, which makes the next run fast). It always starts
its own Redis: `triage model promote` publishes the champion to REDIS_URL, and workers on yours
would follow the demo's model.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.errors import TriageError

MARKER = ".triage-demo-learn"
STEPS = 6
GENERATED_DEFAULT = 1000  # tickets of the generated team: above what learn's per-class floor needs
BOT = ("triage-bot@example.com", "demo-token")
NEW_TICKETS = (  # tickets that arrive while the worker runs (never in the team's history)
    ("Checkout down for every customer", "Since 10:05 no customer can pay: checkout answers 500. We lose "
                                         "orders every minute, please fix this now."),
    ("Invoice address", "Hi, how do I change the billing address on next month's invoice? No rush."),
    ("Export is slow", "The CSV export takes ten minutes since yesterday's update. Annoying, can you look?"),
    ("Login loop on the mobile app", "After the update the app sends me back to the login page every time. "
                                     "I cannot work like this."),
)


class DemoDirError(TriageError):
    """The demo folder cannot be used; the message says why."""


def _show(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _step(n: int, what: str, command: str) -> None:
    print(f"\n[{n}/{STEPS}] {what}: $ {command}", flush=True)


def _triage(command: str) -> int:
    """Run `triage ...` as typed (one process: the sandbox and Redis are in this one)."""
    from worker.cli import build_parser

    args = build_parser().parse_args(shlex.split(command)[1:])
    return int(args.func(args) or 0)


def prepare_dir(folder: Path) -> Path:
    """The demo folder, emptied of an earlier demo's history and models; never someone else's folder."""
    if folder.exists() and not (folder / MARKER).is_file() and any(folder.iterdir()):
        raise DemoDirError(f"{folder} exists and is not a demo folder: pick another with --dir, or remove it")
    for part in ("history", "models"):
        shutil.rmtree(folder / part, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by `triage demo --learn`; the next run empties history/ and models/\n")
    return folder


def _needs(*modules: str) -> None:
    """`triage learn` needs the train extra's scikit-learn and onnx (not torch): say so before starting."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        names = " ".join({"sklearn": "scikit-learn"}.get(m, m) for m in missing)
        raise TriageError(f"triage demo --learn runs triage learn, which needs {names}: pip install {names} "
                          "(or scripts/setup --learn; scripts/demo --learn does it)")


def pick_team(tickets: int) -> tuple[list[Any], str]:
    """The synthetic team (its first `tickets`, 0: all) when its folder is there, else a generated one."""
    from connectors.zendesk.sandbox_history import generated_team, synthetic_team
    from model.cli import DEFAULT_DATA_ROOT

    folder = Path(DEFAULT_DATA_ROOT) / "synthetic_tickets_nc"
    try:
        team = synthetic_team(folder, tickets or None)
        return team, f"of the synthetic team ({_show(folder)}: LLM-generated, non-commercial, fine for a demo)"
    except FileNotFoundError:
        n = tickets or GENERATED_DEFAULT
        return generated_team(n), (f"of a generated team (templates; no {_show(folder)}, set TRIAGE_DATA_ROOT "
                                   "to the folder that holds it for the synthetic one)")


def run_demo_learn(tickets: int = 0, folder: str | Path = "demo-learn") -> int:
    from connectors.zendesk.sandbox import ZendeskSandbox
    from connectors.zendesk.sandbox_history import load_history
    from worker.local_redis import LocalRedis

    _needs("sklearn", "onnx")
    demo = prepare_dir(Path(folder))
    models, history = demo / "models", demo / "history" / "zendesk.jsonl"
    data = shlex.quote(_show(history))
    team, which = pick_team(tickets)
    if os.environ.get("REDIS_URL"):
        print("note: your REDIS_URL is not used: promoting the demo's model there would switch your workers to it")
    began = time.monotonic()
    local = LocalRedis().start()
    zd = ZendeskSandbox(email=BOT[0], token=BOT[1]).start()
    try:
        _step(1, "a sandbox Zendesk stands for yours", "export ZENDESK_SUBDOMAIN=... ZENDESK_EMAIL=... "
                                                       "ZENDESK_API_TOKEN=...")
        started = time.monotonic()
        load_history(zd, team, now=time.time(), suggest_share=0.2)
        print(f"  {zd.url}: {len(team)} tickets {which}, created over 180 days, solved by agents (priority, "
              f"group, CSAT; in some an agent corrected the bot's priority, in others the bot had run in suggest "
              f"mode and an agent accepted or rejected its suggestion); seeded in "
              f"{time.monotonic() - started:.0f}s")
        _environment(zd, local.url, models)
        print(f"  everything below goes to {_show(demo)}/ (models: {_show(models)}, as TRIAGE_MODELS_DIR; "
              "your ./models is untouched)")

        _step(2, "pull the solved tickets, with the agents' priorities and corrections",
              f"triage history pull zendesk --out {data}")
        _triage(f"triage history pull zendesk --out {data}")

        _step(3, "learn a challenger from them, compared with the champion (the shipped model)",
              f"triage learn --data {data}")
        from model.learn import LearnRefused

        if not sys.stderr.isatty():  # no progress bars: say what the wait is
            print("  (a minute or more: every text's features, then the fit and both models' report; the "
                  "features are cached for the next run)", flush=True)

        try:
            _triage(f"triage learn --data {data}")
        except LearnRefused as e:
            print(f"  learn refused: {e}\n  (a larger team learns: triage demo --learn --tickets "
                  f"{max(len(team) * 2, GENERATED_DEFAULT)})")
            return 1
        from model.registry import Registry

        registry = Registry(models)
        challenger = registry.version("challenger")
        gate = challenger.gate or {}
        _summary(registry, challenger, gate)

        _step(4, "the registry's versions", "triage model list")
        _triage("triage model list")
        code = _live(zd, local.url, registry, challenger, bool(gate.get("passed")))
        took = time.monotonic() - began
        print(f"\ndone in {took // 60:.0f}m{took % 60:02.0f}s. {_show(demo)}/ stays for you to read (the history, "
              "the report, the registry and its audit log); the next run empties it. The loop explained: "
              "docs/learning.md")
        return code
    finally:
        zd.stop()
        local.close()


def _environment(zd: Any, redis_url: str, models: Path) -> None:
    """What a real setup puts in its environment, pointed at the sandbox and the demo folder."""
    from worker.demo import SECRET

    os.environ.update(zd.env)  # zenpy talks to the sandbox
    os.environ.update({"ZENDESK_SUBDOMAIN": "sandbox", "ZENDESK_EMAIL": BOT[0], "ZENDESK_API_TOKEN": BOT[1],
                       "ZENDESK_BOT_USER_ID": str(zd.bot_user_id), "ZENDESK_WEBHOOK_SECRET": SECRET,
                       "REDIS_URL": redis_url,
                       "TRIAGE_MODELS_DIR": str(models)})


PLAIN = {  # a failed check in plain words
    "team urgency macro-F1": "it is not better than the champion on the team's newest tickets",
    "public sentiment macro-recall": "it reads sentiment worse on public data",
    "support-like urgency macro-F1": "it judges urgency worse on hand-written support tickets whose urgency "
                                     "is obvious",
    "support-like high-urgency recall": "it misses more of the obviously urgent support tickets (outages, "
                                        "payments down)",
}


def _plain(name: str) -> str:
    if name.startswith("team urgency recall of "):
        return f"it finds fewer of the team's {name.rsplit(' ', 1)[-1]}-urgency tickets"
    return PLAIN.get(name, name)


def _summary(registry: Any, challenger: Any, gate: dict[str, Any]) -> None:
    """The report's headline: each check of the gate, the verdict in plain words, where the report is."""
    report = registry.path(challenger) / "learn_report"
    print(f"\n  challenger (version {challenger.n}) against champion {gate.get('champion', '')}:")
    for c in gate.get("checks", []):
        if c["champion"] is None:
            print(f"    skip  {c['name']:<34} {c['rule']}")
            continue
        print(f"    {'ok  ' if c['passed'] else 'FAIL'}  {c['name']:<34} {c['challenger']:.3f} against "
              f"{c['champion']:.3f}  ({c['rule']})")
    failed = [c for c in gate.get("checks", []) if not c["passed"]]
    if not failed:
        print("  gate PASSED: better on the team's newest tickets, and nothing it must keep got worse")
    else:
        team_f1 = next((c for c in gate.get("checks", []) if c["name"] == "team urgency macro-F1"), None)
        better = (f"it is better on the team's newest tickets (macro-F1 {team_f1['challenger']:.3f} against "
                  f"{team_f1['champion']:.3f}), but " if team_f1 and team_f1["passed"] else "")
        print(f"  gate FAILED: {better}{'; '.join(_plain(c['name']) for c in failed)}. It is kept, marked "
              "FAILED, and not promoted.")
    routing = _routing(report / "report.json")
    if routing:  # the routing head (model/routing_head.py): beside the gate, not one of its checks
        print(f"  learned routing ({routing.get('field', 'group')}): "
              f"{'in the challenger' if routing.get('shipped') else 'not shipped'}: {routing.get('reason', '')}")
    print(f"  report: {_show(report / 'report.md')} (plot: {_show(report / 'coverage.png')})")


def _routing(report_json: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(report_json.read_text()).get("routing") or None
    except (OSError, ValueError):
        return None


def _live(zd: Any, redis_url: str, registry: Any, challenger: Any, passed: bool) -> int:
    from worker import bootstrap
    from worker.demo import EXAMPLE_RULES, SECRET, _serve
    from worker.local_redis import free_port
    from worker.settings import Secret, Settings, ZendeskSettings

    settings = Settings(redis_url=redis_url, model_dir=str(registry.root), queue_name="triage-demo",
                        rules_path=str(EXAMPLE_RULES) if EXAMPLE_RULES.is_file() else "", retry_intervals_s=(1, 2),
                        log_level="WARNING", zendesk=ZendeskSettings("sandbox", BOT[0], Secret(BOT[1]),
                                                                     Secret(SECRET), str(zd.bot_user_id)))
    _step(5, "a worker follows the models folder: the champion writes, the challenger shadows",
          f"TRIAGE_MODEL_DIR={_show(registry.root)} triage worker")
    for group in ("Escalations", "Billing"):  # the groups deploy/rules.example.yaml routes to
        zd.add_group(group)
    rt = bootstrap.build(settings)
    scorer: Any = rt.scorer  # ChampionScorer under the metrics timer
    scorer.wait_loaded()  # the challenger loads in the background
    port = free_port()
    server = _serve(bootstrap.http_app(rt), port)
    hook = f"http://127.0.0.1:{port}/webhooks/zendesk"
    arrivals = iter(range(10_000))
    try:
        def ticket(kind: int | None = None) -> dict[str, Any]:
            return _new_ticket(zd, rt, hook, next(arrivals), kind)

        first = ticket()
        _print_decision(first, note=True)
        _print_shadow(rt.redis)
        if passed:
            _step(6, "the challenger passed the gate: make it the champion", "triage model promote")
            _triage("triage model promote")
            _watch_swap(registry.version("champion").name, ticket, note=True)
            print("  (if agents disagree with it: triage model rollback)")
            return 0
        _step(6, "the challenger failed the gate: promote refuses it", "triage model promote")
        from model.registry import RegistryError

        try:
            _triage("triage model promote")
        except RegistryError as e:
            print(f"  refused: {e}")
        reason = "demo: to see the hot swap"
        print(f"  the demo forces it, to show the hot swap: $ triage model promote --force --reason \"{reason}\"")
        _triage(f"triage model promote --force --reason \"{reason}\"")
        _watch_swap(registry.version("champion").name, ticket, note=True)
        print("  and puts the champion back, as you would: $ triage model rollback --reason \"failed the gate\"")
        _triage("triage model rollback --reason \"failed the gate\"")
        _watch_swap(registry.version("champion").name, ticket)
        print(f"  who did what: $ TRIAGE_MODELS_DIR={_show(registry.root)} triage model list --audit")
        return 0
    finally:
        server.should_exit = True


def _new_ticket(zd: Any, rt: Any, hook: str, k: int, kind: int | None = None) -> dict[str, Any]:
    """A customer opens a ticket (the `k`th to arrive; `kind`: which of NEW_TICKETS, default in turn);
    Zendesk's trigger sends the webhook; the worker triages it."""
    import requests

    from worker.demo import SECRET, _drain, job_result

    subject, body = NEW_TICKETS[k % len(NEW_TICKETS) if kind is None else kind]
    tid = int(zd.add_ticket(subject, body if k < len(NEW_TICKETS) else f"{body} ({k})")["id"])
    data, headers = zd.signed_trigger(tid, SECRET)
    requests.post(hook, data=data, headers=headers, timeout=10).raise_for_status()
    _drain(rt)
    result, status = job_result(rt, zd, tid)
    notes = [c["body"] for c in zd.comments(tid) if not c["public"] and c["author_id"] == zd.bot_user_id]
    decision = (result or {}).get("decision") or {}
    return {"id": tid, "subject": subject, "status": status, "scores": decision.get("scores"),
            "priority": zd.tickets[tid].get("priority"), "note": notes[-1] if notes else ""}


def _print_decision(d: dict[str, Any], note: bool = False) -> None:
    s = d["scores"]
    if not s:
        print(f"  #{d['id']} {d['subject']!r}: not triaged ({d['status']})")
        return
    group = f", group (learned) {s['group']['label']}" if s.get("group") else ""
    print(f"  #{d['id']} {d['subject']!r}: urgency {s['urgency']['label']}, priority {d['priority'] or '-'}"
          f"{group}; written by model {s['model_version']}")
    if note and d["note"]:
        print("  its internal note:\n" + "\n".join(f"    | {line}" for line in d["note"].splitlines()))


def _print_shadow(redis: Any) -> None:
    from worker.shadow import ShadowLog

    entries = list(ShadowLog(redis).entries())
    if not entries:
        print("  shadow: no challenger answer recorded")
        return
    e = entries[-1]
    print(f"  shadow: the challenger {e['challenger']['version']} said urgency {e['challenger']['urgency']} "
          f"(champion: {e['champion']['urgency']}); recorded for `triage model compare` "
          "(triage:shadow in Redis, no ticket text), never written to the ticket")


def _watch_swap(wanted: str, ticket: Callable[..., dict[str, Any]], limit_s: float = 40.0,
                note: bool = False) -> None:
    """Tickets keep arriving; the worker checks the champion pointer every few seconds, loads the new
    one in the background while the old one scores, then swaps: no restart. `note`: then a ticket and
    the internal note the new champion writes (its learned group; the example rules suggest it)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        d = ticket()
        _print_decision(d)
        if d["scores"] and d["scores"]["model_version"] == wanted:
            print(f"  the worker swapped to {wanted} {time.monotonic() - started:.0f}s after the change, "
                  "without a restart; no ticket was scored by a half-loaded model")
            if note:
                shown = ticket(2)
                _print_decision(shown, note=True)
                if "Suggested (not applied)" in shown["note"]:
                    print("  suggest mode: the rules only suggest what they would set (learned_routing: suggest, "
                          "suggest: true); the next history pull counts what agents accepted")
            return
        time.sleep(1.0)
    print(f"  the worker had not swapped to {wanted} after {limit_s:.0f}s", file=sys.stderr)
