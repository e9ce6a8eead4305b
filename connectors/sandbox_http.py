"""Plumbing the local vendor sandboxes share: the local server, recorded requests, injected faults."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalServer:
    """Serves `handler` on 127.0.0.1 from a daemon thread; the handler finds us as server.sandbox."""

    handler: type[BaseHTTPRequestHandler]
    thread_name = "sandbox"
    _server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> Self:
        """Serve on 127.0.0.1 (port 0: any free port)."""
        server = ThreadingHTTPServer(("127.0.0.1", port), self.handler)
        server.daemon_threads = True
        server.sandbox = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=self.thread_name, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def netloc(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return f"127.0.0.1:{self._server.server_address[1]}"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    json: Any  # parsed request body, None when empty
    headers: dict[str, str]  # the Authorization value is redacted, its scheme kept
    status: int
    response: Any  # parsed response body


@dataclass
class Fault:
    status: int
    times: int | None  # None: until cleared
    retry_after: float | None
    method: str | None
    path: str | None  # regular expression searched in the path


def take_fault(faults: list[Fault], method: str, path: str) -> Fault | None:
    """The first fault matching the request, counted down (removed when used up). Caller locks."""
    for fault in faults:
        if (fault.method in (None, method)) and (fault.path is None or re.search(fault.path, path)):
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    faults.remove(fault)
            return fault
    return None


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with the Authorization credential replaced by <redacted> (its scheme kept)."""
    return {k: (f"{v.split(' ', 1)[0]} <redacted>" if k.lower() == "authorization" else v)
            for k, v in headers.items()}
