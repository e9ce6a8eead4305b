"""`triage demo`: the whole flow on a sandbox helpdesk, with nothing to sign up for.

Redis (yours via REDIS_URL, else one started here) -> a sandbox Zendesk with sample tickets ->
signed webhooks into the real ingress -> a real RQ worker -> zenpy write-back into the sandbox.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import requests
import uvicorn
from rq.job import Job
from rq.serializers import JSONSerializer

from connectors.llm.sandbox import LlmSandbox
from connectors.zendesk.sandbox import ZendeskSandbox
from worker import bootstrap
from worker.jobs import TriageWorker
from worker.local_redis import LocalRedis, free_port
from worker.settings import LLMSettings, Secret, Settings, ZendeskSettings

EXAMPLE_RULES = Path(__file__).resolve().parent.parent / "deploy" / "rules.example.yaml"
SECRET = "demo-webhook-secret"


def _serve(app, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):
        if server.started:
            return server
        time.sleep(0.05)
    raise RuntimeError("the demo ingress did not start")


def run_demo(tickets: int = 0, llm: bool = False) -> int:
    local = None if os.environ.get("REDIS_URL") else LocalRedis().start()
    redis_url = os.environ.get("REDIS_URL") or local.url  # type: ignore[union-attr]
    zd = ZendeskSandbox(email="triage-bot@example.com", token="demo-token").start()
    os.environ.update(zd.env)  # zenpy talks to the sandbox
    llm_sandbox = LlmSandbox(api_key="demo-key").start() if llm else None
    rt: bootstrap.Runtime | None = None
    try:
        ids = zd.load_samples()[: tickets or None]
        settings = Settings(
            redis_url=redis_url, rules_path=str(EXAMPLE_RULES) if EXAMPLE_RULES.is_file() else "",
            queue_name="triage-demo", retry_intervals_s=(1, 2),
            zendesk=ZendeskSettings("sandbox", "triage-bot@example.com", Secret("demo-token"), Secret(SECRET),
                                    str(zd.bot_user_id)),
            llm=LLMSettings(base_url=llm_sandbox.base_url, model=llm_sandbox.model, api_key=Secret("demo-key"),
                            deadline_s=10) if llm_sandbox else LLMSettings())
        rt = bootstrap.build(settings)
        print(f"Redis {'(started here) ' if local else ''}{redis_url}; sandbox Zendesk at {zd.url} with "
              f"{len(ids)} tickets; rules: {settings.rules_path or 'default tags only'}")
        if llm_sandbox:
            print(f"LLM second opinion: a local OpenAI-compatible sandbox at {llm_sandbox.base_url} decides the "
                  "tickets the model abstains on or cannot read")
        print("loading the model ...", flush=True)
        started = time.perf_counter()
        version = rt.scorer.version
        print(f"model {version} loaded in {time.perf_counter() - started:.1f}s")

        port = free_port()
        server = _serve(bootstrap.http_app(rt), port)
        before = zd.tickets
        hook = f"http://127.0.0.1:{port}/webhooks/zendesk"
        with requests.Session() as http:
            for ticket_id in ids:
                body, headers = zd.signed_trigger(ticket_id, SECRET)
                http.post(hook, data=body, headers=headers, timeout=10).raise_for_status()
            body, headers = zd.signed_trigger(ids[0], SECRET)  # Zendesk sometimes delivers twice
            dup = http.post(hook, data=body, headers=headers, timeout=10).json()
            print(f"{len(ids)} signed webhooks accepted; a duplicate delivery answered {dup['status']!r}")

            started = time.perf_counter()
            _drain(rt)
            elapsed = time.perf_counter() - started
            after = zd.tickets
            for ticket_id in ids:
                _print_ticket(rt, zd, before[ticket_id], after[ticket_id])
            print(f"\n{len(ids)} tickets triaged and written back in {elapsed:.1f}s by one worker.")

            # Our own update makes Zendesk fire the trigger again: the ingress must drop it.
            body, headers = zd.signed_trigger(ids[0], SECRET, current_user_id=zd.bot_user_id)
            echo = http.post(hook, data=body, headers=headers, timeout=10).json()
            print(f"The webhook our own update fires: {echo['status']} ({echo.get('reason', '')}).")
        server.should_exit = True
        if llm_sandbox:
            print(f"The LLM was asked {llm_sandbox.calls} time(s); its answers are kept as training labels "
                  "(triage llm labels).")
        return 0
    finally:
        if rt is not None and rt.second_opinion is not None:
            rt.second_opinion.close()
        if llm_sandbox:
            llm_sandbox.stop()
        zd.stop()
        if local:
            local.close()


def _drain(rt: bootstrap.Runtime, until_s: float = 60.0) -> None:
    """One worker in burst mode until nothing is queued, scheduled or running (an LLM follow-up job
    arrives after its answer)."""
    queue = rt.enqueuer.queue
    deadline = time.monotonic() + until_s
    while time.monotonic() < deadline:
        TriageWorker([queue], connection=rt.redis, serializer=JSONSerializer, context=rt.job_context).work(
            burst=True, with_scheduler=True, logging_level="WARNING")
        if not (queue.count or queue.scheduled_job_registry.count or queue.started_job_registry.count):
            return
        time.sleep(0.2)


def job_result(rt: bootstrap.Runtime, zd: ZendeskSandbox, ticket_id: int) -> tuple[dict | None, str]:
    """The triage job's result for a ticket's last public comment (its "decision" when triaged), and the
    job's status."""
    event_key = None
    for c in reversed(zd.comments(ticket_id)):
        if c["public"]:
            event_key = f"zendesk:{ticket_id}:{c['id']}"
            break
    job_id = rt.enqueuer.job_of(event_key) if event_key else None
    job = Job.fetch(job_id, connection=rt.redis, serializer=JSONSerializer) if job_id else None
    result = next((r for r in (job.return_value() or []) if r.get("key") == event_key), None) if job else None
    return result, str(job.get_status()) if job else "no job"


