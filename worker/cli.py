"""The `triage` command. Each subcommand parses its arguments and calls into the package."""

from __future__ import annotations

import argparse
import json
import os
import sys

from model import cli as model_cli
from model.data import DataError
from model.runtime import ModelError
from worker import history_cli
from worker.errors import TriageError

DESCRIPTION = """\
helpdesk-triage: scores every ticket's sentiment and urgency with a local model and writes
tags, priority, routing and an internal note back to Zendesk or Jira Service Management.

Start here:
  triage demo                      the whole flow on a sandbox helpdesk, no account needed
  triage demo --learn              the learning loop on a sandbox team: pull, learn, gate, promote
  triage score "text"              score a text with the local model
  triage rules check rules.yaml    validate a routing rules file

Run it:
  triage serve                     HTTP ingress: webhooks, /healthz, /readyz, /v1/score
  triage worker                    score and write back (run as many as you like, on any machine)
  triage poll zendesk              catch up through the incremental export instead of webhooks
  triage poll jira --jql "..."     catch up through a Jira JQL search instead of webhooks
  triage slack --socket            the Slack app over Socket Mode (HTTP mode: POST /slack/events on serve)
  triage feedback export|stats     agents' corrections from Slack: training CSV, agreement per head
  triage monitor                   drift and surge alerts to Slack and PagerDuty (docs/observability.md)
  triage history pull zendesk      import solved tickets (agents' priorities, corrections, CSAT) to learn from
  triage learn                     a challenger model from that history, gated against the champion

Settings come from the environment or a .env file: see deploy/env.example.
"""

FMT = argparse.RawDescriptionHelpFormatter


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def _at_least_zero(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text!r}")
    return int(text)


def _runtime(ingress: bool = False):
    from worker.bootstrap import build, configure_logging
    from worker.settings import load_settings

    settings = load_settings()
    configure_logging(settings)
    return build(settings, ingress=ingress)


def connector_status(settings) -> list[str]:
    """One line per inbound connector: on, or off and which variable turns it on."""
    z, j, s = settings.zendesk, settings.jira, settings.slack
    lines = []
    if not z.enabled:
        lines.append("zendesk: off (set ZENDESK_SUBDOMAIN, ZENDESK_EMAIL, ZENDESK_API_TOKEN)")
    else:
        lines.append(f"zendesk: on, {z.subdomain}.zendesk.com; webhooks at POST /webhooks/zendesk")
    if not j.enabled:
        lines.append("jira: off (set JIRA_URL, JIRA_EMAIL, JIRA_API_TOKEN)")
    else:
        lines.append(f"jira: on, {j.url}; webhooks and Automation at POST /webhooks/jira")
    if not s.enabled:
        lines.append("slack: off (set SLACK_BOT_TOKEN)")
    elif s.signing_secret:
        lines.append("slack: on; HTTP mode at POST /slack/events")
    else:
        lines.append("slack: on; HTTP mode off (no SLACK_SIGNING_SECRET): run `triage slack --socket`")
    keys = len(settings.api_keys)
    lines.append(f"scoring API: on, POST /v1/score ({keys} key{'s' if keys != 1 else ''})" if keys else
                 "scoring API: off (set TRIAGE_API_KEYS)")
    return lines


def cmd_serve(args: argparse.Namespace) -> int:
    from worker.bootstrap import http_app, prepare_ingress
    from worker.serve import serve, serve_processes

    rt = _runtime(ingress=True)
    for line in connector_status(rt.settings):
        print(f"triage serve: {line}", file=sys.stderr)
    if not (rt.settings.zendesk.enabled or rt.settings.jira.enabled or rt.settings.slack.enabled):
        print("triage serve: no helpdesk is configured, so every webhook will answer 404; "
              "see deploy/env.example", file=sys.stderr)
    prepare_ingress(rt)  # a bad setting, model or credential stops here, once, before any process starts
    options = {"log_level": "warning", "access_log": args.access_log}
    if args.processes == 1:
        serve(http_app(rt), args.host, args.port, options)
        return 0
    rt.__dict__.pop("scorer", None)  # checked; each ingress process loads its own
    return serve_processes(args.processes, args.host, args.port, options)


