"""HTTP plumbing shared by the writer and the poller: error mapping and a small JSON GET client.

Every failure leaves here as a worker.errors.VendorError whose message names the operation and
the status, never a response body (bodies can echo ticket text) nor a credential.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from requests.utils import requote_uri
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, ZenpyException

from connectors.http import DEFAULT_RETRY_AFTER_S, pin_environment, retry_after_s
from worker.errors import (
    RateLimited,
    VendorAuthError,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)

CREDENTIALS = "ZENDESK_EMAIL / ZENDESK_API_TOKEN"


def _error_code(response: requests.Response) -> str:
    """Zendesk's short error identifier (RecordNotFound, RecordInvalid, ...), if it is one."""
    try:
        code = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return code if isinstance(code, str) and re.fullmatch(r"[A-Za-z_]{1,40}", code) else ""


def error_for(status: int, headers: Mapping[str, str], op: str, code: str = "") -> VendorError:
    """The VendorError for an HTTP error status on operation `op` (e.g. 'PUT ticket 42')."""
    detail = f"{status} {code}".strip()
    if status == 429:
        wait = retry_after_s(headers)
        return RateLimited(f"Zendesk rate limit on {op}; retry after {wait:g}s", retry_after=wait)
    if status == 401:
        return VendorAuthError(f"{CREDENTIALS} rejected by Zendesk on {op} ({detail})", status)
    if status == 403:
        return VendorAuthError(
            f"{CREDENTIALS} rejected by Zendesk on {op} ({detail}): the user lacks permission "
            "(the incremental export needs an admin)", status)
    if status == 409 or status >= 500:
        return VendorUnavailable(f"Zendesk could not serve {op} ({detail})", status)
    return VendorRejected(f"Zendesk rejected {op} ({detail})", status)


def error_from_response(response: requests.Response, op: str) -> VendorError:
    return error_for(response.status_code, response.headers, op, _error_code(response))


@contextmanager
def vendor_errors(op: str) -> Iterator[None]:
    """Translate zenpy/requests failures inside the block into VendorErrors (no chained cause)."""
    try:
        yield
    except VendorError:
        raise
    except (APIException, requests.HTTPError) as e:
        response = getattr(e, "response", None)
        if response is None:
            raise VendorUnavailable(f"Zendesk failed on {op}") from None
        raise error_from_response(response, op) from None
    except requests.Timeout:
        raise VendorUnavailable(f"Zendesk timed out on {op}") from None
    except requests.RequestException as e:
        raise VendorUnavailable(f"cannot reach Zendesk on {op} ({type(e).__name__})") from None
    except RatelimitBudgetExceeded:
        raise RateLimited(f"Zendesk rate limit on {op}", retry_after=DEFAULT_RETRY_AFTER_S) from None
    except ZenpyException:
        raise VendorUnavailable(f"unexpected Zendesk response on {op}") from None


