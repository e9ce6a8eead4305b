"""HTTP helpers every connector shares."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from time import time

import requests

DEFAULT_RETRY_AFTER_S = 60.0  # when a 429 names no wait: helpdesk limits are per minute


def retry_after_s(headers: Mapping[str, str], default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """Seconds to wait from a Retry-After header (seconds or HTTP date); `default` when absent."""
    raw = (headers.get("Retry-After") or "").strip()
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time())
    except (TypeError, ValueError):
        return default


def pin_environment(session: requests.Session, url: str) -> None:
    """Read the proxy and CA-bundle variables (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, ...) for
    `url` once, now, instead of on every request: requests looks them up per call (a third of a
    millisecond of CPU on a small machine). For a session that only talks to that one host."""
    found = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(found["proxies"])
    if isinstance(found["verify"], str):
        session.verify = found["verify"]
    session.trust_env = False
