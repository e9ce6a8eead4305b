"""The exception tree, the one place every error helpdesk-triage raises on purpose is defined.
Messages never carry ticket text or secrets.

    TriageError
    ├── ConfigError           a setting is missing or invalid (names the variable)
    ├── RulesError            the rules file is wrong (names the line)
    ├── EventError            a payload is not a ticket event (worker.events; also a ValueError)
    ├── SignatureError        a webhook failed verification (connectors/*/signature.py)
    ├── QueueUnavailable      Redis could not be reached: the sender retries later (HTTP 503)
    ├── FeedbackError         a verdict could not be stored or read (worker.feedback)
    ├── ContextUnavailable    Slack's memory of what it showed could not be read (connectors.slack.context)
    └── VendorError           a helpdesk API call failed
        ├── RateLimited       429: wait `retry_after` seconds; never spends a retry
        ├── VendorUnavailable 5xx, timeout, connection refused: retry this ticket with backoff
        ├── VendorAuthError   401/403: a credential is wrong; do not retry
        └── VendorRejected    other 4xx (404 ticket gone, 422 invalid): do not retry
"""

from __future__ import annotations


class TriageError(Exception):
    """Base of every error helpdesk-triage raises on purpose."""


class ConfigError(TriageError):
    """A setting is missing or invalid; the message names the variable and how to fix it."""


class RulesError(TriageError):
    """The rules file is wrong; the message names the file and line."""

    def __init__(self, message: str, line: int | None = None, path: str = ""):
        self.line = line
        self.path = path
        where = f"{path}:{line}: " if path and line else (f"line {line}: " if line else "")
        super().__init__(f"{where}{message}")


class SignatureError(TriageError):
    """A webhook request failed verification; the message says why (missing, malformed, stale,
    mismatch), never the secret."""


class QueueUnavailable(TriageError):
    """Redis could not be reached: the sender should retry later (HTTP 503)."""


class FeedbackError(TriageError):
    """A verdict could not be stored or read (Redis down, bad label)."""


class ContextUnavailable(TriageError):
    """What Slack was shown (the context of a later button press) could not be read: Redis down."""


class VendorError(TriageError):
    """A helpdesk API call failed; `retryable` says whether trying the ticket again can help."""

    retryable = False

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


class RateLimited(VendorError):
    """429: the account is limited; wait `retry_after` seconds (a pause, not a failed try)."""

    retryable = True

    def __init__(self, message: str, retry_after: float, status: int = 429):
        self.retry_after = retry_after
        super().__init__(message, status)


class VendorUnavailable(VendorError):
    """5xx, a timeout, a refused connection: this ticket is tried again later, with backoff."""

    retryable = True


class VendorAuthError(VendorError):
    """401/403: a credential is wrong (401: for every ticket; 403: maybe for this one); not retried."""


class VendorRejected(VendorError):
    """Another 4xx (404 the ticket is gone, 422 invalid): retrying cannot help."""