def _raise_on_429(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    if response.status_code == 429:
        raise error_from_response(response, f"{response.request.method} {_api_path(response.url)}")
    return response


def _api_path(url: str | None) -> str:
    path = (url or "").split("?", 1)[0]
    return path[path.find("/api/v2/") + len("/api/v2/"):] if "/api/v2/" in path else path


def install_rate_limit_hook(session: requests.Session) -> None:
    """Raise RateLimited on 429 before zenpy sees it: zenpy would otherwise sleep Retry-After
    seconds inside the call; we hand the wait back to the worker's retry logic instead."""
    hooks = session.hooks.setdefault("response", [])
    if _raise_on_429 not in hooks:
        hooks.append(_raise_on_429)


class ZendeskHttp:
    """Authenticated JSON calls to /api/v2 where zenpy costs more than it gives: GETs whose pages or
    sideloads it hides, and the write-back's PUT (see connectors.zendesk.writeback)."""

    def __init__(self, session: requests.Session, base_url: str | Callable[[], str],
                 timeout: float = 30.0):
        self.session = session
        self._base_url = base_url
        self.timeout = timeout
        install_rate_limit_hook(session)
        self._template: requests.PreparedRequest | None = None  # see _prepared
        self._template_for: tuple[str, Any] = ("", None)  # the base URL and auth it was prepared with

    @classmethod
    def from_zenpy(cls, client: Any) -> ZendeskHttp:
        """Share a zenpy client's session, credentials, timeout and host: the base URL is the one
        zenpy builds its own requests on (zenpy honours its ZENPY_FORCE_* overrides; we read none)."""
        api = client.tickets
        url = api._build_url(api.endpoint())
        base_url = url[: url.index("/api/v2/")]
        pin_environment(api.session, base_url)
        return cls(api.session, base_url, timeout=api.timeout)

    @classmethod
    def with_token(cls, subdomain: str, email: str, token: str, timeout: float = 30.0) -> ZendeskHttp:
        session = requests.Session()
        session.auth = (f"{email}/token", token)
        pin_environment(session, f"https://{subdomain}.zendesk.com")
        return cls(session, f"https://{subdomain}.zendesk.com", timeout)

    @property
    def base_url(self) -> str:
        url = self._base_url() if callable(self._base_url) else self._base_url
        return url.rstrip("/")

    def get(self, path: str, params: Mapping[str, str | int] | None = None, *, op: str) -> dict[str, Any]:
        """GET /api/v2/{path} and return its JSON object; failures raise VendorErrors."""
        with vendor_errors(op):
            response = self.session.get(f"{self.base_url}/api/v2/{path}", params=params,
                                        timeout=self.timeout)
        if not response.ok:
            raise error_from_response(response, op)
        try:
            data = response.json()
        except ValueError:
            raise VendorUnavailable(f"Zendesk sent a non-JSON answer on {op}") from None
        if not isinstance(data, dict):
            raise VendorUnavailable(f"Zendesk sent an unexpected answer on {op}")
        return data

    def put(self, path: str, body: Mapping[str, Any], *, op: str) -> None:
        """PUT a JSON body to /api/v2/{path}; the answer is checked, not read. Failures raise
        VendorErrors."""
        request = self._prepared("PUT", path, body)
        with vendor_errors(op):
            response = self.session.send(request, timeout=self.timeout)
        if not response.ok:
            raise error_from_response(response, op)

    def _prepared(self, method: str, path: str, body: Mapping[str, Any]) -> requests.PreparedRequest:
        """The request `session.put(url, json=body)` would prepare, made from one the session prepared
        before: requests merges the session's headers, auth, cookies and hooks anew on every call, a
        large share of a write-back's CPU (docs/performance.md, "Hot path devices"). Prepared again
        when the base URL or the session's auth changes; the session's current cookies go with each."""
        base, auth = self.base_url, self.session.auth
        if self._template is None or self._template_for[0] != base or self._template_for[1] is not auth:
            self._template = self.session.prepare_request(requests.Request(method, f"{base}/api/v2/", json={}))
            self._template_for = (base, auth)
        t = self._template
        p = requests.PreparedRequest()
        p.method, p.url, p.hooks = method, f"{t.url}{requote_uri(path)}", t.hooks
        p.headers = t.headers.copy()
        p.headers.pop("Cookie", None)
        p.body = json.dumps(body, allow_nan=False).encode()
        p.headers["Content-Length"] = str(len(p.body))
        p.prepare_cookies(self.session.cookies)
        return p


AGENT_ROLES = ("agent", "admin")


def is_agent(http: ZendeskHttp, email: str, every_ticket: bool = False) -> bool:
    """Is `email` an active, unsuspended Zendesk agent or admin? (GET users/search, query email:...)
    `every_ticket`: and one whose role lets them see every ticket (no ticket_restriction: not only
    their groups', organization's or assigned tickets), since the bot reads tickets as itself."""
    wanted = email.strip().lower()
    if not wanted:
        return False
    data = http.get("users/search.json", {"query": f"email:{wanted}"}, op="GET users/search (agent check)")
    return any(isinstance(u, dict) and str(u.get("email") or "").lower() == wanted and u.get("role") in AGENT_ROLES
               and u.get("active", True) and not u.get("suspended", False)
               and not (every_ticket and u.get("ticket_restriction")) for u in data.get("users") or [])
