"""Zendesk connector: webhook signature + normalisation, write-back, incremental poller, sandbox."""
