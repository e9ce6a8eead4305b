"""What the console's pages show, computed from Redis, the rules and the queue. No HTTP here."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis
from rq.job import Job
from rq.registry import FailedJobRegistry

from worker.decision_log import DecisionLog, LoggedDecision, summarise
from worker.errors import RulesError, TriageError
from worker.events import EventError, TicketEvent
from worker.metrics import MONITOR_STATE
from worker.rules import RuleSet, parse_rules

HEAD_LABELS = {"sentiment": ("frustrated", "neutral", "satisfied", "unsure"),
               "urgency": ("high", "medium", "low", "unsure")}
CHART_HOURS = 48
DRY_RUN_MAX = 5000


def _rate(counts: dict[str, float], key: str) -> float | None:
    n = counts.get("n", 0)
    return counts.get(key, 0) / n if n else None


def overview(log: DecisionLog, redis: Redis, queue: Any, model_version: str, now: datetime) -> dict[str, Any]:
    hours = log.hourly(now, 24 * 8)
    today, week = summarise(hours[-24:]), summarise(hours[:-24])
    per_day = {k: v / 7 for k, v in week.items()}
    abstain_today = None if not today.get("n") else 1 - (today.get("ab:none", 0) / today["n"])
    abstain_base = None if not week.get("n") else 1 - (week.get("ab:none", 0) / week["n"])
    latest = log.recent(1)
    state = json.loads(redis.get(MONITOR_STATE) or "{}")
    return {
        "today": today, "per_day": per_day,
        "rates": [("abstain rate", abstain_today, abstain_base),
                  ("high urgency", _rate(today, "u:high"), _rate(week, "u:high")),
                  ("frustrated", _rate(today, "s:frustrated"), _rate(week, "s:frustrated"))],
        "outcomes": sorted((k[3:], v) for k, v in today.items() if k.startswith("st:")),
        "sources": sorted((k[4:], v) for k, v in today.items() if k.startswith("src:")),
        "queue_depth": queue.count, "dlq": FailedJobRegistry(queue=queue).count,
        "model_version": model_version or (latest[0].get("model_version") if latest else "") or "not known yet",
        "alerts": state.get("open", []), "psi": state.get("psi", {}),
        "monitor_at": datetime.fromtimestamp(state["at"], UTC) if state.get("at") else None,
        "charts": {head: mix_chart(hours[-CHART_HOURS:], head) for head in HEAD_LABELS},
        "logged": log.count(),
        "suggestions": suggestion_rates(summarise(hours)),
    }


def suggestion_rates(counts: dict[str, float]) -> list[tuple[str, int, int, float]]:
    """Suggest mode's trust ramp: per field, (field, accepted, rejected, acceptance) from the hour
    counters (`sg:FIELD:OUTCOME`, settled when a later revision shows the agent's choice)."""
    fields = sorted({k.split(":")[1] for k in counts if k.startswith("sg:")})
    out = []
    for name in fields:
        yes, no = int(counts.get(f"sg:{name}:accepted", 0)), int(counts.get(f"sg:{name}:rejected", 0))
        out.append((name, yes, no, yes / (yes + no) if yes + no else 0.0))
    return out


def mix_chart(hours: list[tuple[datetime, dict[str, float]]], head: str, width: int = 720,
              height: int = 140) -> dict[str, Any]:
    """Stacked bars, one an hour: each label's share of the hour's tickets (inline SVG)."""
    labels, prefix = HEAD_LABELS[head], head[0] + ":"
    bar = width / max(len(hours), 1)
    bars = []
    for i, (start, counts) in enumerate(hours):
        n = sum(counts.get(prefix + k, 0) for k in labels)
        y = float(height)
        for k in labels:
            h = height * counts.get(prefix + k, 0) / n if n else 0
            if h:
                y -= h
                bars.append({"x": round(i * bar, 1), "y": round(y, 1), "w": round(max(bar - 1, 1), 1),
                             "h": round(h, 1), "label": k,
                             "title": f"{start:%d %b %H:00} {k}: {counts.get(prefix + k, 0):.0f} of {n:.0f}"})
    return {"width": width, "height": height, "bars": bars, "labels": labels,
            "first": hours[0][0] if hours else None, "last": hours[-1][0] if hours else None}


def feed(log: DecisionLog, source: str, label: str, rule: str, abstained: str, before: str,
         count: int = 50) -> dict[str, Any]:
    ab = {"1": True, "0": False}.get(abstained)
    rows = log.recent(count, before=before or "+", source=source, label=label, rule=rule, abstained=ab)
    changed = log.overridden_keys()
    return {"rows": rows, "changed": changed, "older": ("(" + rows[-1].id) if len(rows) == count else ""}


# -- rules ----------------------------------------------------------------------------------------------------


def rules_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8") if path else ""


def check_rules(text: str, path: str) -> tuple[RuleSet | None, RulesError | None]:
    try:
        return parse_rules(text, path or "rules"), None
    except RulesError as e:
        return None, e


def numbered(text: str, line: int | None, around: int = 3) -> list[tuple[int, str, bool]]:
    """The lines around `line` (1-based), numbered, the bad one marked."""
    lines = text.splitlines()
    if not line:
        return []
    lo, hi = max(line - around, 1), min(line + around, len(lines))
    return [(n, lines[n - 1], n == line) for n in range(lo, hi + 1)]


def _with_builtin(rules: RuleSet, builtin: RuleSet | None) -> RuleSet:
    return replace(rules, rules=rules.rules + builtin.rules) if builtin is not None and builtin.rules else rules


def _actions(decision: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(decision.actions).items() if v}


def dry_run(edited: RuleSet, current: RuleSet, builtin: RuleSet | None, decisions: list[LoggedDecision],
            text_kept: bool) -> dict[str, Any]:
    """The logged decisions the edited rules would decide differently from the current ones, ticket by
    ticket (both replayed on the same logged ticket fields, at the decision's time)."""
    from worker.triage import decide

    new = _with_builtin(edited, builtin)
    changes = []
    for d in decisions:
        event, scores = d.event(), d.scores()
        before, after = decide(event, scores, current, d.at), decide(event, scores, new, d.at)
        if before.matched_rules == after.matched_rules and before.actions == after.actions:
            continue
        a, b = _actions(before), _actions(after)
        diff = {k: (a.get(k, ""), b.get(k, "")) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
        changes.append({"decision": d, "rules_before": before.matched_rules, "rules_after": after.matched_rules,
                        "diff": diff})
    return {"changes": changes, "replayed": len(decisions), "text_kept": text_kept}


def uses_text(text: str) -> bool:
    """Does a rules file match on the ticket's words (keywords, regex)? A dry run needs the logged text then."""
    return re.search(r"^\s*(keywords|regex)\s*:", text, re.MULTILINE) is not None


def save_rules(path: str, text: str, now: datetime) -> str:
    """Write the rules file (valid text only: the caller checked), keeping a backup; the backup's path.
    Atomic: a reader sees the old file or the new one, never half of it."""
    p = Path(path)
    backup = p.with_name(f"{p.name}.bak-{now:%Y%m%dT%H%M%S}")
    try:
        shutil.copy2(p, backup)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, p.stat().st_mode & 0o777)
        os.replace(tmp, p)
    except OSError as e:
        raise TriageError(f"cannot write {path}: {e.strerror}. Where the file is read-only (a Kubernetes "
                          "ConfigMap), edit it there: deploy/k8s/README.md") from None
    return str(backup)


# -- dead letters ------------------------------------------------------------------------------------------


def dead_letter(queue: Any, job_id: str, keep_text: bool) -> dict[str, Any] | None:
    if job_id not in FailedJobRegistry(queue=queue).get_job_ids():
        return None
    job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
    tickets = []
    for raw in job.args or ():
        try:
            e = TicketEvent.from_json(raw)
        except (EventError, ValueError, TypeError):
            tickets.append({"key": "(an event that could not be read)"})
            continue
        t: dict[str, Any] = {"key": e.key, "source": e.source, "ticket_id": e.ticket_id, "revision": e.revision}
        if keep_text:
            t["subject"], t["text"] = e.subject, e.text
        tickets.append(t)
    result = job.latest_result()
    error = (result.exc_string or "").strip().splitlines()[-3:] if result else []
    return {"id": job.id, "description": job.description or "", "tickets": tickets, "error": error,
            "enqueued_at": job.enqueued_at, "ended_at": job.ended_at, "retries_left": job.retries_left}


def when(at: datetime | None, now: datetime | None = None) -> str:
    if at is None:
        return ""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    delta = (now or datetime.now(UTC)) - at
    if delta < timedelta(minutes=1):
        return "just now"
    if delta < timedelta(hours=1):
        return f"{int(delta.total_seconds() // 60)} min ago"
    if delta < timedelta(days=1):
        return f"{int(delta.total_seconds() // 3600)} h ago"
    return at.strftime("%Y-%m-%d %H:%M")
