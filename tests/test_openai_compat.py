"""The OpenAI-compatible provider and the gateway against the fake upstream, a real HTTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from contentmill.audio import wav_info
from contentmill.catalog import builtin_catalog
from contentmill.errors import (
    AuthenticationError,
    BadRequest,
    MalformedResponse,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    RequestTooLarge,
    UnpricedModel,
)
from contentmill.gateway import Gateway
from contentmill.metering import count_message_tokens, count_tokens
from contentmill.providers.openai_client import OpenAICompatClient
from contentmill.providers.openai_compat import OpenAICompatSpeechModel, OpenAICompatTextModel
from contentmill.requests import SpeechRequest, TextRequest
from contentmill.settings import load_settings

KEY = "sk-test-contentmill-0123456789"
REQUEST = TextRequest.chat("Describe a bamboo cutting board in one sentence.", system="Be brief.", max_tokens=40)


def text_model(base_url: str, *, key: str = KEY, timeout: float = 10.0, headers: dict[str, str] | None = None,
               http_client: httpx.AsyncClient | None = None) -> OpenAICompatTextModel:
    client = OpenAICompatClient("openai", base_url, SecretStr(key), timeout=timeout, extra_headers=headers,
                                http_client=http_client)
    return OpenAICompatTextModel("openai:gpt-4o-mini", client)


async def test_completion_reports_the_upstreams_usage(upstream: Callable[..., Any]) -> None:
    server = upstream()
    model = text_model(server.base_url)
    try:
        result = await model.complete(REQUEST)
    finally:
        await model.aclose()
    assert result.text and result.finish_reason in {"stop", "length"}
    assert result.usage.input_tokens == count_message_tokens(REQUEST.as_messages(), "o200k_base")
    assert result.usage.output_tokens == count_tokens(result.text, "o200k_base")
    assert not result.usage.estimated
    assert result.request_id and result.request_id.startswith("req_")
    assert server.stats()["requests"] == 1


async def test_plain_httpx_client_works_too(upstream: Callable[..., Any]) -> None:
    server = upstream()
    async with httpx.AsyncClient(timeout=10) as client:
        result = await text_model(server.base_url, http_client=client).complete(REQUEST)
    assert result.usage.output_tokens > 0


async def test_streaming_gives_the_same_text_and_usage(upstream: Callable[..., Any]) -> None:
    server = upstream()
    model = text_model(server.base_url)
    try:
        plain = await model.complete(REQUEST)
        chunks = [chunk async for chunk in model.stream(REQUEST)]
    finally:
        await model.aclose()
    assert len(chunks) > 2
    assert "".join(c.delta for c in chunks) == plain.text
    assert chunks[-1].usage == plain.usage
    assert chunks[-1].finish_reason == plain.finish_reason
    assert all(c.usage is None for c in chunks[:-1])


async def test_rate_limit_429_keeps_retry_after(upstream: Callable[..., Any]) -> None:
    server = upstream(rpm=1)
    model = text_model(server.base_url)
    try:
        await model.complete(REQUEST)
        with pytest.raises(ProviderRateLimited) as info:
            await model.complete(REQUEST)
    finally:
        await model.aclose()
    error = info.value
    assert error.status == 429 and error.retryable
    assert error.retry_after is not None and 0 < error.retry_after <= 60
    assert error.request_id and error.request_id.startswith("req_")
    assert server.stats()["rejected_429"] == 1


@pytest.mark.parametrize(
    ("fault", "error_type", "status"),
    [("500", ProviderUnavailable, 500), ("503", ProviderUnavailable, 503), ("429", ProviderRateLimited, 429),
     ("malformed", MalformedResponse, None), ("disconnect", ProviderUnavailable, None)],
)
async def test_upstream_faults_map_into_the_error_tree(upstream: Callable[..., Any], fault: str,
                                                       error_type: type[Exception], status: int | None) -> None:
    server = upstream()
    model = text_model(server.base_url, headers={"X-Upstream-Fault": fault})
    try:
        with pytest.raises(error_type) as info:
            await model.complete(REQUEST)
    finally:
        await model.aclose()
    assert getattr(info.value, "retryable", False)
    if status is not None:
        assert getattr(info.value, "status", None) == status


async def test_timeout(upstream: Callable[..., Any]) -> None:
    server = upstream()
    model = text_model(server.base_url, timeout=0.5, headers={"X-Upstream-Fault": "timeout"})
    try:
        with pytest.raises(ProviderTimeout, match="0.5 s"):
            await model.complete(REQUEST)
    finally:
        await model.aclose()


async def test_wrong_key_is_an_auth_error_without_the_key_in_it(upstream: Callable[..., Any]) -> None:
    server = upstream(api_key=["sk-the-right-one"])
    model = text_model(server.base_url, key="sk-wrong-key-987654")
    try:
        with pytest.raises(AuthenticationError) as info:
            await model.complete(REQUEST)
    finally:
        await model.aclose()
    assert info.value.status == 401 and not info.value.retryable
    assert "sk-wrong-key-987654" not in str(info.value)


async def test_bad_request_is_not_retryable(upstream: Callable[..., Any]) -> None:
    server = upstream()
    client = OpenAICompatClient("openai", server.base_url, SecretStr(KEY))
    try:
        with pytest.raises(BadRequest) as info:
            await client.post("/chat/completions", {"model": "gpt-4o-mini"}, "openai:gpt-4o-mini")
    finally:
        await client.aclose()
    assert info.value.status == 400 and not info.value.retryable


async def test_speech_returns_a_wav_of_the_reported_length(upstream: Callable[..., Any]) -> None:
    server = upstream()
    client = OpenAICompatClient("openai", server.base_url, SecretStr(KEY))
    model = OpenAICompatSpeechModel("openai:tts-1", client)
    try:
        result = await model.synthesize(SpeechRequest("A calm voice reads the product description aloud."))
    finally:
        await model.aclose()
    info = wav_info(result.audio)
    assert info.duration_s == pytest.approx(result.duration_s) and result.duration_s > 1
    assert result.usage.characters == len("A calm voice reads the product description aloud.")
    assert server.stats()["characters"] == result.usage.characters


def gateway_for(base_url: str, **overrides: Any) -> Gateway:
    settings = load_settings(openai_base_url=base_url, openai_api_key=SecretStr(KEY), **overrides)
    return Gateway(settings, builtin_catalog())


async def test_gateway_prices_the_reported_usage(upstream: Callable[..., Any]) -> None:
    server = upstream()
    async with gateway_for(server.base_url) as gateway:
        gen = await gateway.generate(REQUEST, model="openai:gpt-4o-mini", tags={"team": "shop"})
        speech = await gateway.speak(SpeechRequest("Hello there, friend."), model="openai:tts-1")
    expected = (gen.usage.input_tokens * 0.15 + gen.usage.output_tokens * 0.60) / 1e6
    assert gen.cost_usd == pytest.approx(expected) and gen.cost_usd > 0
    assert gen.estimate.input_tokens == gen.usage.input_tokens  # same tokenizer, same accounting
    assert gen.estimate.output_tokens == REQUEST.max_tokens and gen.estimate.estimated
    assert gen.tags == {"team": "shop"} and gen.attempts == 1
    assert speech.cost_usd == pytest.approx(len("Hello there, friend.") * 15.0 / 1e6)


async def test_gateway_retries_server_errors(upstream: Callable[..., Any]) -> None:
    server = upstream(error_rate=0.5, seed=7)
    async with gateway_for(server.base_url, max_retries=8) as gateway:
        attempts = [
            (await gateway.generate(TextRequest.chat(f"item {i}", max_tokens=8), model="openai:gpt-4o-mini")).attempts
            for i in range(12)
        ]
    stats = server.stats()
    assert stats["requests"] == 12
    assert stats["errors_5xx"] == sum(attempts) - 12 > 0


async def test_gateway_does_not_retry_auth_errors(upstream: Callable[..., Any]) -> None:
    server = upstream(api_key=["sk-other"])
    async with gateway_for(server.base_url, max_retries=5) as gateway:
        with pytest.raises(AuthenticationError):
            await gateway.generate(REQUEST, model="openai:gpt-4o-mini")
    assert server.stats()["requests"] == 0


async def test_gateway_refuses_before_calling(upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    async with gateway_for(server.base_url) as gateway:
        with pytest.raises(UnpricedModel):
            await gateway.generate(REQUEST, model="openai:gpt-9-preview")
        with pytest.raises(RequestTooLarge, match="context window of 128000"):
            await gateway.generate(TextRequest.chat("word " * 130_000, max_tokens=10), model="openai:gpt-4o-mini")
    stats = server.stats()
    assert stats["requests"] == 0 and stats["rejected_429"] == 0


def run_cli(*args: str, base_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "contentmill.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_cli_generate_json_against_the_fake_upstream(upstream: Callable[..., Any]) -> None:
    server = upstream()
    done = run_cli("generate", "hi", "--model", "openai:gpt-4o-mini", "--tag", "team=shop", "--json",
                   base_url=server.base_url)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    usage = data["usage"]
    assert usage["input_tokens"] == count_message_tokens([{"role": "user", "content": "hi"}], "o200k_base")
    assert usage["output_tokens"] > 0 and data["text"] and data["cached"] is False
    assert data["model"] == "openai:gpt-4o-mini" and data["tags"] == {"team": "shop"}
    assert data["cost_usd"] == pytest.approx((usage["input_tokens"] * 0.15 + usage["output_tokens"] * 0.6) / 1e6)
    assert KEY not in done.stdout + done.stderr


def test_cli_errors_are_one_line_and_nothing_is_paid(upstream: Callable[..., Any]) -> None:
    server = upstream()
    done = run_cli("generate", "hi", "--model", "openai:gpt-9-preview", "--json", base_url=server.base_url)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "price" in done.stderr
    assert server.stats()["requests"] == 0
    bad_tag = run_cli("generate", "hi", "--model", "openai:gpt-4o-mini", "--tag", "nokey", base_url=server.base_url)
    assert bad_tag.returncode != 0 and "KEY=VALUE" in bad_tag.stderr
