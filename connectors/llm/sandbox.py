"""A local OpenAI-compatible chat-completions server for tests, benches and `triage demo`.

Speaks the subset helpdesk-triage uses, with the shapes of OpenAI's API reference (the official
`openai` client parses its answers; tests/test_llm_sandbox.py checks that):

    POST /v1/chat/completions   model, messages, temperature, max_tokens / max_completion_tokens,
                                response_format {type: text | json_object | json_schema}
    GET  /v1/models             the one model it serves

Answers come from `answer(text)` (the last user message's text -> a dict), by default a keyword
guess. Each request may be scripted instead, in order, with `script(...)`:

    with LlmSandbox(api_key="k") as llm:
        llm.script("invalid_json")                 # the next answer is not JSON
        llm.script("rate_limited", retry_after=2)  # 429 with Retry-After: 2
        llm.script("slow", delay_s=3)              # the valid answer, 3 s late
        client = OpenAI(base_url=llm.base_url, api_key="k")

Kinds: valid, invalid_json, wrong_schema, slow, rate_limited, server_error, refusal. `think_s` delays
every chat completion (a remote model's generation time; counted in `max_in_flight`).
`json_schema=False` makes it answer 400 to a json_schema response_format, as endpoints without
structured outputs do. `requests` records each call.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.sandbox_http import JsonHandler, RecordingSandbox

KINDS = ("valid", "invalid_json", "wrong_schema", "slow", "rate_limited", "server_error", "refusal")
Reply = tuple[int, Any]


@dataclass
class Script:
    kind: str
    times: int | None  # None: until cleared
    retry_after: float | None = None
    delay_s: float = 0.0


def _error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> Reply:
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


def guess(text: str) -> dict[str, Any]:
    """The default answer: a keyword guess, enough to tell an LLM decision from the model's in a test."""
    low = text.lower()
    if re.search(r"\b(down|outage|urgent|blocked|bloqu|panne|breach|losing)", low):
        sentiment, urgency = "frustrated", "high"
    elif re.search(r"\b(thank|merci|danke|gracias)", low):
        sentiment, urgency = "satisfied", "low"
    else:
        sentiment, urgency = "neutral", "medium"
    french = re.search(r"\b(le|la|les|est|personne|nous|pas|merci)\b", low)
    return {"sentiment": sentiment, "urgency": urgency, "confidence": 0.9, "language": "fr" if french else "en",
            "reason": f"sandbox keyword guess: {urgency} urgency"}


class _Handler(JsonHandler):
    invalid_json = {"error": {"message": "We could not parse the JSON body of your request.",
                              "type": "invalid_request_error", "param": None, "code": None}}


