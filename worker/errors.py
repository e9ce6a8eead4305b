"""The exception tree. Messages never carry ticket text or secrets.

    TriageError
    ├── ConfigError          a setting is missing or invalid (names the variable)
    ├── RulesError           the rules file is wrong (names the line)
    ├── EventError           a payload is not a ticket event (worker.events)
    ├── JobIncomplete        some tickets of a job were not written back (its retry takes those)
    └── VendorError          a helpdesk API call failed
        ├── RateLimited      429: retry after `retry_after` seconds
        ├── VendorUnavailable 5xx, timeout, connection refused: retry with backoff
        ├── VendorAuthError  401/403: a credential is wrong; do not retry
        └── VendorRejected   other 4xx (404 ticket gone, 422 invalid): do not retry
"""

from __future__ import annotations


class TriageError(Exception):
    """Base of every error helpdesk-triage raises on purpose."""


class ConfigError(TriageError):
    pass


class RulesError(TriageError):
    def __init__(self, message: str, line: int | None = None, path: str = ""):
        self.line = line
        self.path = path
        where = f"{path}:{line}: " if path and line else (f"line {line}: " if line else "")
        super().__init__(f"{where}{message}")


class JobIncomplete(TriageError):
    pass


class VendorError(TriageError):
    retryable = False

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


class RateLimited(VendorError):
    retryable = True

    def __init__(self, message: str, retry_after: float, status: int = 429):
        self.retry_after = retry_after
        super().__init__(message, status)


class VendorUnavailable(VendorError):
    retryable = True


class VendorAuthError(VendorError):
    pass


class VendorRejected(VendorError):
    pass
