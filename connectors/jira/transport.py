"""The `jira` client, built once and lazily, and the mapping of its failures to worker.errors.

The client talks REST API v3 (/rest/api/3: the current search endpoint, search/jql with
nextPageToken, and ADF bodies) with the library's own retries off (`max_retries=0`): a 429 or 503
is handed to the worker's retry logic with the server's Retry-After instead of sleeping inside a
job. Every failure leaves here as a VendorError whose message names the operation, the status and
the offending field ids, never a response body (bodies can echo ticket text) nor a credential.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from jira import JIRA, JIRAError

from connectors.http import pin_environment, retry_after_s
from worker.errors import RateLimited, VendorAuthError, VendorError, VendorRejected, VendorUnavailable

CREDENTIALS = "JIRA_EMAIL / JIRA_API_TOKEN"
REST_VERSION = "3"
DEFAULT_RETRY_AFTER_S = 30.0


def error_fields(response: requests.Response | None) -> list[str]:
    """The field ids Jira's error body names ({"errors": {"priority": "..."}}), never the messages."""
    if response is None:
        return []
    try:
        data = response.json()
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, dict):
        return []
    return sorted(str(k) for k in errors if str(k).replace("_", "").isalnum())[:20]


def error_for(status: int, headers: Mapping[str, str], op: str, detail: str = "") -> VendorError:
    """The VendorError for an HTTP error status on operation `op` (e.g. 'PUT issue SUP-1')."""
    what = f"{status}: {detail}" if detail else str(status)
    if status == 429:
        wait = retry_after_s(headers, DEFAULT_RETRY_AFTER_S)
        return RateLimited(f"Jira rate limit on {op}; retry after {wait:g}s", retry_after=wait)
    if status == 401:
        return VendorAuthError(f"{CREDENTIALS} rejected by Jira on {op} ({what})", status)
    if status == 403:
        return VendorAuthError(f"{CREDENTIALS} rejected by Jira on {op} ({what}): the bot account lacks a "
                               "permission (Browse projects, Edit issues, Assign issues, Add comments; JSM "
                               "internal comments need an agent licence)", status)
    if status == 409 or status >= 500:
        return VendorUnavailable(f"Jira could not serve {op} ({what})", status)
    return VendorRejected(f"Jira rejected {op} ({what})", status)


def error_from_response(response: requests.Response, op: str) -> VendorError:
    """The VendorError for a failed response; `.fields` lists the field ids Jira's body named."""
    fields = error_fields(response)
    error = error_for(response.status_code, response.headers, op, ", ".join(fields))
    error.fields = fields  # type: ignore[attr-defined]
    return error


@contextmanager
def vendor_errors(op: str) -> Iterator[None]:
    """Translate jira/requests failures inside the block into VendorErrors (no chained cause)."""
    try:
        yield
    except VendorError:
        raise
    except JIRAError as e:
        response = getattr(e, "response", None)
        if response is None or not getattr(e, "status_code", None):
            raise VendorUnavailable(f"Jira failed on {op}") from None
        raise error_from_response(response, op) from None
    except requests.Timeout:
        raise VendorUnavailable(f"Jira timed out on {op}") from None
    except requests.RequestException as e:
        raise VendorUnavailable(f"cannot reach Jira on {op} ({type(e).__name__})") from None
    except (KeyError, ValueError, TypeError) as e:  # the library met an answer it did not expect
        raise VendorUnavailable(f"unexpected Jira answer on {op} ({type(e).__name__})") from None


class JiraApi:
    """The `jira` client (created on first use: construction calls GET serverInfo) plus raw JSON
    calls on its authenticated session for what the library lacks or gets wrong on Cloud: the JSM
    request comment, the assignee PUT by accountId (the library first searches users by the id,
    which Cloud's user search does not match), and v3 comments with ADF bodies."""

    def __init__(self, factory: Callable[[], JIRA]):
        self._factory = factory
        self._client: JIRA | None = None
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, url: str, email: str, token: str, timeout: float = 20.0) -> JiraApi:
        def factory() -> JIRA:
            return JIRA(server=url, basic_auth=(email, token), options={"rest_api_version": REST_VERSION},
                        max_retries=0, timeout=timeout, logging=False)
        return cls(factory)

    @property
    def client(self) -> JIRA:
        with self._lock:
            if self._client is None:
                with vendor_errors("GET serverInfo"):
                    client = self._factory()
                if not getattr(client, "_is_cloud", False):
                    raise VendorRejected("the Jira site is not Jira Cloud (serverInfo deploymentType); "
                                         "only Jira Cloud is supported")
                pin_environment(client._session, client.server_url)
                self._client = client
            return self._client

    @property
    def server_url(self) -> str:
        return self.client.server_url.rstrip("/")

    def call(self, op: str, fn: Callable[[JIRA], Any]) -> Any:
        """Run `fn(client)` with failures mapped to VendorErrors."""
        client = self.client
        with vendor_errors(op):
            return fn(client)

    def request(self, method: str, path: str, *, op: str, params: Mapping[str, Any] | None = None,
                body: Any = None, headers: Mapping[str, str] | None = None) -> Any:
        """A JSON request on the client's session; `path` starts with /rest/. None for 204."""
        client = self.client
        with vendor_errors(op):
            response = client._session.request(  # the library's ResilientSession: auth, timeout
                method, f"{self.server_url}{path}", params=params,
                data=json.dumps(body) if body is not None else None, headers=dict(headers or {}))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise VendorUnavailable(f"Jira sent a non-JSON answer on {op}") from None

    def can_browse(self, email: str, key: str = "") -> bool:
        """Is `email` an active Jira user (an "atlassian" account, not a portal customer) who can browse
        issue `key`? Without a key: any such user of the site. Jira may hide e-mails (privacy): then
        the one user its search matched on the full address is taken as the one."""
        wanted = email.strip().lower()
        if not wanted:
            return False
        if key:
            users = self.request("GET", "/rest/api/3/user/viewissue/search", op=f"GET user/viewissue/search {key}",
                                 params={"query": wanted, "issueKey": key, "maxResults": 50})
        else:
            users = self.request("GET", "/rest/api/3/user/search", op="GET user/search (agent check)",
                                 params={"query": wanted, "maxResults": 50})
        users = [u for u in users or [] if isinstance(u, dict) and u.get("accountType") == "atlassian"
                 and u.get("active", True)]
        shown = [u for u in users if u.get("emailAddress")]
        if shown:
            return any(str(u["emailAddress"]).lower() == wanted for u in shown)
        return len(users) == 1
