"""The `triage` command. Each subcommand parses its arguments and calls into the package."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from model import cli as model_cli
from model.data import DataError
from model.runtime import ModelError
from worker.errors import TriageError

DESCRIPTION = """\
helpdesk-triage: scores every ticket's sentiment and urgency with a local model and writes
tags, priority, routing and an internal note back to Zendesk.

Start here:
  triage demo                      the whole flow on a sandbox helpdesk, no account needed
  triage score "text"              score a text with the local model
  triage rules check rules.yaml    validate a routing rules file

Run it:
  triage serve                     HTTP ingress: webhooks, /healthz, /readyz, /v1/score
  triage worker                    score and write back (run as many as you like, on any machine)
  triage poll zendesk              catch up through the incremental export instead of webhooks

Settings come from the environment or a .env file: see deploy/env.example.
"""

FMT = argparse.RawDescriptionHelpFormatter


def _runtime():
    from worker.bootstrap import build, install
    from worker.settings import load_settings

    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rt = build(settings)
    install(rt)
    return rt


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from worker.bootstrap import http_app

    rt = _runtime()
    rt.scorer  # load the model now: readiness and the first request should not wait  # noqa: B018
    if rt.settings.zendesk.enabled:
        logging.getLogger("triage").info("zendesk bot user id: %s", rt.zendesk_bot_user_id)
    uvicorn.run(http_app(rt), host=args.host, port=args.port, log_level="warning",
                access_log=args.access_log, workers=1)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from rq.serializers import JSONSerializer

    from worker.jobs import TriageWorker

    rt = _runtime()
    if not rt.writers:
        raise TriageError("no helpdesk configured: set the ZENDESK_* variables (see deploy/env.example)")
    rt.scorer  # noqa: B018
    worker = TriageWorker([rt.enqueuer.queue], connection=rt.redis, serializer=JSONSerializer,
                          name=args.name)
    worker.work(burst=args.burst, with_scheduler=True, logging_level=rt.settings.log_level)
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from connectors.zendesk.poller import ZendeskPoller
    from worker.bootstrap import zendesk_client

    rt = _runtime()
    if not rt.settings.zendesk.enabled:
        raise TriageError("set the ZENDESK_* variables to poll Zendesk (see deploy/env.example)")
    poller = ZendeskPoller(zendesk_client(rt.settings), rt.redis, rt.zendesk_bot_user_id)
    if args.once:
        while True:  # one pass: page until the export says there is no more
            page = poller.poll_page(rt.enqueuer.submit)
            print(f"{len(page.events)} changed tickets queued, {len(page.skipped)} skipped")
            if page.end_of_stream:
                return 0
    poller.run(rt.enqueuer.submit, interval_s=args.interval)
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
    from worker.events import TicketEvent
    from worker.rules_file import load_rules
    from worker.scoring import ModelScorer
    from worker.triage import decide

    rules = load_rules(args.file)
    events = []
    for n, line in enumerate(Path(args.tickets).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            data.setdefault("source", "sandbox")
            data.setdefault("ticket_id", str(n))
            data.setdefault("revision", "1")
            events.append(TicketEvent.from_dict(data))
        except (ValueError, TriageError) as e:
            raise TriageError(f"{args.tickets}:{n}: {e}") from None
    scorer = ModelScorer(TriageModel.load(args.model_dir))
    scores = scorer.score([ticket_text(e.subject, e.text) for e in events])
    now = datetime.now(UTC)
    for event, s in zip(events, scores):
        d = decide(event, s, rules, now)
        a = {k: v for k, v in vars(d.actions).items() if v}
        print(f"ticket {event.ticket_id}: {event.subject or event.text[:60]!r}")
        print(f"  sentiment {s.sentiment.label} ({s.sentiment.confidence:.2f}), "
              f"urgency {s.urgency.label} ({s.urgency.confidence:.2f})")
        print(f"  rules: {', '.join(d.matched_rules) or '(none)'}")
        print(f"  actions: {json.dumps(a)}")
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from worker.dlq import list_failed, requeue

    rt = _runtime()
    if args.dlq_command == "list":
        rows = list_failed(rt.enqueuer.queue)
        for r in rows:
            print(f"{r['id']}  {r['ended_at']}  {r['description']}  {r['error']}")
        print(f"{len(rows)} job(s) in the dead-letter queue")
    else:
        done = requeue(rt.enqueuer.queue, args.ids, args.all)
        print(f"requeued {len(done)} job(s)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return run_demo(tickets=args.tickets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description=DESCRIPTION, formatter_class=FMT)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the whole flow on a sandbox helpdesk (no account needed)",
                       description="Starts Redis (when REDIS_URL is not set), a sandbox Zendesk with sample "
                                   "tickets, the webhook ingress and a worker; sends each ticket's webhook "
                                   "and prints what was written back.")
    p.add_argument("--tickets", type=int, default=0, help="how many sample tickets (default: all)")
    p.set_defaults(func=cmd_demo)

    model_cli.add_commands(sub)

    p = sub.add_parser("serve", help="HTTP ingress: webhooks, health checks, scoring API")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--access-log", action="store_true", help="log every request (off by default)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="score queued tickets and write back (run several)")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--name", help="worker name (default: random)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("poll", help="fetch changed tickets from a helpdesk API and queue them")
    p.add_argument("system", choices=["zendesk"])
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
                        epilog="tickets file: one JSON object a line, e.g.\n"
                               '  {"subject": "Site down", "text": "Nothing loads since 9am!", "tags": ["vip"]}')
    p.add_argument("file")
    p.add_argument("--tickets", required=True, help="JSON lines of tickets")
    p.add_argument("--model-dir")
    p.set_defaults(func=cmd_rules_test)

    dlq = sub.add_parser("dlq", help="the dead-letter queue: jobs that failed after their last retry")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True)
    dsub.add_parser("list", help="list failed jobs").set_defaults(func=cmd_dlq)
    p = dsub.add_parser("requeue", help="put failed jobs back on the queue")
    p.add_argument("ids", nargs="*", help="job ids (from `triage dlq list`)")
    p.add_argument("--all", action="store_true", help="requeue every failed job")
    p.set_defaults(func=cmd_dlq)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (TriageError, ModelError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
