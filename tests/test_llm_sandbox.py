"""The LLM sandbox speaks the chat-completions API as the official `openai` client expects it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest

from connectors.llm.client import LlmFailure, OpenAICompatible
from connectors.llm.sandbox import LlmSandbox

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["sentiment", "urgency"],
          "properties": {"sentiment": {"type": "string"}, "urgency": {"type": "string"}}}


@pytest.fixture
def llm() -> Iterator[LlmSandbox]:
    with LlmSandbox(api_key="k") as sandbox:
        yield sandbox


def client(llm: LlmSandbox) -> openai.OpenAI:
    return openai.OpenAI(base_url=llm.base_url, api_key="k", max_retries=0)


def ask(c: openai.OpenAI, **kw):
    return c.chat.completions.create(
        model="sandbox-model", temperature=0, max_tokens=100,
        messages=[{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Checkout is down"}],
        response_format={"type": "json_schema", "json_schema": {"name": "t", "strict": True, "schema": SCHEMA}},
        **kw)


def test_the_official_client_parses_an_answer(llm):
    completion = ask(client(llm))
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.object == "chat.completion" and completion.model == "sandbox-model"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant" and choice.message.refusal is None
    answer = json.loads(choice.message.content or "")
    assert answer["urgency"] == "high" and answer["sentiment"] == "frustrated"
    assert completion.usage is not None and completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens) > 0
    [req] = llm.requests
    assert req.path == "/v1/chat/completions" and req.json["response_format"]["type"] == "json_schema"
    assert {k.lower(): v for k, v in req.headers.items()}["authorization"] == "Bearer <redacted>"


def test_models_list(llm):
    assert [m.id for m in client(llm).models.list()] == ["sandbox-model"]


def test_wrong_key_unknown_model_bad_request(llm):
    with pytest.raises(openai.AuthenticationError):
        ask(openai.OpenAI(base_url=llm.base_url, api_key="wrong", max_retries=0))
    with pytest.raises(openai.NotFoundError):
        client(llm).chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as e:  # JSON mode needs the word JSON in the messages
        client(llm).chat.completions.create(model="sandbox-model", messages=[{"role": "user", "content": "hi"}],
                                            response_format={"type": "json_object"})
    assert e.value.body["param"] == "messages"  # type: ignore[index]
    bad = {"type": "object", "properties": {"a": {"type": "string"}}, "required": []}
    with pytest.raises(openai.BadRequestError):
        client(llm).chat.completions.create(
            model="sandbox-model", messages=[{"role": "user", "content": "json"}],
            response_format={"type": "json_schema", "json_schema": {"name": "t", "strict": True, "schema": bad}})


def test_scripted_kinds(llm):
    c = client(llm)
    llm.script("invalid_json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(ask(c).choices[0].message.content or "")
    llm.script("wrong_schema")
    assert json.loads(ask(c).choices[0].message.content or "")["sentiment"] == "angry"
    llm.script("refusal")
    message = ask(c).choices[0].message
    assert message.content is None and message.refusal
    llm.script("rate_limited", retry_after=2)
    with pytest.raises(openai.RateLimitError) as rl:
        ask(c)
    assert rl.value.response.headers["retry-after"] == "2"
    llm.script("server_error", times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            ask(c)
    llm.script("slow", delay_s=0.5)
    with pytest.raises(openai.APITimeoutError):
        ask(c, timeout=0.2)
    assert ask(c).choices[0].message.content  # the script is used up: valid again
    assert llm.calls == 8


def test_adapter_maps_failures(llm):
    a = OpenAICompatible(llm.base_url, "k", "sandbox-model")
    schema = SCHEMA
    assert json.loads(a.ask("json please", "Checkout is down", schema, timeout=5).content)["urgency"] == "high"
    for kind, reason in (("refusal", "refusal"), ("rate_limited", "rate_limited"), ("server_error", "server_error")):
        llm.script(kind, retry_after=3 if kind == "rate_limited" else None)
        with pytest.raises(LlmFailure) as e:
            a.ask("json please", "x", schema, timeout=5)
        assert e.value.reason == reason
        if kind == "rate_limited":
            assert e.value.retry_after == 3
    llm.script("slow", delay_s=0.6)
    started = time.monotonic()
    with pytest.raises(LlmFailure) as e:
        a.ask("json please", "x", schema, timeout=0.2)
    assert e.value.reason == "timeout" and time.monotonic() - started < 0.6
    with pytest.raises(LlmFailure) as e:
        OpenAICompatible(llm.base_url, "wrong", "sandbox-model").ask("json", "x", schema, timeout=5)
    assert e.value.reason == "auth"
    llm.stop()
    with pytest.raises(LlmFailure) as e:
        a.ask("json please", "x", schema, timeout=1)
    assert e.value.reason == "unreachable"


def test_adapter_falls_back_to_json_mode():
    with LlmSandbox(api_key="", json_schema=False) as llm:
        a = OpenAICompatible(llm.base_url, "", "sandbox-model")
        reply = a.ask("Answer in JSON.", "thanks!", SCHEMA, timeout=5)
        assert reply.json_mode == "json_object" and json.loads(reply.content)["sentiment"] == "satisfied"
        assert [r.status for r in llm.requests] == [400, 200]
        a.ask("Answer in JSON.", "thanks!", SCHEMA, timeout=5)  # remembered: no second 400
        assert [r.status for r in llm.requests] == [400, 200, 200]


def test_shapes_validate_against_the_clients_own_types(llm):
    """Beyond the client's lenient parsing: each body validates against openai's pydantic types and
    the request our adapter sends against its TypedDict of create() parameters."""
    from openai.types.chat import ChatCompletion, completion_create_params
    from openai.types.shared import ErrorObject
    from pydantic import TypeAdapter

    OpenAICompatible(llm.base_url, "k", "sandbox-model").ask("Answer in JSON.", "Checkout is down", SCHEMA, timeout=5)
    llm.script("refusal")
    with pytest.raises(LlmFailure):
        OpenAICompatible(llm.base_url, "k", "sandbox-model").ask("json", "x", SCHEMA, timeout=5)
    for r in llm.requests:
        ChatCompletion.model_validate(r.response, strict=False)
        TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming).validate_python(r.json)
    refused = llm.requests[-1].response
    assert refused["choices"][0]["message"]["refusal"] and refused["choices"][0]["message"]["content"] is None
    llm.script("rate_limited")
    with pytest.raises(openai.RateLimitError):
        ask(client(llm))
    ErrorObject.model_validate(llm.requests[-1].response["error"])  # OpenAI's error shape
