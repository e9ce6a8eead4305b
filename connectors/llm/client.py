"""The chat-completions adapter: one question to any OpenAI-compatible endpoint, with the official client.

    llm = OpenAICompatible("http://127.0.0.1:8000/v1", "key", "qwen2.5-1.5b-instruct")
    reply = llm.ask(system, user, schema, timeout=10)     # raises LlmFailure(reason)

It asks for `response_format` json_schema with strict=True. An endpoint that answers 400 to that
(no structured outputs) is asked in JSON mode from then on; one that rejects `max_tokens` (OpenAI's
reasoning models) gets `max_completion_tokens`; one that rejects temperature 0 gets its default. Each
adaptation is made once per process and logged. The client never retries on its own (max_retries=0):
the caller decides, within its deadline, what a 429's Retry-After allows.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import openai

log = logging.getLogger("triage.llm")
FAILURES = ("timeout", "unreachable", "rate_limited", "server_error", "auth", "rejected", "refusal", "truncated",
            "empty")


class LlmFailure(Exception):
    """The endpoint gave no usable answer. `reason` is one of FAILURES; never carries the ticket text."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None,
                 prompt_tokens: int = 0, completion_tokens: int = 0):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.retry_after = retry_after
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


@dataclass(frozen=True)
class LlmReply:
    content: str
    prompt_tokens: int
    completion_tokens: int
    json_mode: str  # json_schema | json_object: how it was asked


class OpenAICompatible:
    def __init__(self, base_url: str, api_key: str, model: str, response_format: str = "json_schema",
                 max_tokens: int = 200):
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=0)
        self.model = model
        self.mode = response_format  # json_schema | json_object
        self.max_tokens = max_tokens
        self._tokens_param = "max_tokens"
        self._temperature: float | None = 0.0
        self._lock = threading.Lock()

    def ask(self, system: str, user: str, schema: dict[str, Any], timeout: float) -> LlmReply:
        for _ in range(4):  # at most one adaptation of each kind, then the answer or a failure
            mode, request = self._request(system, user, schema)
            try:
                completion = self.client.chat.completions.create(**request, timeout=timeout)
            except openai.BadRequestError as e:
                if self._adapt(e):
                    continue
                raise LlmFailure("rejected", _detail(e)) from None
            except openai.APITimeoutError:
                raise LlmFailure("timeout", f"no answer within {timeout:.1f}s") from None
            except openai.APIConnectionError as e:
                raise LlmFailure("unreachable", type(e.__cause__ or e).__name__) from None
            except openai.RateLimitError as e:
                raise LlmFailure("rate_limited", _detail(e), retry_after=_retry_after(e.response)) from None
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise LlmFailure("auth", _detail(e)) from None
            except openai.APIStatusError as e:
                if e.status_code >= 500:
                    raise LlmFailure("server_error", f"HTTP {e.status_code}",
                                     retry_after=_retry_after(e.response)) from None
                raise LlmFailure("rejected", _detail(e)) from None
            return _reply(completion, mode)
        raise LlmFailure("rejected", "the endpoint refused every request shape tried")

    def _request(self, system: str, user: str, schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        with self._lock:
            mode, tokens_param, temperature = self.mode, self._tokens_param, self._temperature
        fmt: dict[str, Any] = {"type": "json_object"}
        if mode == "json_schema":
            fmt = {"type": "json_schema", "json_schema": {"name": "ticket_triage", "strict": True, "schema": schema}}
        request: dict[str, Any] = {"model": self.model, "response_format": fmt, tokens_param: self.max_tokens,
                                   "messages": [{"role": "system", "content": system},
                                                {"role": "user", "content": user}]}
        if temperature is not None:
            request["temperature"] = temperature
        return mode, request

    def _adapt(self, e: openai.BadRequestError) -> bool:
        """Change the request shape the endpoint rejected; False when there is nothing left to change."""
        param = str(_body(e).get("param") or "")
        text = f"{param} {_detail(e)}".lower()
        with self._lock:
            if self.mode == "json_schema" and ("response_format" in text or "json_schema" in text):
                self.mode = "json_object"
                log.warning("the LLM endpoint does not take response_format json_schema: asking in JSON mode "
                            "and validating the answer (set TRIAGE_LLM_RESPONSE_FORMAT=json_object to skip this)")
                return True
            if self._tokens_param == "max_tokens" and "max_tokens" in text:
                self._tokens_param = "max_completion_tokens"
                log.warning("the LLM endpoint does not take max_tokens: sending max_completion_tokens")
                return True
            if self._temperature is not None and "temperature" in text:
                self._temperature = None
                log.warning("the LLM endpoint does not take temperature 0: using its default")
                return True
        return False


def _reply(completion: Any, mode: str) -> LlmReply:
    usage = getattr(completion, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    done = int(getattr(usage, "completion_tokens", 0) or 0)
    if not completion.choices:
        raise LlmFailure("empty", "no choices", prompt_tokens=prompt, completion_tokens=done)
    choice = completion.choices[0]
    message = choice.message
    if getattr(message, "refusal", None) or choice.finish_reason == "content_filter":
        raise LlmFailure("refusal", "the model declined", prompt_tokens=prompt, completion_tokens=done)
    if choice.finish_reason == "length":
        raise LlmFailure("truncated", "the answer hit the token limit", prompt_tokens=prompt, completion_tokens=done)
    if not message.content:
        raise LlmFailure("empty", "no content", prompt_tokens=prompt, completion_tokens=done)
    return LlmReply(message.content, prompt, done, mode)


def _body(e: openai.APIStatusError) -> dict[str, Any]:
    body = e.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return body if isinstance(body, dict) else {}


def _detail(e: openai.APIStatusError) -> str:
    message = str(_body(e).get("message") or "")[:200]
    return f"HTTP {e.status_code}" + (f": {message}" if message else "")


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(float(raw) / divisor, 0.0)
        except ValueError:
            continue  # an HTTP date: treated as no hint
    return None
