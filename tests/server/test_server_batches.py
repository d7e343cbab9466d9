"""The Batch API through ``contentmill serve`` with the openai SDK as the client: a file of chat requests goes to
the vendor as one batch priced at its discount and reserved against the key's budget at creation, each line ends
in one ledger row when collected, and the output file is OpenAI's. Against the fake upstream's own Batch API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import orjson
import pytest
from server_helpers import UPSTREAM_KEY, calls, make_key, server_env

from contentmill.catalog import load_catalog
from contentmill.testing.harness import Served, Upstream

SDK = Callable[..., openai.OpenAI]
TOPICS = ["a blue ceramic mug", "a walnut desk", "a steel water bottle", "a wool scarf"]


@pytest.fixture
def upstream_server(upstream: Callable[..., Upstream]) -> Upstream:
    return upstream(api_key=[UPSTREAM_KEY], batch_delay_ms=400)


def _file(topics: list[str], model: str = "gpt-4o-mini", **extra: Any) -> bytes:
    lines = [{"custom_id": f"item-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": model, "max_tokens": 30, **extra,
                       "messages": [{"role": "user", "content": f"Describe {topic} in one line."}]}}
             for i, topic in enumerate(topics)]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def _create(client: openai.OpenAI, data: bytes) -> Any:
    uploaded = client.files.create(file=("products.jsonl", data), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(data)
    return client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", metadata={"run": "nightly"})


def _wait(client: openai.OpenAI, batch_id: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not finish in {timeout_s} s")


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [orjson.loads(line) for line in client.files.content(file_id).content.splitlines()]


def test_a_batch_is_answered_at_the_discount_with_one_ledger_row_a_line(
        sdk: SDK, server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    client = sdk(server, make_key(env, project="catalog").secret)
    created = _create(client, _file(TOPICS))
    assert created.status == "in_progress" and created.request_counts.total == len(TOPICS)
    assert created.metadata == {"run": "nightly"}
    batch = _wait(client, created.id)
    assert batch.status == "completed" and batch.request_counts.completed == len(TOPICS)
    assert batch.error_file_id is None
    output = _lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == [f"item-{i}" for i in range(len(TOPICS))]
    assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in output)
    assert all(line["response"]["body"]["choices"][0]["message"]["content"] for line in output)

    rows = calls(env, at_least=len(TOPICS))
    assert len(rows) == len(TOPICS) and all(r.outcome == "ok" for r in rows)
    catalog = load_catalog()
    for row, line in zip(sorted(rows, key=lambda r: r.usage.input_tokens if r.usage else 0),
                         sorted(output, key=lambda o: o["response"]["body"]["usage"]["prompt_tokens"]), strict=True):
        assert row.usage is not None and row.usage.input_tokens == line["response"]["body"]["usage"]["prompt_tokens"]
        assert row.cost_usd == pytest.approx(catalog.cost(row.model, row.usage, batch=True))
        assert row.cost_usd == pytest.approx(catalog.cost(row.model, row.usage) / 2)  # the batch discount
        assert row.tags["batch"] == batch.id and row.tags["project"] == "catalog" and row.tags["submit_mode"] == "batch"
    assert batch.model_extra is not None
    assert batch.model_extra["contentmill"]["cost_usd"] == pytest.approx(sum(r.cost_usd for r in rows))
    stats = upstream_server.stats()
    assert stats["batch"]["batches"] == 1 and stats["batch"]["requests"] == len(TOPICS) and stats["requests"] == 0

    # The same file again is answered from the cache: no new vendor batch, $0, a cached row each.
    again = _wait(client, _create(client, _file(TOPICS)).id)
    assert again.status == "completed" and again.model_extra["contentmill"]["cost_usd"] == 0
    assert [line["response"]["body"]["choices"] for line in _lines(client, again.output_file_id)] == [
        line["response"]["body"]["choices"] for line in output]
    assert upstream_server.stats()["batch"]["batches"] == 1
    cached = [r for r in calls(env, at_least=2 * len(TOPICS)) if r.tags.get("batch") == again.id]
    assert len(cached) == len(TOPICS) and all(r.outcome == "cached" and r.cost_usd == 0 for r in cached)


def test_the_same_lines_asked_while_their_batch_runs_are_paid_once(
        sdk: SDK, server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    client = sdk(server, make_key(env).secret)
    first = _create(client, _file(TOPICS))
    second = _create(client, _file(TOPICS))  # while the first is still running at the vendor
    done = _wait(client, second.id)
    assert done.status == "completed" and done.request_counts.completed == len(TOPICS)
    assert _wait(client, first.id).status == "completed"
    assert upstream_server.stats()["batch"]["batches"] == 1
    rows = calls(env, at_least=2 * len(TOPICS))
    assert sum(r.outcome == "ok" for r in rows) == len(TOPICS)
    assert sum(r.outcome == "cached" for r in rows) == len(TOPICS)


def test_a_batch_over_the_keys_budget_is_refused_before_anything_is_sent(
        sdk: SDK, server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    client = sdk(server, make_key(env, budget_usd=1e-6, period="day").secret)
    with pytest.raises(openai.RateLimitError) as refused:
        _create(client, _file(TOPICS))
    assert refused.value.code == "budget_exceeded"
    assert upstream_server.stats()["batch"]["batches"] == 0


def test_bad_files_name_their_line_and_other_teams_see_nothing(
        sdk: SDK, server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    client = sdk(server, make_key(env, models=["openai:gpt-4o-mini"]).secret)
    bad = _file(TOPICS[:2]) + b'{"custom_id": "item-9", "method": "POST", "url": "/v1/chat/completions", ' \
                              b'"body": {"model": "gpt-4o-mini", "messages": []}}\n'
    with pytest.raises(openai.BadRequestError, match="line 3 of the input file: 'messages' must be a non-empty"):
        client.files.create(file=("bad.jsonl", bad), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="'purpose' must be 'batch'"):
        client.files.create(file=("x.jsonl", _file(TOPICS)), purpose="fine-tune")
    with pytest.raises(openai.PermissionDeniedError, match="may not use 'gpt-4o'"):
        _create(client, _file(TOPICS, model="gpt-4o"))
    with pytest.raises(openai.BadRequestError, match="'stream' cannot be true"):
        client.files.create(file=("s.jsonl", _file(TOPICS, stream=True)), purpose="batch")

    batch = _create(client, _file(TOPICS[:1]))
    other = sdk(server, make_key(env, team="blog").secret)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(batch.input_file_id)
    _wait(client, batch.id)
    assert upstream_server.stats()["batch"]["batches"] == 1


def test_a_cancelled_batch_is_settled_for_what_it_answered(
        sdk: SDK, serve: Callable[..., Served], upstream: Callable[..., Upstream], tmp_path: Any) -> None:
    slow = upstream(api_key=[UPSTREAM_KEY], batch_delay_ms=60_000)
    env = server_env(slow.base_url, tmp_path / "data")
    client = sdk(serve(env), make_key(env).secret)
    created = _create(client, _file(TOPICS))
    cancelling = client.batches.cancel(created.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = _wait(client, created.id)
    assert batch.status == "cancelled" and batch.request_counts.completed == 0
    errors = _lines(client, batch.error_file_id)
    assert [e["custom_id"] for e in errors] == [f"item-{i}" for i in range(len(TOPICS))]
    rows = calls(env, at_least=len(TOPICS))
    assert len(rows) == len(TOPICS) and all(r.outcome == "error" and r.cost_usd == 0 for r in rows)
