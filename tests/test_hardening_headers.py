"""Issue 20 §2: a request head (line + headers) is bounded by the ingress's HTTP protocol: 431."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from worker.local_redis import free_port
from worker.serve import MAX_HEAD_BYTES, uvicorn_config


@pytest.fixture
def server() -> Iterator[int]:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/echo-size")
    async def echo_size(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    port = free_port()
    srv = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.02)
    yield port
    srv.should_exit = True


def send(port: int, head: bytes) -> bytes:
    """Send `head` in 64 KiB writes (as a client streams it); the first answer that comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with suppress(BrokenPipeError, ConnectionResetError):  # the server answered and closed first
            for i in range(0, len(head), 65536):
                sock.sendall(head[i:i + 65536])
                time.sleep(0.001)
        return sock.recv(65536)


def test_a_huge_header_gets_431(server: int) -> None:
    reply = send(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(20_000))  # many small ones add up alike
    assert send(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431 ")
    long_url = b"GET /healthz?" + b"q" * (2 * 1024 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert send(server, long_url).startswith(b"HTTP/1.1 431 ")


def test_ordinary_requests_big_bodies_and_keep_alive_are_served(server: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server}") as http:
        for _ in range(20):  # one connection: each request's head is counted on its own
            r = http.get("/healthz", headers={"X-Fine": "c" * 8000})
            assert r.status_code == 200
            r = http.post("/echo-size", content=b"z" * (MAX_HEAD_BYTES * 12))  # bodies are not heads
            assert r.status_code == 200 and r.json() == {"bytes": MAX_HEAD_BYTES * 12}
