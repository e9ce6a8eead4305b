"""The dead-letter queue: RQ's failed-job registry of the triage queue."""

from __future__ import annotations

from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry

from worker.errors import TriageError


def list_failed(queue: Queue) -> list[dict[str, str]]:
    registry = FailedJobRegistry(queue=queue)
    rows = []
    for job in Job.fetch_many(registry.get_job_ids(), connection=queue.connection, serializer=queue.serializer):
        if job is None:
            continue
        result = job.latest_result()
        error = (result.exc_string or "").strip().splitlines()[-1:] if result else []
        rows.append({"id": job.id, "description": job.description or "",
                     "ended_at": job.ended_at.isoformat(timespec="seconds") if job.ended_at else "",
                     "error": error[0] if error else ""})
    return rows


def requeue(queue: Queue, ids: list[str], everything: bool = False) -> list[str]:
    registry = FailedJobRegistry(queue=queue)
    targets = registry.get_job_ids() if everything else ids
    if not targets:
        raise TriageError("name job ids to requeue (see `triage dlq list`), or --all")
    done = []
    for job_id in targets:
        registry.requeue(job_id)
        done.append(job_id)
    return done