class LlmSandbox(RecordingSandbox):
    handler = _Handler
    thread_name = "llm-sandbox"

    def __init__(self, api_key: str = "sandbox-key", model: str = "sandbox-model", json_schema: bool = True,
                 answer: Callable[[str], dict[str, Any]] = guess) -> None:
        super().__init__()
        self.api_key = api_key
        self.model = model
        self.json_schema = json_schema
        self.answer = answer
        self._scripts: list[Script] = []
        self.think_s = 0.0  # every chat completion takes this long
        self.calls = 0  # chat completions answered (any status)
        self._in_flight = 0
        self.max_in_flight = 0  # the most requests it was answering at once
        self._count_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.netloc}/v1"

    def script(self, kind: str, times: int | None = 1, *, retry_after: float | None = None,
               delay_s: float = 0.0) -> None:
        """The next `times` chat completions (None: all of them) answer as `kind` (see KINDS)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        with self._lock:
            self._scripts.append(Script(kind, times, retry_after, delay_s))

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()

    def _take(self) -> Script:
        with self._lock:
            if not self._scripts:
                return Script("valid", None)
            s = self._scripts[0]
            if s.times is not None:
                s.times -= 1
                if s.times <= 0:
                    self._scripts.pop(0)
            return s

    # -- HTTP ------------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: Any) -> tuple[Reply, dict]:
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/")
        extra: dict[str, str] = {"x-request-id": f"req_{uuid.uuid4().hex[:16]}"}
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if self.api_key and auth != f"Bearer {self.api_key}":
            reply = _error(401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
        elif method == "GET" and path == "/v1/models":
            reply = 200, {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0,
                                                      "owned_by": "sandbox"}]}
        elif method == "POST" and path == "/v1/chat/completions":
            with self._count_lock:
                self.calls += 1
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                reply, more = self._chat(body)
                extra.update(more)
            finally:
                with self._count_lock:
                    self._in_flight -= 1
        else:
            reply = _error(404, f"Invalid URL ({method} {path})", "invalid_request_error")
        self._record(method, path, parse_qs(parts.query), body, headers, reply[0], reply[1])
        return reply, extra

    def _chat(self, body: Any) -> tuple[Reply, dict[str, str]]:
        problem = self._check(body)
        if problem:
            return problem, {}
        s = self._take()
        if self.think_s or s.delay_s:
            time.sleep(self.think_s + s.delay_s)
        if s.kind == "rate_limited":
            extra = {"retry-after": f"{s.retry_after:g}"} if s.retry_after is not None else {}
            return _error(429, "Rate limit reached for requests", "requests", code="rate_limit_exceeded"), extra
        if s.kind == "server_error":
            return _error(500, "The server had an error while processing your request.", "server_error"), {}
        text = next((m.get("content") or "" for m in reversed(body["messages"]) if m.get("role") == "user"), "")
        if isinstance(text, list):  # content parts
            text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
        content: str | None = json.dumps(self.answer(text))
        refusal = None
        if s.kind == "invalid_json":
            content = '{"sentiment": "neutral", "urgency": '
        elif s.kind == "wrong_schema":
            content = json.dumps({"sentiment": "angry", "urgency": "medium", "confidence": 3})
        elif s.kind == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that request."
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4 + 8
        completion_tokens = len(content or refusal or "") // 4 + 1
        return (200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_sandbox", "service_tier": "default",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": refusal,
                                     "annotations": []}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }), {}

    def _check(self, body: Any) -> Reply | None:
        """OpenAI's 400 answers to the request mistakes a client could make."""
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.", "invalid_request_error")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return _error(400, "you must provide a model parameter", "invalid_request_error", "model")
        if body["model"] != self.model:
            return _error(404, f"The model `{body['model']}` does not exist or you do not have access to it.",
                          "invalid_request_error", "model", "model_not_found")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array", "invalid_request_error", "messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
                return _error(400, f"Invalid value for 'messages[{i}].role'", "invalid_request_error",
                              f"messages[{i}].role")
        t = body.get("temperature", 1)
        if not isinstance(t, (int, float)) or not 0 <= t <= 2:
            return _error(400, "'temperature' must be between 0 and 2", "invalid_request_error", "temperature")
        fmt = body.get("response_format")
        if fmt is None:
            return None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_schema":
            if not self.json_schema:
                return _error(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                              "with this model.", "invalid_request_error", "response_format")
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) \
                    or not isinstance(spec.get("schema"), dict):
                return _error(400, "Missing required parameter: 'response_format.json_schema.name' and "
                              "'.schema'", "invalid_request_error", "response_format.json_schema")
            schema = spec["schema"]
            if spec.get("strict") and (schema.get("additionalProperties") is not False
                                       or set(schema.get("required", ())) != set(schema.get("properties", {}))):
                return _error(400, "Invalid schema for response_format: in strict mode, every property must be "
                              "required and additionalProperties must be false.", "invalid_request_error",
                              "response_format")
        elif kind == "json_object":
            if not any("json" in str(m.get("content") or "").lower() for m in messages):
                return _error(400, "'messages' must contain the word 'json' in some form, to use "
                              "'response_format' of type 'json_object'.", "invalid_request_error", "messages")
        elif kind != "text":
            return _error(400, f"Invalid value for 'response_format.type': {kind!r}", "invalid_request_error",
                          "response_format.type")
        return None