def cmd_worker(args: argparse.Namespace) -> int:
    from rq.serializers import JSONSerializer

    from worker.bootstrap import freeze_startup_objects
    from worker.jobs import TriageWorker

    rt = _runtime()
    if not rt.writers:
        raise TriageError("no helpdesk configured: set the ZENDESK_* or JIRA_* variables (see deploy/env.example)")
    rt.scorer  # noqa: B018
    freeze_startup_objects()
    worker = TriageWorker([rt.enqueuer.queue], connection=rt.redis, serializer=JSONSerializer,
                          name=args.name, context=rt.job_context)
    worker.work(burst=args.burst, with_scheduler=True, logging_level=rt.settings.log_level)
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    if args.system == "jira":
        return _poll_jira(args)
    if args.jql:
        raise TriageError("--jql is for `triage poll jira`")
    from connectors.zendesk.poller import ZendeskPoller
    from worker.bootstrap import zendesk_client

    rt = _runtime()
    if not rt.settings.zendesk.enabled:
        raise TriageError("set the ZENDESK_* variables to poll Zendesk (see deploy/env.example)")
    poller = ZendeskPoller(zendesk_client(rt.settings), rt.redis, rt.zendesk_bot_user_id)
    if args.once:
        while True:  # one pass: page until the export says there is no more
            page = poller.poll_page(rt.enqueuer.submit_many)
            print(f"{len(page.events)} changed tickets queued, {len(page.skipped)} skipped")
            if page.end_of_stream:
                return 0
    poller.run(rt.enqueuer.submit_many, interval_s=args.interval)
    return 0


def _poll_jira(args: argparse.Namespace) -> int:
    from connectors.jira.poller import JiraPoller, check_jql
    from worker.bootstrap import jira_api, jira_priorities

    jql = check_jql(args.jql or "")  # before connecting: a wrong filter is the admin's first mistake
    rt = _runtime()
    j = rt.settings.jira
    if not j.enabled:
        raise TriageError("set JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN to poll Jira (see deploy/env.example)")
    poller = JiraPoller(jira_api(rt.settings), rt.redis, rt.jira_bot_account_id, jql,
                        priorities=jira_priorities(rt.settings), overlap_s=j.poll_overlap_s)
    if args.once:
        done = poller.poll_once(rt.enqueuer.submit_many)
        print(f"{len(done.events)} changed issues queued, {len(done.skipped)} skipped ({done.pages} pages)")
        return 0
    poller.run(rt.enqueuer.submit_many, interval_s=args.interval)
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from worker.rules_file import load_rules

    rules = load_rules(args.file)
    print(f"{args.file}: OK, {len(rules.rules)} rules: " + ", ".join(r.name for r in rules.rules))
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from model.runtime import TriageModel
    from model.textprep import ticket_text
    from worker.decision import learned_group
    from worker.rules import routing_warnings
    from worker.rules_file import load_rules
    from worker.sample_tickets import read_sample_tickets
    from worker.scoring import ModelScorer
    from worker.settings import model_dir_setting
    from worker.triage import decide

    rules = load_rules(args.file)
    events = read_sample_tickets(args.tickets)
    model = TriageModel.load(args.model_dir or model_dir_setting() or None)
    for warning in routing_warnings(rules, model.group_rule.labels if model.group_rule else None):
        print(f"warning: {warning}", file=sys.stderr)
    scorer = ModelScorer(model)
    scores = scorer.score([ticket_text(e.subject, e.text) for e in events])
    now = datetime.now(UTC)
    for event, s in zip(events, scores):
        d = decide(event, s, rules, now)
        a = {k: v for k, v in vars(d.actions).items() if v and k != "suggested"}
        print(f"ticket {event.ticket_id}: {event.subject or event.text[:60]!r}")
        print(f"  sentiment {s.sentiment.label} ({s.sentiment.confidence:.2f}), "
              f"urgency {s.urgency.label} ({s.urgency.confidence:.2f})")
        if s.group is not None:
            print(f"  {learned_group(s.group)}")
        print(f"  rules: {', '.join(d.matched_rules) or '(none)'}")
        print(f"  actions: {json.dumps(a)}")
        if d.actions.suggested:
            print(f"  suggested, not applied: {json.dumps(dict(d.actions.suggested))}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from worker.monitor import build_monitor

    monitor = build_monitor(_runtime())
    if args.once:
        from redis.exceptions import RedisError

        try:
            state = monitor.run_once()
        except RedisError as err:
            raise TriageError(f"Redis unreachable ({type(err).__name__}): check REDIS_URL") from None
        print(json.dumps({"psi": state["psi"], "open": state["open"]}, indent=2))
        return 0
    monitor.run(args.interval or monitor_interval())
    return 0


def monitor_interval() -> float:
    from worker.settings import load_settings

    return float(load_settings().observability.monitor_interval_s)


def cmd_dlq(args: argparse.Namespace) -> int:
    from worker.dlq import list_failed, requeue

    rt = _runtime()
    if args.dlq_command == "list":
        rows = list_failed(rt.enqueuer.queue)
        for r in rows:
            print(f"{r['id']}  {r['ended_at']}  {r['tickets']} ticket(s): {r['description']}  {r['error']}")
        tickets = sum(int(r["tickets"] or 0) for r in rows)
        print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'} ({tickets} ticket(s)) in the dead-letter queue"
              + ("; put them back with `triage dlq requeue ID ...` or `--all`" if rows else ""))
    else:
        done = requeue(rt.enqueuer.queue, args.ids, args.all)
        print(f"requeued {len(done)} entr{'y' if len(done) == 1 else 'ies'}, their tries counted afresh")
    return 0


