"""Streams that do not end well: a client that goes away mid-stream is billed for what the upstream produced;
an upstream whose connection drops mid-stream is billed for what it sent, recorded as an error, and the client
gets an error event in OpenAI's shape. Exactly one ledger row each, whatever happened."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from server_helpers import UPSTREAM_KEY, calls, make_key, server_env

from contentmill.catalog import load_catalog
from contentmill.metering import count_tokens
from contentmill.testing.harness import Served, Upstream

BODY = {"model": "gpt-4o-mini", "max_tokens": 80, "stream": True,
        "messages": [{"role": "user", "content": "Write a long description of a walnut desk."}]}


def test_a_client_that_disconnects_mid_stream_is_billed_for_what_the_upstream_produced(
        serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Path) -> None:
    slow = upstream(api_key=[UPSTREAM_KEY], latency_ms=4000)  # ~50 ms between pieces
    env = server_env(slow.base_url, tmp_path / "data")
    server = serve(env)
    issued = make_key(env)
    received = []
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", server.base_url + "/chat/completions", json=BODY,
            headers={"authorization": f"Bearer {issued.secret}"}) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                received.append(line)
            if len(received) == 6:
                break  # leaving the block closes the connection mid-stream
    [row] = calls(env, settle_s=1.5)
    served = slow.stats()
    assert served["requests"] == 1 and served["streams_cut"] == 1
    produced = served["streamed_output_tokens"]
    assert row.outcome == "ok" and row.error_type == "StreamClosed"
    assert row.usage is not None and row.usage.estimated
    assert 6 <= row.usage.output_tokens <= produced < 80  # what the server read of it, never the full max_tokens
    assert row.cost_usd == pytest.approx(load_catalog().cost("openai:gpt-4o-mini", row.usage)) and row.cost_usd > 0
    assert row.cost_usd < row.reserved_usd


def test_an_upstream_cut_mid_stream_is_billed_for_what_it_sent_and_told_to_the_client(
        serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Path) -> None:
    cutting = upstream(api_key=[UPSTREAM_KEY], cut_streams_after=8)
    env = server_env(cutting.base_url, tmp_path / "data")
    server = serve(env)
    issued = make_key(env)
    pieces = []
    with openai.OpenAI(base_url=server.base_url, api_key=issued.secret, max_retries=0) as sdk:
        stream = sdk.chat.completions.create(**BODY)  # type: ignore[call-overload]
        with pytest.raises(openai.APIError) as failed:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
    assert "failed" in str(failed.value)
    [row] = calls(env)
    served = cutting.stats()
    assert served["requests"] == 1  # not retried once the first piece had come
    assert row.outcome == "error" and row.error_type is not None and row.usage is not None and row.usage.estimated
    assert row.usage.output_tokens == count_tokens("".join(pieces), "o200k_base") == served["streamed_output_tokens"]
    assert row.cost_usd == pytest.approx(load_catalog().cost("openai:gpt-4o-mini", row.usage)) and row.cost_usd > 0
