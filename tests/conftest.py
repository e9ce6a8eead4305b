"""Shared fixtures: a private redis-server for the test session (flushed per test)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_support import EMAIL, TOKEN
from redis import Redis

from connectors.jira.sandbox import JiraSandbox
from connectors.zendesk.sandbox import ZendeskSandbox
from worker.local_redis import LocalRedis

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """Our own server, so a test may stop and restart it without touching anything else."""
    server = LocalRedis().start()
    yield server
    server.close()


@pytest.fixture
def zd(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskSandbox]:
    """A sandbox Zendesk; zenpy in this process points at it. A test file that needs more (groups,
    agents) overrides this fixture with one that takes it."""
    with ZendeskSandbox(email=EMAIL, token=TOKEN) as sandbox:
        for k, v in sandbox.env.items():
            monkeypatch.setenv(k, v)
        yield sandbox


@pytest.fixture
def jira() -> Iterator[JiraSandbox]:
    """A sandbox Jira with an agent and a JSM request type; files that need other users or issues
    override it, as with `zd`."""
    with JiraSandbox() as sandbox:
        sandbox.add_user("Tom Becker", "tom@example.com")
        sandbox.add_request_type("SUP", "Report a system problem")
        yield sandbox


@pytest.fixture
def redis(redis_server: LocalRedis) -> Iterator[Redis]:
    if redis_server.proc is None:  # a test stopped it
        redis_server.start()
    client = Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


# The vendor spec tests skip when ../shared/specs is absent (a clone on its own). CI sets
# TRIAGE_REQUIRE_SPECS=1 when the specs are there: then such a skip fails the run instead of hiding.
_SPEC_SKIPS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "shared/specs" in str(report.longrepr):
        _SPEC_SKIPS.append(report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _SPEC_SKIPS:
        terminalreporter.write_line(f"vendor spec tests skipped ({len(_SPEC_SKIPS)}): ../shared/specs not found",
                                    yellow=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SPEC_SKIPS and os.environ.get("TRIAGE_REQUIRE_SPECS") == "1":
        print(f"\nFAILED: TRIAGE_REQUIRE_SPECS=1 but {len(_SPEC_SKIPS)} spec tests skipped: {_SPEC_SKIPS[:3]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