def cmd_slack(args: argparse.Namespace) -> int:
    rt = _runtime(ingress=True)  # Socket Mode acks within Slack's 3 s too
    s = rt.settings.slack
    if not s.enabled:
        raise TriageError("set SLACK_BOT_TOKEN (and SLACK_APP_TOKEN for Socket Mode): see deploy/env.example "
                          "and the README's 'Connect Slack'")
    if args.check:
        me = rt.slack_api.auth_test()
        print(f"Slack OK: bot {me.get('user')} ({me.get('user_id')}) in {me.get('team')} ({me.get('url')})")
        print(f"watched channels: {', '.join(s.watch_channels) or '(none)'}; alerts: {s.alert_channel or '(off)'}")
        print("HTTP mode: " + ("POST /slack/events on `triage serve`" if s.signing_secret else
                               "off (no SLACK_SIGNING_SECRET)"))
        print("Socket Mode: " + ("`triage slack --socket`" if s.app_token else "off (no SLACK_APP_TOKEN)"))
        return _check_slack_scopes(me.get("scopes") or [])
    if not args.socket:
        raise TriageError("choose: `triage slack --socket` (Socket Mode) or `triage slack --check`; HTTP mode "
                          "runs inside `triage serve` (POST /slack/events)")
    if not s.app_token:
        raise TriageError("Socket Mode needs SLACK_APP_TOKEN: an app-level token (xapp-...) with the "
                          "connections:write scope (app settings > Basic Information > App-Level Tokens)")
    from connectors.slack.socket import run_socket_mode

    rt.scorer  # load the model before the first /triage  # noqa: B018
    run_socket_mode(rt.slack_app(socket_mode=True), s.app_token.reveal())
    return 0


