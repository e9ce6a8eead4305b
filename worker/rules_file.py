"""The rules file on disk: loading it, and picking up an admin's edits without a restart.

A bad edit never takes the worker down: `RulesReloader` logs a warning (logger
"triage.rules"), keeps deciding with the last good rules, and exposes the error in `.error`
for readiness checks until the file is fixed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from worker.errors import RulesError
from worker.rules import RuleSet, parse_rules

log = logging.getLogger("triage.rules")

_Stamp = tuple[int, int, int, int]


def load_rules(path: str | os.PathLike[str]) -> RuleSet:
    """Read and validate a rules file; RulesError names the path (and the line)."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise RulesError(f"{p}: cannot read the rules file: {e.strerror or e}", path=p) from None
    except UnicodeDecodeError as e:
        raise RulesError(f"{p}: the rules file is not UTF-8 text (byte {e.start})", path=p) from None
    return parse_rules(text, p)


def _stamp(path: str) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class RulesReloader:
    """The current rules; re-read when the file's mtime/size/inode change, checked at most
    once per `interval` seconds. Raises RulesError if the first load fails."""

    def __init__(self, path: str | os.PathLike[str], *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.path = os.fspath(path)
        self.error: str | None = None  # the latest load error; None while the file is good
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = _stamp(self.path)  # before reading: an edit during the read is seen next time
        self._rules = load_rules(self.path)
        self._checked = clock()

    def current(self) -> RuleSet:
        if self._clock() - self._checked >= self._interval and self._lock.acquire(blocking=False):
            try:  # another thread already checking: use the rules we have
                self._check()
            finally:
                self._lock.release()
        return self._rules

    def _check(self) -> None:
        self._checked = self._clock()
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            rules = load_rules(self.path)
        except RulesError as e:
            self.error = str(e)
            log.warning("rules not reloaded, keeping the last good rules: %s", e)
            return
        self._rules, self.error = rules, None
        log.info("rules reloaded from %s: %d rules", self.path, len(rules.rules))
