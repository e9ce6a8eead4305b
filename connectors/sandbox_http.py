"""Plumbing the local vendor sandboxes share: the local server, recorded requests, injected faults."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self, TypeVar


class JsonHandler(BaseHTTPRequestHandler):
    """Decodes a JSON body, passes the request to server.sandbox.handle(method, path, headers, body)
    and writes its (status, payload) and extra headers back. A sandbox's subclass names the vendor's
    answer to a body that is not JSON and the headers every response carries."""

    invalid_json: Any = {"error": "InvalidJSON"}
    fixed_headers: dict[str, str] = {}
    content_type = "application/json; charset=utf-8"
    protocol_version = "HTTP/1.1"  # keep-alive, as the vendors' APIs do: every answer has a Content-Length
    disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK stall between them

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(400, self.invalid_json, {})
            return
        sandbox = self.server.sandbox  # type: ignore[attr-defined]
        if sandbox.latency_s:  # a far-away vendor: each answer takes this long (this thread only)
            time.sleep(sandbox.latency_s)
        handle = sandbox.handle
        (status, payload), extra = handle(self.command, self.path, dict(self.headers.items()), body)
        self._send(status, payload, extra)

    def _send(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
        data = b"" if status == 204 or payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**self.fixed_headers, **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo print their own
        pass


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


class _Counted(Protocol):
    times: int | None  # None: until cleared


F = TypeVar("F", bound=_Counted)


def take_fault(faults: list[F], matches: Callable[[F], bool]) -> F | None:
    """The first fault that matches, counted down (removed when used up). The caller holds the lock."""
    for fault in faults:
        if matches(fault):
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


class RecordingSandbox(LocalServer):
    """A LocalServer that records every request it answers and can be told to fail the next ones.
    Subclasses call _take_fault() before serving a request and _record() after."""

    latency_s = 0.0  # added to every answer (JsonHandler): a vendor across the internet, not on this machine

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_next(self, status: int, times: int | None = 1, retry_after: float | None = None, *,
                  method: str | None = None, path: str | None = None) -> None:
        """Answer the next `times` matching requests (None: all of them) with `status`."""
        with self._lock:
            self._faults.append(Fault(status, times, retry_after, method and method.upper(), path))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            return take_fault(self._faults, lambda f: f.method in (None, method)
                              and (f.path is None or re.search(f.path, path) is not None))

    def _record(self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: Mapping[str, str],
                status: int, payload: Any) -> None:
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, body, redact(headers), status,
                                                  copy.deepcopy(payload)))