def _print_ticket(rt: bootstrap.Runtime, zd: ZendeskSandbox, before: dict, after: dict) -> None:
    print(f"\n#{after['id']} {after['subject'][:78]}")
    result, status = job_result(rt, zd, after["id"])
    if not result or not result.get("decision"):
        print(f"  not triaged ({status})")
        return
    d = result["decision"]
    s, u = d["scores"]["sentiment"], d["scores"]["urgency"]
    print(f"  sentiment {s['label']} ({s['confidence']:.0%}) · urgency {u['label']} ({u['confidence']:.0%})"
          f" · rules: {', '.join(d['matched_rules']) or '-'}")
    words = d["scores"]["top_words"]
    print(f"  words: sentiment <- {', '.join(w for w, _ in words.get('sentiment', [])[:4]) or '-'}; "
          f"urgency <- {', '.join(w for w, _ in words.get('urgency', [])[:4]) or '-'}")
    added = [t for t in after["tags"] if t not in before["tags"]]
    wrote = [f"tags +{' +'.join(added)}"] if added else []
    if after.get("priority") != before.get("priority"):
        wrote.append(f"priority {before.get('priority') or '-'} -> {after.get('priority')}")
    if after.get("group_id") != before.get("group_id"):
        wrote.append(f"group -> {after.get('group_id')}")
    notes = [c for c in zd.comments(after["id"]) if not c["public"] and c["author_id"] == zd.bot_user_id]
    if notes:
        wrote.append("internal note")
    for line in (notes[-1]["body"].splitlines() if notes else []):
        if "LLM second opinion" in line:
            print(f"  {line.lstrip('- ')}")
    print(f"  wrote: {' · '.join(wrote) or 'nothing (already as decided)'}")

