"""Checking recorded sandbox traffic against a vendor's OpenAPI description (openapi-core)."""

from __future__ import annotations

import json

from openapi_core.testing import MockRequest
from werkzeug.datastructures import ImmutableMultiDict

from connectors.sandbox_http import RecordedRequest


def mock_request(rec: RecordedRequest, host: str) -> MockRequest:
    """The recorded request as openapi-core sees one, sent to the spec's server `host`."""
    args = ImmutableMultiDict([(k, v) for k, values in rec.query.items() for v in values])
    data = json.dumps(rec.json).encode() if rec.json is not None else None
    return MockRequest(host, rec.method.lower(), rec.path, args=args, headers=rec.headers, data=data)


def describe(error: BaseException) -> str:
    """An openapi-core error with its causes and their schema errors, one per line."""
    parts, seen = [f"{type(error).__name__}: {error}"], error
    while seen.__cause__ is not None:
        seen = seen.__cause__
        parts.append(f"{type(seen).__name__}: {seen}")
        parts += [f"  - {e.message} at {list(e.absolute_path)}" for e in getattr(seen, "schema_errors", ())]
    return "\n    ".join(parts)