def _check_slack_scopes(scopes: list[str]) -> int:
    """The manifest's bot scopes the token lacks, and what each is for; 1 when one is missing."""
    from pathlib import Path

    import yaml

    manifest = Path(__file__).resolve().parent.parent / "deploy" / "slack-manifest.yaml"
    wanted = yaml.safe_load(manifest.read_text())["oauth_config"]["scopes"]["bot"]
    missing = [w for w in wanted if w not in scopes]
    if not scopes:
        print("scopes: Slack did not say (no X-OAuth-Scopes header); compare with deploy/slack-manifest.yaml")
        return 0
    if not missing:
        print(f"scopes: all {len(wanted)} the manifest asks for")
        return 0
    why = {"users:read.email": "ticket lookups and Apply check that the user is a helpdesk agent by e-mail",
           "usergroups:read": "SLACK_ALLOWED_USERGROUPS", "commands": "/triage",
           "reactions:write": "channel watch reactions", "chat:write": "every answer"}
    for scope in missing:
        print(f"missing scope {scope}" + (f" ({why[scope]})" if scope in why else ""), file=sys.stderr)
    print("add them under OAuth & Permissions > Bot Token Scopes (or paste deploy/slack-manifest.yaml), then "
          "reinstall the app", file=sys.stderr)
    return 1


