"""The dead-letter queue: RQ's failed-job registry of the triage queue.

An entry holds the tickets that failed together for one reason: usually one ticket (its last try
failed, or trying again cannot help), or a helpdesk's tickets a 401 stopped, or a job whose worker
died more often than its retries allow. Its error says which tickets and why (never their text).
Requeued, its tickets start again with fresh tries."""

from __future__ import annotations

from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry

from worker.errors import TriageError
from worker.queueing import TRIES_META


def list_failed(queue: Queue) -> list[dict[str, str]]:
    """One row per entry: id, description (the tickets, by id), ended_at, error, tickets (how many)."""
    registry = FailedJobRegistry(queue=queue)
    rows = []
    for job in Job.fetch_many(registry.get_job_ids(), connection=queue.connection, serializer=queue.serializer):
        if job is None:
            continue
        result = job.latest_result()
        error = (result.exc_string or "").strip().splitlines()[-1:] if result else []
        rows.append({"id": job.id, "description": job.description or "",
                     "ended_at": job.ended_at.isoformat(timespec="seconds") if job.ended_at else "",
                     "error": error[0] if error else "", "tickets": str(len(job.args or ()))})
    return rows


def requeue(queue: Queue, ids: list[str], everything: bool = False) -> list[str]:
    """Put entries back on the queue (all with `everything`), their tickets' tries counted afresh."""
    registry = FailedJobRegistry(queue=queue)
    targets = registry.get_job_ids() if everything else ids
    if not targets:
        raise TriageError("name job ids to requeue (see `triage dlq list`), or --all")
    done = []
    for job_id in targets:
        try:
            job = Job.fetch(job_id, connection=queue.connection, serializer=queue.serializer)
        except NoSuchJobError:
            raise TriageError(f"no job {job_id!r} in the dead-letter queue (see `triage dlq list`)") from None
        if job.meta.pop(TRIES_META, None) is not None:
            job.save_meta()
        registry.requeue(job_id)
        done.append(job_id)
    return done
