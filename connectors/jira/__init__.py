"""Jira Service Management connector: signed webhooks and Automation bodies in, JQL poller, write-back
(labels, priority, assignee, request type / fields, internal comment) through the `jira` library."""
