"""Redis-backed memory of what the worker did: exactly-once bookkeeping and what the bot wrote."""

from __future__ import annotations

import json

from redis import Redis

from worker.decision import Scores

PREFIX = "triage"


class Store:
    def __init__(self, redis: Redis, dedupe_ttl_s: int = 30 * 24 * 3600):
        self.redis = redis
        self.ttl = dedupe_ttl_s
        self._claim = redis.register_script(_CLAIM)

    # -- exactly once per ticket revision ---------------------------------------------------
    def begin(self, key: str) -> str:
        """Start triaging a revision, in one round trip: 'done' if it was triaged already, 'first'
        for the first attempt, 'again' when an earlier attempt started it and did not finish."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(f"{PREFIX}:done:{key}")
        pipe.set(f"{PREFIX}:started:{key}", "1", nx=True, ex=self.ttl)
        done, first = pipe.execute()
        return "done" if done else "first" if first else "again"

    def finish(self, key: str) -> None:
        self.redis.set(f"{PREFIX}:done:{key}", "1", ex=self.ttl)

    # -- scores shared between workers (scoring ahead) ----------------------------------------
    def cached_scores(self, key: str) -> Scores | None:
        raw = self.redis.get(f"{PREFIX}:scores:{key}")
        return Scores.from_dict(json.loads(raw)) if raw else None

    def cache_scores(self, scores: dict[str, Scores], ttl_s: int = 120) -> None:
        """Scores a worker computed ahead, for a worker waiting on its claim: needed for seconds."""
        pipe = self.redis.pipeline(transaction=False)
        for key, s in scores.items():
            pipe.set(f"{PREFIX}:scores:{key}", json.dumps(s.to_dict()), ex=ttl_s)
        pipe.execute()

    # -- claims: each queued job's ticket is scored by one worker ----------------------------
    def claim(self, job_id: str, ttl_s: int = 60) -> bool:
        """Claim a job's ticket for scoring; False if another worker claimed it."""
        return bool(self.redis.set(f"{PREFIX}:claim:{job_id}", "1", nx=True, ex=ttl_s))

    def claim_queued(self, queue_key: str, job_prefix: str, limit: int, peek: int = 8,
                     ttl_s: int = 60) -> list[bytes]:
        """Claim the first `limit` unclaimed jobs among the first `limit + peek` waiting in an RQ
        queue (peeked, not taken) and return their stored `data`, in one round trip."""
        return self._claim(keys=[queue_key], args=[limit, limit + peek, ttl_s, job_prefix, f"{PREFIX}:claim:"])


# One round trip for what would be three (peek, claim, fetch). It touches keys it is not passed:
# fine on one Redis server, which is what RQ needs anyway.
_CLAIM = """
local out = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  if #out >= tonumber(ARGV[1]) then break end
  if redis.call('SET', ARGV[5] .. id, '1', 'NX', 'EX', ARGV[3]) then
    local data = redis.call('HGET', ARGV[4] .. id, 'data')
    if data then out[#out + 1] = data end
  end
end
return out
"""
