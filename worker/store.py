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
    def is_done(self, key: str) -> bool:
        return bool(self.redis.exists(f"{PREFIX}:done:{key}"))

    def begin(self, key: str) -> bool:
        """Mark a write-back as started; False if an earlier attempt already started it."""
        return bool(self.redis.set(f"{PREFIX}:started:{key}", "1", nx=True, ex=self.ttl))

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

    def claim(self, keys: list[str], limit: int | None = None, ttl_s: int = 60) -> list[str]:
        """Claim revisions for scoring, in order, until `limit` are won; returns those this caller won."""
        won = self._claim(keys=[f"{PREFIX}:claim:{k}" for k in keys], args=[limit or len(keys), ttl_s])
        return [keys[i - 1] for i in won]


# Claims the first ARGV[1] free keys in one round trip (a pipeline would claim every one it tries).
_CLAIM = """
local won = {}
for i, key in ipairs(KEYS) do
  if #won >= tonumber(ARGV[1]) then break end
  if redis.call('SET', key, '1', 'NX', 'EX', ARGV[2]) then won[#won + 1] = i end
end
return won
"""
