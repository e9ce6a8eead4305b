"""The admin console at /admin on `triage serve` (docs/observability.md): Overview, Feed, Rules,
Feedback, Dead letters. Server-rendered (Jinja2), readable without JavaScript; the vendored htmx
only saves page loads. On when TRIAGE_ADMIN_TOKEN is set."""

from worker.admin.app import admin_router

__all__ = ["admin_router"]
