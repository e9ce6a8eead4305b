"""`triage history pull ...` and `triage learn`: argument parsing only; the work lives in
connectors/*/history.py, worker/history.py and model/learn.py."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.exceptions import RedisError

from worker.errors import TriageError

FMT = argparse.RawDescriptionHelpFormatter


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-01-31, got {text!r}") from None


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def add_commands(sub: argparse._SubParsersAction) -> None:
    hist = sub.add_parser(
        "history", formatter_class=FMT, help="import a team's solved tickets as training data",
        description="Read solved tickets through the helpdesk's API into one dataset file (JSON lines): the\n"
                    "customer's text, the priority an agent set (and whether it corrected the bot's, from the\n"
                    "audits), the satisfaction rating, group, type, tags. Each label says where it came from (its\n"
                    "provenance) and weighs accordingly. Nothing leaves this machine.",
        epilog="examples:\n  triage history pull zendesk --since 2026-01-01 --out history/zendesk.jsonl\n"
               "  triage history pull zendesk --sandbox 3000     # a sandbox team, no account needed\n"
               "  triage learn --data history/zendesk.jsonl")
    hsub = hist.add_subparsers(dest="history_command", required=True)
    p = hsub.add_parser("pull", formatter_class=FMT, help="pull solved tickets since a date (resumable)",
                        description="Resumable: the export's cursor is saved after each page in a state file "
                                    "beside the output (OUT.state.json); run the same command again to continue "
                                    "after a crash or Ctrl-C. Rate limits (429) wait Retry-After.",
                        epilog="provenance weights (change with --weight NAME=W): agent-corrected-bot 3, "
                               "slack-correction 3,\nsuggestion-rejected 3, agent-set 2, suggestion-accepted 2, "
                               "csat 1, llm 0.5, public 0.5,\nbot-unchanged 0.5")
    p.add_argument("system", choices=["zendesk", "jira"])
    p.add_argument("--since", type=_date, help="first day to read, YYYY-MM-DD (default: 365 days ago)")
    p.add_argument("--out", help="dataset file (default history/SYSTEM.jsonl)")
    p.add_argument("--state", help="state file (default OUT.state.json)")
    p.add_argument("--restart", action="store_true", help="ignore the saved cursor and read from --since again "
                                                          "(rows already in OUT are not written twice)")
    p.add_argument("--no-scrub", action="store_true",
                   help="keep e-mail addresses, phone and card numbers (scrubbed by default)")
    p.add_argument("--weight", action="append", default=[], metavar="PROVENANCE=W", help="a provenance's weight")
    p.add_argument("--per-page", type=_at_least(1), default=1000,
                   help="tickets per export page (default 1000; Jira answers at most 100)")
    p.add_argument("--jql", default="", help='jira: which issues (default "statusCategory = Done AND created >= '
                                            'SINCE"); no ORDER BY')
    p.add_argument("--sandbox", type=_at_least(1), metavar="N",
                   help="pull from a local sandbox Zendesk (or Jira) seeded with a team of N solved tickets "
                        "(built from ../shared/data/synthetic_tickets_nc when present): the demo, no account needed")
    p.set_defaults(func=cmd_history_pull)

    p = sub.add_parser(
        "learn", formatter_class=FMT, help="a challenger model from the team's history, compared with the champion",
        description="Start from the champion (the shipped model until one is promoted), keep its encoder and\n"
                    "heads, and learn its urgency anew from the champion's logits and the team's own words and\n"
                    "phrases (TF-IDF over wordpieces and their pairs) in the team's tickets,\n"
                    "plus Slack corrections, a replay sample of the public data and the support-like examples,\n"
                    "and a routing head from the groups agents chose. Split by time: the newest 20% of the\n"
                    "team's tickets are held out and both models are scored on them. The challenger is kept\n"
                    "whatever the verdict: the report says whether it passed the promotion gate. CPU only;\n"
                    "needs scikit-learn and onnx (scripts/setup --learn, or the train extra).",
        epilog="examples:\n  triage history pull zendesk --sandbox 3000 && triage learn\n"
               "  triage learn --data history/zendesk.jsonl --from-redis   # + Slack corrections, LLM labels\n"
               "  triage learn --data history/zendesk.jsonl --feedback-csv feedback.csv --out models/candidate\n\n"
               "the gate: urgency macro-F1 on the newest tickets >= the champion's, no class recall down by more\n"
               "than 2 points, public sentiment macro-recall not down by more than 0.02, and on the support-like\n"
               "set (model/validation) macro-F1 not down by more than 0.02, high recall by more than 2 points")
    p.add_argument("--data", action="append", type=Path, help="history file(s) (default history/zendesk.jsonl)")
    p.add_argument("--out", type=Path, help="folder of the new model, outside the registry (default: the next "
                                            "version in the models folder, $TRIAGE_MODELS_DIR or ./models, "
                                            "as the challenger)")
    p.add_argument("--base", type=Path, help="model to start from and compare with (default: the champion)")
    p.add_argument("--feedback-csv", action="append", type=Path, default=[],
                   help="Slack corrections from `triage feedback export` (repeatable)")
    p.add_argument("--from-redis", action="store_true",
                   help="also read the labels the running system keeps in its Redis (REDIS_URL): agents' Slack "
                        "corrections and the LLM second opinion's answers (provenance llm), no export needed")
    p.add_argument("--replay", type=_at_least(0), default=1000,
                   help="public urgency rows mixed in (default 1000; 0: none)")
    p.add_argument("--data-root", type=Path, help="public data folder (default $TRIAGE_DATA_ROOT or ../shared/data)")
    p.add_argument("--no-public", action="store_true", help="no public replay and no public sentiment check")
    p.add_argument("--min-per-class", type=_at_least(1),
                   help="labelled training tickets each class needs (default 120, measured: docs/learning.md)")
    p.add_argument("--weight", action="append", default=[], metavar="PROVENANCE=W", help="a provenance's weight")
    p.add_argument("--version", default="", help="version name (default BASE+team-DATE)")
    p.add_argument("--threads", type=_at_least(1), default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--shuffle-labels", action="store_true",
                   help="train on shuffled labels: a deliberately bad challenger, to see the gate refuse it")
    p.add_argument("--route-by", choices=["group", "type", "none"], default="group",
                   help="the routing head learns which group agents assign (Zendesk group, Jira request type) "
                        "or the ticket type; none: no routing head (default group)")
    p.add_argument("--min-group-tickets", type=_at_least(1),
                   help="training tickets a group needs to be routed to; rarer ones are left out (default 30)")
    p.set_defaults(func=cmd_learn)


def cmd_history_pull(args: argparse.Namespace) -> int:
    from worker.history import acceptance, parse_weights, read_rows, summary

    weights = parse_weights(args.weight)
    since = args.since or datetime.now(UTC) - timedelta(days=365)
    out = Path(args.out or f"history/{args.system}.jsonl")
    pulls = {("zendesk", False): _pull_zendesk, ("zendesk", True): _pull_sandbox,
             ("jira", False): _pull_jira, ("jira", True): _pull_jira_sandbox}
    pull = pulls[(args.system, bool(args.sandbox))]
    result = pull(args, out, weights, since)
    rows = read_rows(out)
    info = summary(rows)
    urgency = info.get("urgency", {})
    skipped = ", ".join(f"{n} {why}" for why, n in result.skipped.items()) or "none"
    print(f"{result.total} rows in {out} ({result.written} new, {result.pages} pages, {result.seconds:.1f}s); "
          f"skipped: {skipped}; rate limited {result.rate_limited} times, waited {result.waited_s:g}s",
          file=sys.stderr)
    print(json.dumps({"urgency": urgency, "sentiment": info.get("sentiment", {})}))
    for name, n in acceptance(rows).items():  # suggest mode
        rate = f"{n['rate']:.0%}" if n["rate"] is not None else "n/a"
        print(f"suggestions of {name}: {n['accepted']} accepted, {n['rejected']} rejected, {n['open']} open "
              f"(acceptance {rate})", file=sys.stderr)
    print(f"next: triage learn --data {out}", file=sys.stderr)
    return 0


def _pull_zendesk(args: argparse.Namespace, out: Path, weights: dict, since: datetime):
    from connectors.zendesk.history import ZendeskHistory, pull
    from connectors.zendesk.transport import vendor_errors
    from worker.bootstrap import zendesk_client
    from worker.settings import load_settings

    settings = load_settings()
    if not settings.zendesk.enabled:
        raise TriageError("set the ZENDESK_* variables to pull Zendesk history (see deploy/env.example), or try "
                          "the sandbox: triage history pull zendesk --sandbox 1000")
    client = zendesk_client(settings)
    bot = settings.zendesk.bot_user_id
    if not bot:
        with vendor_errors("GET users/me"):
            bot = str(client.users.me().id)
    history = ZendeskHistory(client, bot, per_page=args.per_page, scrub_text=not args.no_scrub, weights=weights)
    return pull(history, out, since=since, state_path=args.state, restart=args.restart,
                progress=sys.stderr.isatty())


def _pull_jira(args: argparse.Namespace, out: Path, weights: dict, since: datetime):
    from connectors.jira.history import DEFAULT_JQL, JiraHistory, pull
    from connectors.jira.poller import check_jql
    from worker.bootstrap import jira_api
    from worker.settings import load_settings

    settings = load_settings()
    if not settings.jira.enabled:
        raise TriageError("set the JIRA_* variables to pull Jira history (see deploy/env.example)")
    jql = check_jql(args.jql) if args.jql else f'{DEFAULT_JQL} AND created >= "{since:%Y-%m-%d}"'
    api = jira_api(settings)
    bot = settings.jira.bot_account_id or str(api.call("GET myself", lambda c: c.myself())["accountId"])
    history = JiraHistory(api, bot, jql, per_page=min(args.per_page, 100), scrub_text=not args.no_scrub,
                          weights=weights)
    return pull(history, out, state_path=args.state, restart=args.restart, progress=sys.stderr.isatty())


def _sandbox_team(args: argparse.Namespace, out: Path) -> list:
    from connectors.zendesk.sandbox_history import team

    for stale in (out, Path(args.state or out.with_name(out.name + ".state.json"))):
        stale.unlink(missing_ok=True)  # a sandbox is new each run: so is its dataset
    members = team(args.sandbox)
    if len(members) < args.sandbox:  # the synthetic set is smaller: its tickets again, each a new text
        base = members
        members = [m if i < len(base) else replace(m, body=f"{m.body}\n\nReference {i}.")
                   for i, m in enumerate((base * (args.sandbox // len(base) + 1))[: args.sandbox])]
    return members


def _pull_jira_sandbox(args: argparse.Namespace, out: Path, weights: dict, since: datetime):
    from connectors.jira.history import JiraHistory, pull
    from connectors.jira.sandbox import JiraSandbox
    from connectors.jira.sandbox_history import PROJECT, load_history
    from connectors.jira.transport import JiraApi

    members = _sandbox_team(args, out)
    with JiraSandbox() as jira:
        load_history(jira, members, now=time.time())
        history = JiraHistory(JiraApi.connect(jira.url, jira.email, jira.token), jira.bot_account_id,
                              f"project = {PROJECT}", per_page=min(args.per_page, 100),
                              scrub_text=not args.no_scrub, weights=weights)
        return pull(history, out, state_path=args.state, restart=args.restart, progress=sys.stderr.isatty())


def _pull_sandbox(args: argparse.Namespace, out: Path, weights: dict, since: datetime):
    import os

    from zenpy import Zenpy

    from connectors.zendesk.history import ZendeskHistory, pull
    from connectors.zendesk.sandbox import ZendeskSandbox
    from connectors.zendesk.sandbox_history import load_history

    members = _sandbox_team(args, out)
    with ZendeskSandbox() as zd:
        os.environ.update(zd.env)
        now = time.time()
        load_history(zd, members, now=now)
        client = Zenpy(subdomain="sandbox", email="bot@example.com", token="sandbox", disable_cache=True)
        history = ZendeskHistory(client, zd.bot_user_id, per_page=args.per_page, scrub_text=not args.no_scrub,
                                 weights=weights)
        return pull(history, out, since=since, state_path=args.state, restart=args.restart,
                    progress=sys.stderr.isatty(), total_hint=len(members))


def _stored_labels(weights: dict[str, float]) -> list:
    """Agents' Slack corrections and the LLM's answers, from the Redis the workers use."""
    from model.learn import stored_examples
    from worker.bootstrap import connect_redis
    from worker.errors import FeedbackError
    from worker.escalation import llm_labels
    from worker.feedback import FeedbackStore, export_rows
    from worker.settings import load_settings

    redis = connect_redis(load_settings())
    try:
        corrections = stored_examples(export_rows(FeedbackStore(redis).all()), "slack-correction", weights)
        answers = stored_examples(llm_labels(redis), "llm", weights)
    except (RedisError, FeedbackError) as e:
        why = str(e) if isinstance(e, FeedbackError) else type(e).__name__
        raise TriageError(f"--from-redis: cannot read Redis at REDIS_URL ({why}); is it running, and is REDIS_URL "
                          "the workers' one?") from None
    print(f"from Redis: {len(corrections)} Slack corrections, {len(answers)} LLM labels with an urgency",
          file=sys.stderr)
    return corrections + answers


def cmd_learn(args: argparse.Namespace) -> int:
    from model.cli import DEFAULT_DATA_ROOT
    from model.learn import MIN_PER_CLASS, LearnConfig, learn_and_compare
    from worker.history import parse_weights

    data = args.data or [Path("history/zendesk.jsonl")]
    root = None if args.no_public else Path(args.data_root or DEFAULT_DATA_ROOT)
    if root is not None and not root.is_dir():
        print(f"note: no public data at {root}: no replay, no public sentiment check (--data-root DIR)",
              file=sys.stderr)
        root = None
    from model.registry import Registry

    registry = Registry()
    base = args.base or registry.champion_dir()
    out = args.out or registry.root / f".incoming-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    weights = parse_weights(args.weight)
    extra = _stored_labels(weights) if args.from_redis else []
    cfg = LearnConfig(data=data, out=out, base=base, feedback_csv=args.feedback_csv, extra=extra,
                      replay=0 if root is None else args.replay, data_root=root,
                      min_per_class=args.min_per_class or MIN_PER_CLASS, weights=weights,
                      version=args.version, threads=args.threads, shuffle_labels=args.shuffle_labels,
                      progress=sys.stderr.isatty(), route_by="" if args.route_by == "none" else args.route_by,
                      min_group_tickets=args.min_group_tickets)
    outcome = learn_and_compare(cfg)
    champ, chall = outcome.reports["champion"], outcome.reports["challenger"]
    verdict = "PASSED the gate" if outcome.gate.passed else "FAILED the gate: " + "; ".join(outcome.gate.reasons)
    report, where, number = outcome.report, outcome.result.out, None
    routing = outcome.result.routing
    if args.out is None:  # into the registry, as the challenger (kept and marked whatever the verdict)
        gate = json.loads((outcome.result.out / "gate.json").read_text())
        version = registry.add(outcome.result.out, gate=gate)
        number, where = version.n, registry.path(version)
        report = where / "learn_report" / "report.md"
    print(json.dumps({"challenger": outcome.result.version, "version": number, "out": str(where),
                      "champion_macro_f1": round(champ["macro_f1"], 4),
                      "challenger_macro_f1": round(chall["macro_f1"], 4), "gate": outcome.gate.passed,
                      "seconds": round(outcome.result.seconds["total"], 1),
                      "routing": routing and {k: routing.get(k) for k in ("shipped", "labels", "left_out")}}))
    if routing:
        print(f"routing head: {routing['reason']}", file=sys.stderr)
    print(f"{outcome.result.version} {verdict}\nreport: {report}", file=sys.stderr)
    if number is not None:
        hint = (f"triage model promote {number}" if outcome.gate.passed
                else f"kept as version {number}, not promoted; to use it anyway: triage model promote {number} "
                     "--force --reason \"why\"")
        print(f"next: {hint}", file=sys.stderr)
    return 0
