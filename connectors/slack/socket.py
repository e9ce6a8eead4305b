"""Socket Mode: the same Bolt app over a WebSocket Slack opens to us (no public URL needed)."""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger("triage.slack")


def socket_mode_handler(app: App, app_token: str) -> SocketModeHandler:
    """The handler for `app`: connect() to start in the background, start() to block."""
    return SocketModeHandler(app, app_token, web_client=app.client)


def run_socket_mode(app: App, app_token: str) -> None:
    """Connect with the app-level token (xapp-, scope connections:write) and serve until stopped."""
    handler = socket_mode_handler(app, app_token)
    log.info("slack socket mode: connecting")
    try:
        handler.start()
    finally:
        handler.close()
