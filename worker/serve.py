"""`triage serve`: the HTTP ingress in one process, or in N processes sharing the port.

With N processes each one listens on its own socket bound to the same port (SO_REUSEPORT), so the
kernel spreads new connections across them. A shared listening socket (uvicorn's --workers)
lets the first process to wake accept every connection that arrives at once, and a webhook sender
keeps its connections open: one process could end up serving them all while the others idle.
If a process dies, the others are stopped and `triage serve` exits non-zero, so that whatever
runs it (compose, Kubernetes, systemd) restarts the whole service.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from multiprocessing.connection import wait
from typing import Any, cast

from worker.errors import TriageError

log = logging.getLogger("triage.serve")


BACKLOG = 2048  # connections the kernel queues for a process before it accepts them
MAX_HEAD_BYTES = 64 * 1024  # request line + headers; past it: 431 and the connection closed


def bounded_protocol(max_head_bytes: int = MAX_HEAD_BYTES) -> type:
    """uvicorn's httptools protocol with a bound on a request's head. The parser buffers a header
    until it ends, so a 32 MB header costs 32 MB (and more) before any app sees it: this protocol
    counts the bytes received while a head is incomplete and answers 431 past `max_head_bytes`."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _in_head = False  # a request's head has begun and is not complete

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head, self._head_bytes = True, 0

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            continuing = self._in_head
            super().data_received(data)
            # counted: chunks that were all head (the one a head starts in may end a previous request;
            # not counting it lets a head grow by at most one read past the limit)
            if continuing and self._in_head and not self.transport.is_closing():
                self._head_bytes += len(data)
                if self._head_bytes > max_head_bytes:
                    self.logger.warning("request head over %d bytes: 431, connection closed", max_head_bytes)
                    msg = f"request line and headers over {max_head_bytes} bytes"
                    self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                         b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                                         + f"content-length: {len(msg)}\r\n\r\n{msg}".encode())
                    self.transport.close()

    return BoundedHttpToolsProtocol


def uvicorn_config(app: Any, host: str, port: int, **options: Any) -> Any:
    """The uvicorn configuration of an ingress process: heads bounded (httptools, else h11's own limit)."""
    import uvicorn

    try:
        protocol: Any = bounded_protocol()
    except ImportError:  # no httptools: h11, whose incomplete-event limit bounds the head the same way
        protocol = "h11"
    return uvicorn.Config(app, host=host, port=port, backlog=BACKLOG, http=protocol,
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES, **options)


def listening_socket(host: str, port: int, shared: bool) -> socket.socket:
    """A socket bound to host:port; `shared`: other processes may bind it too, and the kernel gives
    each a share of the new connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise TriageError(f"cannot listen on {host}:{port}: {e.strerror}; is another program using that "
                          "port? Choose another with --port") from None
    return sock


def serve(app: Any, host: str, port: int, options: dict[str, Any], shared: bool = False) -> None:
    """Serve `app` in this process. It listens before saying it is ready: from then on a connection
    waits in the kernel's queue until the server accepts it, and is never refused."""
    import uvicorn

    from worker.bootstrap import freeze_startup_objects

    freeze_startup_objects()
    sock = listening_socket(host, port, shared)
    sock.listen(BACKLOG)
    log.info("ingress process %d listening on %s:%d", os.getpid(), host, port)
    uvicorn.Server(uvicorn_config(app, host, port, **options)).run(sockets=[sock])


def _serve_one(host: str, port: int, options: dict[str, Any]) -> None:
    """One of N ingress processes: its own app (settings, model, Redis connection) and socket."""
    from worker.bootstrap import serve_app

    serve(serve_app(), host, port, options, shared=True)


def serve_processes(n: int, host: str, port: int, options: dict[str, Any]) -> int:
    """Run n ingress processes until SIGTERM/SIGINT (then stop them, 0) or until one dies (1)."""
    listening_socket(host, port, shared=True).close()  # the port is free (or shared alike): fail here if not
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each: no state forked from this one
    procs = [ctx.Process(target=_serve_one, args=(host, port, options), name=f"triage-serve-{k + 1}")
             for k in range(n)]
    stopping = failed = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()  # uvicorn shuts down gracefully on SIGTERM

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for p in procs:
            p.start()
        running = {p.sentinel: p for p in procs}
        while running:
            # a sentinel is readable once its process is exiting (it may not be reapable yet: join)
            for sentinel in wait(list(running)):
                p = running.pop(cast(int, sentinel))
                p.join()
                if not stopping:
                    failed = True
                    log.error("ingress process %d exited with status %s: stopping the others", p.pid, p.exitcode)
                    stop(signal.SIGTERM, None)
        # uvicorn ends a process by the signal that stopped it (after a graceful shutdown)
        clean = (0, -signal.SIGTERM, -signal.SIGINT)
        return 1 if failed or any(p.exitcode not in clean for p in procs) else 0
    finally:
        for p in procs:
            p.join(timeout=20)
            if p.is_alive():
                p.kill()
        for s, handler in previous.items():
            signal.signal(s, handler)
