"""Redis-backed memory of what the worker did: exactly-once bookkeeping and what the bot wrote."""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis

PREFIX = "triage"
LEASE_TTL_S = 600  # bootstrap sizes it from TRIAGE_JOB_TIMEOUT: a lease outlives the job that holds it


class Store:
    """Per ticket revision (an event key): `done` once written back, `started` once an attempt
    began (a later attempt checks the ticket for what an interrupted one wrote), and a lease naming
    the job that works on it now, so two jobs carrying the same revision never write it both."""

    def __init__(self, redis: Redis, dedupe_ttl_s: int = 30 * 24 * 3600, lease_ttl_s: int = LEASE_TTL_S):
        self.redis = redis
        self.ttl = dedupe_ttl_s
        self.lease_ttl = lease_ttl_s
        self._begin = redis.register_script(_BEGIN)
        self._release = redis.register_script(_RELEASE)

    def begin(self, keys: Sequence[str], owner: str) -> list[str]:
        """Start triaging revisions for `owner` (a job id), in one round trip. Per key: 'done' if
        triaged already, 'busy' while another owner holds it, else 'first' for the first attempt
        or 'again' when an earlier attempt started it and did not finish. A job that runs again
        (a retry, or after its worker died) gets its own revisions back."""
        if not keys:
            return []
        names = [f"{PREFIX}:{kind}:{key}" for key in keys for kind in ("done", "started", "lease")]
        return [s.decode() if isinstance(s, bytes) else s
                for s in self._begin(keys=names, args=[owner, self.ttl, self.lease_ttl])]

    def finish(self, keys: Sequence[str]) -> None:
        """Record revisions as triaged and drop their leases, in one round trip (each done before
        its lease goes: no gap for a duplicate)."""
        if not keys:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(f"{PREFIX}:done:{key}", "1", ex=self.ttl)
            pipe.delete(f"{PREFIX}:lease:{key}")
        pipe.execute()

    def release(self, key: str, owner: str) -> None:
        """Give a revision's lease back after a failed attempt (only if `owner` still holds it)."""
        self._release(keys=[f"{PREFIX}:lease:{key}"], args=[owner])


_BEGIN = """
local out = {}
for i = 1, #KEYS, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[#out + 1] = 'done'
  else
    local holder = redis.call('GET', KEYS[i + 2])
    if holder and holder ~= ARGV[1] then
      out[#out + 1] = 'busy'
    else
      redis.call('SET', KEYS[i + 2], ARGV[1], 'EX', ARGV[3])
      if redis.call('SET', KEYS[i + 1], '1', 'NX', 'EX', ARGV[2]) then
        out[#out + 1] = 'first'
      else
        out[#out + 1] = 'again'
      end
    end
  end
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
