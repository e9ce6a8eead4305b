"""The `triage` command as an admin meets it: one clear line for every mistake, samples that work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.cli import connector_status, main
from worker.local_redis import free_port
from worker.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
RULES = str(REPO / "deploy" / "rules.example.yaml")


@pytest.fixture
def no_redis(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", url)
    return url


def _one_clear_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv", [["dlq", "list"], ["dlq", "requeue", "--all"], ["feedback", "stats"],
                                  ["feedback", "export", "--out", "-"]])
def test_redis_down_is_one_line_and_exit_1(argv: list[str], no_redis: str, capsys) -> None:
    assert main(argv) == 1
    err = _one_clear_line(capsys)
    assert "Redis" in err and "hunter2" not in err


def test_worker_and_poller_with_redis_down(no_redis: str, monkeypatch, capsys) -> None:
    for name, value in {"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_EMAIL": "bot@acme.test", "ZENDESK_API_TOKEN": "t",
                        "ZENDESK_WEBHOOK_SECRET": "s", "ZENDESK_BOT_USER_ID": "7"}.items():
        monkeypatch.setenv(name, value)
    assert main(["poll", "zendesk", "--once"]) == 1
    assert "start redis-server or point REDIS_URL" in _one_clear_line(capsys)


@pytest.mark.parametrize("sample", ["deploy/samples/zendesk.jsonl", "deploy/samples/jira.jsonl",
                                    "deploy/samples/slack.jsonl", "connectors/zendesk/sample_tickets.json"])
def test_rules_test_accepts_every_shipped_sample(sample: str, capsys) -> None:
    assert main(["rules", "test", RULES, "--tickets", str(REPO / sample)]) == 0
    out = capsys.readouterr().out
    assert out.count("ticket ") >= 3 and "actions:" in out


def test_jira_sample_fields_reach_jira_conditions(tmp_path: Path, capsys) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: lyon\n    when:\n      project: [SUP]\n"
                     "      issue_type: [Incident]\n    then:\n      add_tags: [sup_incident]\n")
    assert main(["rules", "test", str(rules), "--tickets", str(REPO / "deploy/samples/jira.jsonl")]) == 0
    out = capsys.readouterr().out
    assert out.count("rules: lyon") == 1  # SUP-1 only: SUP-2 is a service request, IT-7 another project


@pytest.mark.parametrize(("line", "expected"), [
    ('{"subject": "x", "extra": {"project": "SUP"}}', "unknown field(s) extra; valid fields: source, id"),
    ("{'subject': 'single quotes'}", ":1: not a JSON object"),
    ('{"source": "freshdesk", "text": "hi"}', "source 'freshdesk' is not one of"),
    ('{"tags": "vip", "text": "hi"}', "tags must be a list of strings"),
    ('{"source": "slack", "project": "SUP", "text": "hi"}', "are Jira fields"),
    ('{"priority": "high"}', "no text"),
])
def test_rules_test_errors_name_the_line_and_the_fix(line: str, expected: str, tmp_path: Path, capsys) -> None:
    tickets = tmp_path / "t.jsonl"
    tickets.write_text(line + "\n")
    assert main(["rules", "test", RULES, "--tickets", str(tickets)]) == 1
    assert expected in _one_clear_line(capsys)


def test_missing_files_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["rules", "test", RULES, "--tickets", str(tmp_path / "none.jsonl")]) == 1
    assert "no such file" in _one_clear_line(capsys)
    assert main(["rules", "check", str(tmp_path / "none.yaml")]) == 1
    _one_clear_line(capsys)


@pytest.fixture
def tickets_csv(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    path.write_text('id,subject,body\nA-1,Outage,"Checkout down, losing sales"\n'
                    'A-2,Question,"How do I export? Thanks"\n')
    return path


def test_score_file_carries_the_id(tickets_csv: Path, capsys) -> None:
    assert main(["score", "--file", str(tickets_csv)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["A-1", "A-2"]
    assert all(r["top_words"]["urgency"] for r in rows)


def test_score_file_wrong_columns_are_errors(tickets_csv: Path) -> None:
    with pytest.raises(SystemExit, match="no column 'message'.*--text-col"):
        main(["score", "--file", str(tickets_csv), "--text-col", "message"])
    with pytest.raises(SystemExit, match="no column 'ref'.*--id-col"):
        main(["score", "--file", str(tickets_csv), "--id-col", "ref"])


def test_score_table_is_one_line_a_text(tickets_csv: Path, capsys) -> None:
    assert main(["score", "--file", str(tickets_csv), "--format", "table"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["id", "sentiment", "urgency"]
    assert len(lines) == 2 and lines[0].startswith("A-1")


def test_eval_heldout_without_data_says_where_it_comes_from(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--data-root DIR or set TRIAGE_DATA_ROOT"):
        main(["model", "eval", "--heldout", "--data-root", str(tmp_path / "nowhere")])


def test_serve_says_which_connectors_are_on() -> None:
    lines = connector_status(load_settings({"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_EMAIL": "b@acme.test",
                                            "ZENDESK_API_TOKEN": "t", "ZENDESK_WEBHOOK_SECRET": "s"}, dotenv=None))
    assert lines[0] == "zendesk: on, acme.zendesk.com; webhooks at POST /webhooks/zendesk"
    assert lines[1].startswith("jira: off (set JIRA_URL") and lines[2].startswith("slack: off")
    assert lines[3] == "scoring API: off (set TRIAGE_API_KEYS)"


def test_llm_labels_export(redis, redis_server, monkeypatch, tmp_path: Path, capsys) -> None:
    from worker.escalation import LABELS_KEY

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    redis.rpush(LABELS_KEY, json.dumps({"text": "VPN down", "sentiment": "negative", "urgency": "high",
                                        "weight": 0.5, "provenance": "llm"}))
    out = tmp_path / "llm.csv"
    assert main(["llm", "labels", "--out", str(out)]) == 0
    assert out.read_text().splitlines()[1].startswith("VPN down,negative,high,0.5,llm")
    assert "1 LLM labels" in capsys.readouterr().err


def test_demo_with_the_llm_sandbox_shows_escalated_tickets(monkeypatch, capsys) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["demo", "--llm"]) == 0
    out = capsys.readouterr().out
    assert "decided by the LLM second opinion (sandbox-model; asked because the model cannot read" in out
    assert "15 tickets triaged and written back" in out and "The LLM was asked" in out


def test_dlq_list_and_requeue_name_entries_and_tickets(redis, redis_server, monkeypatch, capsys) -> None:
    from rq import Queue
    from rq.registry import FailedJobRegistry
    from rq.serializers import JSONSerializer

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    queue = Queue("triage", connection=redis, serializer=JSONSerializer)
    job = queue.enqueue("worker.jobs.triage_job", "{}", description="zendesk 4201")
    queue.remove(job)
    FailedJobRegistry(queue=queue).add(job, ttl=3600, exc_string="VendorError: HTTP 503 five times")
    assert main(["dlq", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{job.id}" in out and "1 ticket(s): zendesk 4201" in out
    assert "1 entry (1 ticket(s)) in the dead-letter queue" in out
    assert main(["dlq", "requeue", job.id]) == 0
    assert "requeued 1 entry" in capsys.readouterr().out and queue.count == 1
    assert main(["dlq", "requeue", "nope"]) == 1
    assert "no job 'nope'" in _one_clear_line(capsys)


def test_the_example_rules_route_a_german_sample(capsys) -> None:
    assert main(["rules", "test", RULES, "--tickets", str(REPO / "deploy/samples/zendesk.jsonl")]) == 0
    german = capsys.readouterr().out.split("ticket 106:")[1]
    assert "german-and-french" in german and "triage_language_de" in german and "unsure" in german


def test_slack_check_names_a_missing_scope_and_what_it_is_for(redis_server, monkeypatch, capsys) -> None:
    from slack_support import sandbox

    sb = sandbox()
    try:
        monkeypatch.setenv("REDIS_URL", redis_server.url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", sb.token)
        monkeypatch.setenv("SLACK_API_URL", sb.api_url)
        assert main(["slack", "--check"]) == 0
        assert "scopes: all 9 the manifest asks for" in capsys.readouterr().out
        sb.scopes.discard("users:read.email")
        assert main(["slack", "--check"]) == 1
        err = capsys.readouterr().err
        assert "missing scope users:read.email (ticket lookups and Apply check" in err and "reinstall" in err
    finally:
        sb.stop()
