"""Redis-backed memory of what the worker did: exactly-once bookkeeping (RedisStore, the adapter of
worker.ports.Store) and the account-wide pause a helpdesk's 429 asks for (AccountPause)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from redis import Redis

from worker.ports import Attempt

PREFIX = "triage"
LEASE_TTL_S = 600  # bootstrap sizes it from TRIAGE_JOB_TIMEOUT: a lease outlives the job that holds it


class RedisStore:
    """Per ticket revision (an event key): `done` once written back, `started` once an attempt
    began (a later attempt checks the ticket for what an interrupted one wrote), and a lease naming
    the job that works on it now, so two jobs carrying the same revision never write it both."""

    def __init__(self, redis: Redis, dedupe_ttl_s: int = 30 * 24 * 3600, lease_ttl_s: int = LEASE_TTL_S):
        self.redis = redis
        self.ttl = dedupe_ttl_s
        self.lease_ttl = lease_ttl_s
        self._begin = redis.register_script(_BEGIN)
        self._release = redis.register_script(_RELEASE)

    def begin(self, keys: Sequence[str], owner: str) -> list[Attempt]:
        """Start triaging revisions for `owner` (a job id), in one round trip. Per key: DONE if
        triaged already, BUSY while another owner holds it, else FIRST for the first attempt or
        AGAIN when an earlier attempt started it and did not finish. A job that runs again (a
        retry, or after its worker died) gets its own revisions back."""
        if not keys:
            return []
        names = [f"{PREFIX}:{kind}:{key}" for key in keys for kind in ("done", "started", "lease")]
        return [Attempt(s.decode() if isinstance(s, bytes) else s)
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


Store = RedisStore  # the name the wiring and older tests use


class AccountPause:
    """A helpdesk account's rate limit, shared by every worker through Redis: a 429 on one worker
    pauses that helpdesk's write-backs on all of them for what Retry-After said (capped at
    `max_wait_s`), so N workers do not hammer a limited account. `remaining` asks Redis at most
    every `check_every_s` per helpdesk (a pause set elsewhere is seen that late at worst); a pause
    this worker set or saw is known without asking."""

    check_every_s = 0.25

    def __init__(self, redis: Redis, max_wait_s: float = 60.0):
        self.redis = redis
        self.max_wait_s = max_wait_s
        self._until: dict[str, float] = {}  # source -> monotonic time its known pause ends
        self._checked: dict[str, float] = {}  # source -> monotonic time Redis was last asked
        self._extend = redis.register_script(_EXTEND)

    @staticmethod
    def key(source: str) -> str:
        return f"{PREFIX}:pause:{source}"

    def hold(self, source: str, seconds: float) -> float:
        """Pause `source` for `seconds` (capped; a longer pause already set stays). Returns the pause."""
        wait = min(max(seconds, 0.0), self.max_wait_s)
        ms = max(1, math.ceil(wait * 1000))
        left = int(self._extend(keys=[self.key(source)], args=[ms]))
        now = time.monotonic()
        self._until[source] = now + left / 1000
        self._checked[source] = now
        return left / 1000

    def remaining(self, source: str) -> float:
        """Seconds until `source` may be written to again (0: now)."""
        now = time.monotonic()
        until = self._until.get(source, 0.0)
        if until > now:
            return until - now
        if now - self._checked.get(source, -math.inf) < self.check_every_s:
            return 0.0
        left = max(int(self.redis.pttl(self.key(source))), 0)  # -2: no pause, -1 cannot happen (always PX)
        self._checked[source] = now
        self._until[source] = now + left / 1000
        return left / 1000


# Take revisions for an owner (Store.begin).
# KEYS: per revision, three keys in this order: done, started, lease (triage:{kind}:{event key})
# ARGV[1]: the owner (a job id); ARGV[2]: TTL of `started`, seconds; ARGV[3]: TTL of the lease, seconds
# Returns per revision 'done', 'busy', 'first' or 'again' (worker.ports.Attempt).
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

# Give a lease back if its owner still holds it (Store.release).
# KEYS[1]: the lease (triage:lease:{event key}); ARGV[1]: the owner
# Returns 1 if the lease was deleted, else 0.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Pause a helpdesk account, keeping a longer pause already set (AccountPause.hold).
# KEYS[1]: the pause (triage:pause:{source}); ARGV[1]: the pause wanted, milliseconds
# Returns the pause now in force, milliseconds.
_EXTEND = """
local left = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if left >= wanted then return left end
redis.call('SET', KEYS[1], '1', 'PX', wanted)
return wanted
"""
