"""Shared fixtures: a private redis-server for the test session (flushed per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from worker.local_redis import LocalRedis

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """Our own server, so a test may stop and restart it without touching anything else."""
    server = LocalRedis().start()
    yield server
    server.close()


@pytest.fixture
def redis(redis_server: LocalRedis) -> Iterator[Redis]:
    if redis_server.proc is None:  # a test stopped it
        redis_server.start()
    client = Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()
