"""The built-in rule behind SLACK_ALERT_CHANNEL, appended after the admin's routing rules."""

from __future__ import annotations

import json

from worker.rules import RuleSet, parse_rules

ALERT_RULE = "slack-alert"


def alert_rules(alert_channel: str) -> RuleSet:
    """Messages from watched channels that are frustrated with high urgency alert `alert_channel`.
    It runs after the admin's rules (a matching `stop: true` rule before it suppresses it)."""
    if not alert_channel:
        return RuleSet(default_tags=False)
    text = (f"rules:\n  - name: {ALERT_RULE}\n    when: {{source: slack, sentiment: frustrated, urgency: high}}\n"
            f"    then: {{notify_slack: {json.dumps(alert_channel)}}}\n")
    return parse_rules(text, "SLACK_ALERT_CHANNEL")
