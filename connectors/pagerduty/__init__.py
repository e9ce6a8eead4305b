"""PagerDuty Events API v2: trigger and resolve alerts by dedup key (client.py), and a local sandbox
that speaks the same API for tests (sandbox.py)."""