def cmd_feedback(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from worker.feedback import agreement, agreement_json, export_rows, format_agreement, write_csv

    rt = _runtime()
    since = datetime.now(UTC) - timedelta(days=args.days) if args.days else None
    if args.feedback_command == "export":
        verdicts = list(rt.feedback.all(since))
        rows = export_rows(verdicts, args.weight)
        if args.out == "-":
            write_csv(rows, sys.stdout)
        else:
            with open(args.out, "w", newline="", encoding="utf-8") as f:
                write_csv(rows, f)
        labels = {h: sum(1 for r in rows if r[h]) for h in ("sentiment", "urgency")}
        print(f"{len(rows)} training rows ({labels['sentiment']} sentiment and {labels['urgency']} urgency labels, "
              f"weight {args.weight:g}) from {len(verdicts)} verdicts"
              + (f" -> {args.out}\nnext: triage model train --extra-csv {args.out}" if args.out != "-" else ""),
              file=sys.stderr)
        return 0
    rows_stats = agreement(rt.feedback.all(since), args.by)
    print(json.dumps(agreement_json(rows_stats), indent=2) if args.json else format_agreement(rows_stats))
    return 0


def cmd_llm_labels(args: argparse.Namespace) -> int:
    from worker.escalation import export_labels, llm_labels

    rt = _runtime()
    labels = llm_labels(rt.redis)
    if args.out == "-":
        n = export_labels(labels, sys.stdout)
    else:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            n = export_labels(labels, f)
    print(f"{n} LLM labels (provenance llm)" + (f" -> {args.out}\nnext: triage model train --extra-csv {args.out}"
                                               if args.out != "-" else ""), file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.learn:
        if args.llm:
            raise TriageError("--llm is for the triage demo, not --learn")
        from worker.demo_learn import run_demo_learn

        return run_demo_learn(tickets=args.tickets, folder=args.dir)
    from worker.demo import run_demo

    return run_demo(tickets=args.tickets, llm=args.llm)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description=DESCRIPTION, formatter_class=FMT)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", formatter_class=FMT, help="run the whole flow on a sandbox helpdesk (no account needed)",
                       description="Starts Redis (when REDIS_URL is not set), a sandbox Zendesk with sample "
                                   "tickets, the webhook ingress\nand a worker; sends each ticket's webhook "
                                   "and prints what was written back.\n\n"
                                   "--learn: the learning loop instead (docs/learning.md): a sandbox Zendesk with a "
                                   "team's solved\ntickets, history pull, learn, the gate's report, model list, "
                                   "then promote (or its refusal)\nand a running worker hot-swapping to the new "
                                   "champion. Each step prints the real command it runs.",
                       epilog="examples:\n  triage demo\n  triage demo --learn                 # a few minutes "
                              "on 2 cores\n  triage demo --learn --tickets 1000   # faster, a smaller team")
    p.add_argument("--tickets", type=_at_least_zero, default=0,
                   help="how many sample tickets (default: all); with --learn the team's size (default: all "
                        "3,084 of the synthetic set, or 1,000 generated without it)")
    p.add_argument("--llm", action="store_true", help="also run the LLM second opinion against a local "
                                                      "OpenAI-compatible sandbox (docs/llm.md)")
    p.add_argument("--learn", action="store_true", help="the learning loop: history pull, learn, gate, promote, "
                                                        "hot swap (docs/learning.md)")
    p.add_argument("--dir", default="demo-learn", help="with --learn: the folder it writes to, history and "
                                                       "models (default ./demo-learn; emptied at each run)")
    p.set_defaults(func=cmd_demo)

    model_cli.add_commands(sub)
    history_cli.add_commands(sub)  # history pull, learn

    p = sub.add_parser("serve", help="HTTP ingress: webhooks, health checks, scoring API")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    p.add_argument("--processes", type=_at_least_one, default=1, metavar="N",
                   help="ingress processes on the same port, each with its own socket so the kernel "
                        "spreads connections across them (default 1). Run one per core when deliveries "
                        "come faster than one process takes them (figures: docs/performance.md). Each "
                        "process loads the model for /v1/score")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="score queued tickets and write back (run several)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--name", help="worker name (default: random)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("poll", help="fetch changed tickets from a helpdesk API and queue them")
    p.add_argument("system", choices=["zendesk", "jira"])
    p.add_argument("--jql", help='jira: which issues, e.g. "project = SUP" (no ORDER BY; the poller adds a '
                                 'window on updated)')
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between passes (default 60)")
    p.set_defaults(func=cmd_poll)

    rules = sub.add_parser("rules", help="check and try out a routing rules file",
                           description="Routing rules: see deploy/rules.example.yaml for the format.")
    rsub = rules.add_subparsers(dest="rules_command", required=True)
    p = rsub.add_parser("check", help="validate a rules file (errors name the line)")
    p.add_argument("file")
    p.set_defaults(func=cmd_rules_check)
    p = rsub.add_parser("test", formatter_class=FMT, help="show scores, matching rules and actions for sample tickets",
                        epilog="tickets file: JSON lines (one ticket a line) or a .json list, e.g.\n"
                               '  {"source": "zendesk", "subject": "Site down", "text": "Nothing loads since 9am!", '
                               '"tags": ["vip"]}\n'
                               '  {"source": "jira", "project": "SUP", "issue_type": "Incident", "text": "VPN down"}\n'
                               "fields: source, id, subject, text (or description/body), tags, priority, group,\n"
                               "assignee, channel, organization, requester_email; Jira: project, issue_type,\n"
                               "request_type. Samples: deploy/samples/{zendesk,jira,slack}.jsonl\n\n"
                               "example:\n  triage rules test deploy/rules.example.yaml "
                               "--tickets deploy/samples/zendesk.jsonl")
    p.add_argument("file")
    p.add_argument("--tickets", required=True, help="sample tickets: .jsonl or .json (see below)")
    p.add_argument("--model-dir")
    p.set_defaults(func=cmd_rules_test)

    p = sub.add_parser("slack", formatter_class=FMT, help="Slack: Socket Mode, or check the connection",
                       description="The Slack app (/triage, the message shortcut, channel watch, feedback). "
                                   "HTTP mode runs inside `triage serve` (POST /slack/events); Socket Mode "
                                   "needs no public URL.",
                       epilog="examples:\n  triage slack --check     # token, channels, modes\n"
                              "  triage slack --socket    # serve Slack over Socket Mode (SLACK_APP_TOKEN)")
    p.add_argument("--socket", action="store_true", help="connect with Socket Mode and serve until stopped")
    p.add_argument("--check", action="store_true", help="check the bot token (auth.test) and print the setup")
    p.set_defaults(func=cmd_slack)

    fb = sub.add_parser("feedback", help="agents' corrections: export for training, agreement stats",
                        description="Every correction made in Slack (Wrong sentiment / Wrong urgency / "
                                    "Correct?) is kept in Redis with the text, the model's labels, the "
                                    "right labels, who and when.")
    fsub = fb.add_subparsers(dest="feedback_command", required=True)
    p = fsub.add_parser("export", formatter_class=FMT, help="write a training CSV (text, sentiment, urgency, weight)",
                        epilog="example:\n  triage feedback export --out feedback.csv\n"
                               "  triage model train --extra-csv feedback.csv")
    p.add_argument("--out", default="feedback.csv", help="CSV file, or - for stdout (default feedback.csv)")
    p.add_argument("--weight", type=float, default=2.0,
                   help="training weight of a human-confirmed row (public data rows weigh 1; default 2)")
    p.add_argument("--days", type=int, help="only verdicts of the last N days")
    p.set_defaults(func=cmd_feedback)
    p = fsub.add_parser("stats", help="how often agents agreed with each head, per day/week/month")
    p.add_argument("--by", choices=["day", "week", "month"], default="week")
    p.add_argument("--days", type=int, help="only verdicts of the last N days")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("monitor", formatter_class=FMT, help="drift and surge alerts (Slack, PagerDuty)",
                       description="Compares the label mix of the last hour and day with a baseline window "
                                   "(the decision log) and alerts Slack and PagerDuty on drift (PSI), surges, a "
                                   "rising abstain rate or a new language; resolves them when back to normal. "
                                   "Several may run: one holds a Redis lock. See docs/observability.md.",
                       epilog="examples:\n  triage monitor            # run until stopped (TRIAGE_MONITOR_INTERVAL)\n"
                              "  triage monitor --once     # one evaluation, print the scores and open alerts")
    p.add_argument("--once", action="store_true", help="evaluate once, print the result, exit")
    p.add_argument("--interval", type=float, help="seconds between evaluations (default TRIAGE_MONITOR_INTERVAL, 60)")
    p.set_defaults(func=cmd_monitor)

    llm = sub.add_parser("llm", help="the LLM second opinion: its answers as training labels (docs/llm.md)")
    lsub = llm.add_subparsers(dest="llm_command", required=True)
    p = lsub.add_parser("labels", formatter_class=FMT, help="write the LLM's answers as a training CSV",
                        epilog="example:\n  triage llm labels --out llm_labels.csv\n"
                               "  triage model train --extra-csv llm_labels.csv")
    p.add_argument("--out", default="llm_labels.csv", help="CSV file, or - for stdout (default llm_labels.csv)")
    p.set_defaults(func=cmd_llm_labels)

    dlq = sub.add_parser("dlq", help="the dead-letter queue: jobs that failed after their last retry")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True)
    dsub.add_parser("list", help="list failed jobs").set_defaults(func=cmd_dlq)
    p = dsub.add_parser("requeue", help="put failed jobs back on the queue")
    p.add_argument("ids", nargs="*", help="job ids (from `triage dlq list`)")
    p.add_argument("--all", action="store_true", help="requeue every failed job")
    p.set_defaults(func=cmd_dlq)
    return parser


def main(argv: list[str] | None = None) -> int:
    from redis.exceptions import RedisError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (TriageError, ModelError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RedisError as e:
        print(f"error: Redis unreachable at {_redis_where()} ({type(e).__name__}: {e}); start redis-server "
              "or point REDIS_URL at yours", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `triage score ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a file named on the command line: missing, unreadable, a folder
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _redis_where() -> str:
    """REDIS_URL without its password, for an error message."""
    from urllib.parse import urlsplit

    url = os.environ.get("REDIS_URL", "")
    if not url:
        return "(REDIS_URL not set)"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


if __name__ == "__main__":
    sys.exit(main())
