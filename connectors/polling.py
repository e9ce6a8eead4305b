"""The loop every poller runs: one pass, then wait; 429 waits Retry-After, other vendor errors back off."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker.errors import RateLimited, VendorError

log = logging.getLogger("triage.poll")


def poll_forever(poll: Callable[[], float], name: str, stop: threading.Event | None = None,
                 max_backoff_s: float = 300) -> None:
    """Call `poll` (which returns the seconds to wait before the next pass) until `stop` is set."""
    stop = stop or threading.Event()
    backoff = 0.0
    while not stop.is_set():
        try:
            wait = poll()
            backoff = 0.0
        except RateLimited as e:
            wait = e.retry_after
        except VendorError as e:
            backoff = min(max(backoff * 2, 5.0), max_backoff_s)
            log.warning("%s poll failed: %s; retrying in %.0fs", name, e, backoff)
            wait = backoff
        stop.wait(wait)
