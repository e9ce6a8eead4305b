"""Slack connector: /triage, the "Triage this message" shortcut, channel watch with alerts, and
agents' corrections (Bolt, over HTTP or Socket Mode); the worker's Slack writer and notifier; a
local Slack Web API sandbox for tests and benchmarks."""
