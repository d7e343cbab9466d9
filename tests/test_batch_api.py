"""The Batch API path: the fake upstream's /v1/files and /v1/batches, and batch calls through the gateway.

Batch calls are priced at the vendor's batch discount, reserved against budgets before submission and settled
after collection, recorded one ledger row per item, collectable from another process, and cached.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from pydantic import SecretStr

from contentmill.errors import AuthenticationError, BadRequest, BudgetExceeded, ConfigError
from contentmill.gateway import Gateway
from contentmill.gateway.batch import MODE_TAG, BatchOutcome, BatchTicket, wait_and_collect
from contentmill.gateway.generation import estimate_text_usage
from contentmill.gateway.pending import pending_batches
from contentmill.ledger import Budget, LedgerStore, settings_url
from contentmill.providers.batch import BatchStatus
from contentmill.requests import TextRequest
from contentmill.settings import Settings, load_settings
from contentmill.tasks.batch import collect_batch, submit_batch
from contentmill.testing.harness import Upstream

KEY = "sk-test-batch-0123456789abcdef"
MODEL = "openai:gpt-4o-mini"
REDIS_URL = "redis://127.0.0.1:6379/0"


def settings_for(base_url: str, data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(openai_base_url=base_url, openai_api_key=SecretStr(KEY), data_dir=data_dir,
                         monitor_interval_s=0, **overrides)


def requests(count: int, max_tokens: int = 40) -> list[tuple[str, TextRequest]]:
    return [(f"p{i}", TextRequest.chat(f"Describe product number {i}: a steel water bottle, 750 ml.",
                                       system="You write short product descriptions.", max_tokens=max_tokens))
            for i in range(count)]



# -- the fake upstream's endpoints ------------------------------------------------------------------------------


def _line(custom_id: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": body}).encode() + b"\n"


def _chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 30, **extra}


def _create(client: httpx.Client, data: bytes) -> dict[str, Any]:
    upload = client.post("/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", data)})
    assert upload.status_code == 200, upload.text
    assert upload.json()["purpose"] == "batch" and upload.json()["bytes"] == len(data)
    created = client.post("/batches", json={"input_file_id": upload.json()["id"],
                                            "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert created.status_code == 200, created.text
    batch: dict[str, Any] = created.json()
    return batch


def _wait(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        batch: dict[str, Any] = client.get(f"/batches/{batch_id}").json()
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not finish")


def test_the_upstream_answers_a_batch_like_the_online_endpoint(upstream: Callable[..., Upstream]) -> None:
    server = upstream(batch_delay_ms=50)
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10,
                      trust_env=False) as client:
        bad = _chat("no format word here", response_format={"type": "json_object"})
        created = _create(client, _line("a", _chat("Hello there")) + _line("b", _chat("Second one")) + _line("c", bad))
        assert created["status"] == "validating" and created["completion_window"] == "24h"
        done = _wait(client, created["id"])
        assert done["status"] == "completed"
        assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
        output = [json.loads(x) for x in client.get(f"/files/{done['output_file_id']}/content").text.splitlines()]
        errors = [json.loads(x) for x in client.get(f"/files/{done['error_file_id']}/content").text.splitlines()]
        online = client.post("/chat/completions", json=_chat("Hello there")).json()
    by_id = {row["custom_id"]: row for row in output}
    assert set(by_id) == {"a", "b"}
    answer = by_id["a"]["response"]
    assert answer["status_code"] == 200
    assert answer["body"]["choices"][0]["message"]["content"] == online["choices"][0]["message"]["content"]
    assert answer["body"]["usage"] == online["usage"]
    assert errors[0]["custom_id"] == "c" and errors[0]["response"]["status_code"] == 400
    stats = server.stats()
    assert stats["batch"]["batches"] == 1 and stats["batch"]["requests"] == 2 and stats["batch"]["failed"] == 1
    assert stats["batch"]["input_tokens"] == sum(r["response"]["body"]["usage"]["prompt_tokens"] for r in output)
    assert stats["requests"] == 1  # only the online call: batch work is counted apart


def test_the_upstream_fails_an_invalid_file_and_cancels_on_request(upstream: Callable[..., Upstream]) -> None:
    server = upstream(batch_delay_ms=5000)
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10,
                      trust_env=False) as client:
        mixed = _line("a", _chat("one")) + _line("b", {**_chat("two"), "model": "gpt-4o"}) + _line("a", _chat("x"))
        failed = _wait(client, _create(client, mixed)["id"])
        assert failed["status"] == "failed"
        codes = {e["code"] for e in failed["errors"]["data"]}
        assert codes == {"duplicate_custom_id", "mismatched_model"}
        running = _create(client, _line("a", _chat("slow")))
        cancelled = client.post(f"/batches/{running['id']}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["output_file_id"] is None
        assert client.post(f"/batches/{running['id']}/cancel").status_code == 409
        assert client.post("/files", data={"purpose": "fine-tune"},
                           files={"file": ("x.jsonl", b"{}\n")}).status_code == 400
        assert client.post("/batches", json={"input_file_id": "file-x", "endpoint": "/v1/chat/completions",
                                             "completion_window": "1h"}).status_code == 400
        assert client.get("/batches/batch_missing").status_code == 404
    with httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer sk-other-key-0000000000"},
                      timeout=10, trust_env=False) as other:
        assert other.get(f"/batches/{running['id']}").status_code == 404  # another key's batch is not shown


# -- through the gateway ----------------------------------------------------------------------------------------


async def test_a_batch_costs_the_batch_discount_and_is_collected_in_another_gateway(
        upstream: Callable[..., Upstream], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = upstream(batch_delay_ms=300)
    settings = settings_for(server.base_url, tmp_path)
    items = requests(3)
    async with Gateway(settings) as gateway:
        ticket = await gateway.submit_batch(items, model=MODEL, tags={"team": "shop"},
                                            item_tags={"p0": {"category": "kitchen"}})
        assert ticket.batch_id is not None and ticket.submitted == ("p0", "p1", "p2") and not ticket.cached
        assert ticket.reserved_usd > 0
        assert await gateway.collect_batch(ticket.batch_id) is None  # still running
    assert [p.batch_id for p in await pending_batches(settings)] == [ticket.batch_id]
    pending_file = (tmp_path / "batches" / f"{ticket.batch_id}.json").read_text()
    assert KEY not in pending_file and "steel water bottle" not in pending_file  # neither key nor prompt kept

    seen: list[BatchStatus] = []
    async with Gateway(settings) as later:  # a later process: same data directory, nothing in memory
        outcome = await wait_and_collect(later, ticket.batch_id, timeout_s=20, poll_s=0.05, on_status=seen.append)
        assert outcome is not None and outcome.status == "completed" and outcome.ok == 3
        assert seen[-1].done and seen[-1].completed == 3
        with pytest.raises(ConfigError, match="no pending batch"):
            await later.collect_batch(ticket.batch_id)
        online = await later.generate(items[0][1], model=MODEL, tags={"team": "shop"}, cache=False)
        again = await later.generate(items[1][1], model=MODEL, tags={"team": "shop"})
    assert await pending_batches(settings) == []
    first = outcome.results["p0"].generation
    assert first is not None and first.usage == online.usage and first.text == online.text
    assert first.cost_usd == pytest.approx(online.cost_usd * 0.5)  # OpenAI's batch discount
    assert outcome.cost_usd == pytest.approx(sum(r.generation.cost_usd for r in outcome.results.values()
                                                 if r.generation))
    assert again.cached and again.cost_usd == 0  # the batch answer serves the same request online
    assert server.stats()["batch"]["requests"] == 3 and server.stats()["requests"] == 1

    with LedgerStore(settings_url(settings)) as store:
        rows = [r for r in store.calls() if r.tags.get(MODE_TAG) == "batch" and r.outcome == "ok"]
    assert sorted(r.tags.get("category", "") for r in rows) == ["", "", "kitchen"]
    assert len({r.reservation_id for r in rows}) == 1 and rows[0].reservation_id is not None  # one reservation
    assert sum(r.cost_usd for r in rows) == pytest.approx(outcome.cost_usd)
    assert all(r.tags["team"] == "shop" and r.reserved_usd > r.cost_usd for r in rows)
    assert KEY not in caplog.text


async def test_budgets_are_reserved_at_submit_and_settled_at_collect(
        upstream: Callable[..., Upstream], tmp_path: Path, redis_prefix: str) -> None:
    server = upstream(batch_delay_ms=100)
    settings = settings_for(server.base_url, tmp_path, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    items = requests(4, max_tokens=2000)  # reserved for 2000 output tokens each; the fake answers far fewer
    async with Gateway(settings) as sizing:
        info, model = sizing.catalog.get(MODEL), sizing.text_model(MODEL)
        estimate = sum(info.cost(estimate_text_usage(model, r), batch=True) for _, r in items)
    with LedgerStore(settings_url(settings)) as store:
        store.set_budget(Budget(scope_key="team", scope_value="shop", period="day", limit_usd=estimate * 1.5))
    async with Gateway(settings) as gateway:
        ticket = await gateway.submit_batch(items, model=MODEL, tags={"team": "shop"})
        assert ticket.reserved_usd == pytest.approx(estimate)
        with pytest.raises(BudgetExceeded):  # the first batch's reservation holds the budget while it runs
            await gateway.submit_batch(requests(4, max_tokens=2001), model=MODEL, tags={"team": "shop"})
    assert server.stats()["batch"]["batches"] == 1  # the refused batch never reached the vendor
    assert ticket.batch_id is not None

    async with Gateway(settings) as later:  # Redis holds the reservation: a new process settles it
        outcome = await wait_and_collect(later, ticket.batch_id, timeout_s=20, poll_s=0.05)
        assert outcome is not None and outcome.cost_usd < estimate / 10
        second = await later.submit_batch(requests(4, max_tokens=2001), model=MODEL, tags={"team": "shop"})
        assert second.batch_id is not None  # the refund of what the first batch did not use made room
        await later.collect_batch(second.batch_id, cancel=True)
    with LedgerStore(settings_url(settings)) as store:
        refused = [r for r in store.calls() if r.outcome == "refused"]
    assert len(refused) == 4 and {r.error_type for r in refused} == {"BudgetExceeded"}


async def test_a_failed_item_and_a_cancelled_batch_are_recorded_as_errors(
        upstream: Callable[..., Upstream], tmp_path: Path) -> None:
    server = upstream(batch_delay_ms=50)
    settings = settings_for(server.base_url, tmp_path)
    bad = TextRequest.chat("Describe it, no format word here", max_tokens=20, response_format="json")
    async with Gateway(settings) as gateway:
        ticket = await gateway.submit_batch([*requests(2), ("bad", bad)], model=MODEL)
        assert ticket.batch_id is not None
        outcome = await wait_and_collect(gateway, ticket.batch_id, timeout_s=20, poll_s=0.05)
        assert outcome is not None and outcome.ok == 2
        assert outcome.results["bad"].generation is None
        assert (outcome.results["bad"].error or "").startswith(BadRequest.__name__)

    slow = upstream(batch_delay_ms=60_000)
    settings = settings_for(slow.base_url, tmp_path / "slow")
    async with Gateway(settings) as gateway:
        ticket = await gateway.submit_batch(requests(2), model=MODEL)
        assert ticket.batch_id is not None
        assert await wait_and_collect(gateway, ticket.batch_id, timeout_s=0.2, poll_s=0.05) is None
        again = await gateway.submit_batch(requests(3), model=MODEL)  # p0 and p1 are asked by the pending batch
        assert again.waiting == {"p0": ticket.batch_id, "p1": ticket.batch_id} and again.submitted == ("p2",)
        assert again.hashes["p0"] == ticket.hashes["p0"]
        await gateway.collect_batch(again.batch_id or "", cancel=True)
        assert slow.stats()["batch"]["batches"] == 2
        cancelled = await gateway.collect_batch(ticket.batch_id, cancel=True)
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.ok == 0
    assert cancelled.cost_usd == 0
    with LedgerStore(settings_url(settings)) as store:
        rows = store.calls()
    assert [r.error_type for r in rows] == ["ProviderUnavailable"] * 3
    assert all(r.cost_usd == 0 and r.outcome == "error" for r in rows)


async def test_a_batch_of_cached_requests_is_never_submitted(upstream: Callable[..., Upstream],
                                                             tmp_path: Path) -> None:
    server = upstream()
    settings = settings_for(server.base_url, tmp_path)
    items = requests(2)
    async with Gateway(settings) as gateway:
        paid = [await gateway.generate(r, model=MODEL) for _, r in items]
        ticket = await gateway.submit_batch(items, model=MODEL)
    assert ticket.batch_id is None and set(ticket.cached) == {"p0", "p1"}
    assert all(g.cached and g.saved_usd == p.cost_usd for g, p in zip(ticket.cached.values(), paid, strict=True))
    assert server.stats()["batch"]["batches"] == 0


async def test_models_without_a_batch_api_are_refused(tmp_path: Path) -> None:
    async with Gateway(load_settings(data_dir=tmp_path)) as gateway:
        with pytest.raises(ConfigError, match="no Batch API"):
            await gateway.submit_batch(requests(1), model="fake:text")


@pytest.mark.usefixtures("prefect_api")
async def test_the_prefect_tasks_submit_now_and_collect_when_ready(upstream: Callable[..., Upstream], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    server = upstream(batch_delay_ms=3000)  # longer than starting a flow run takes
    for name, value in (("OPENAI_BASE_URL", server.base_url), ("OPENAI_API_KEY", KEY),
                        ("CONTENTMILL_MONITOR_INTERVAL_S", "0")):
        monkeypatch.setenv(name, value)

    @flow(persist_result=False)
    async def submit_now() -> BatchTicket:
        return await submit_batch(requests(2), MODEL, {"team": "shop"})

    @flow(persist_result=False)
    async def collect_later(batch_id: str, timeout_s: float) -> BatchOutcome | None:
        return await collect_batch(batch_id, timeout_s=timeout_s, poll_s=0.05)

    ticket = await submit_now()
    assert ticket.batch_id is not None and ticket.submitted == ("p0", "p1")
    assert await collect_later(ticket.batch_id, 0.0) is None  # not finished yet: it stays pending
    outcome = await collect_later(ticket.batch_id, 30.0)
    assert outcome is not None and outcome.ok == 2 and outcome.cost_usd > 0
    assert server.stats()["batch"]["requests"] == 2


async def test_a_refused_key_fails_the_submission_clearly_and_holds_nothing(upstream: Callable[..., Upstream],
                                                                           tmp_path: Path) -> None:
    server = upstream(api_key=["sk-the-right-key-0000000000000"])
    settings = settings_for(server.base_url, tmp_path)
    async with Gateway(settings) as gateway:
        with pytest.raises(AuthenticationError) as refused:
            await gateway.submit_batch(requests(2), model=MODEL, tags={"team": "shop"})
    assert "Incorrect API key" in str(refused.value) and KEY not in str(refused.value)
    assert await pending_batches(settings) == [] and server.stats()["batch"]["batches"] == 0
    with LedgerStore(settings_url(settings)) as store:
        rows = store.calls()
    assert [(r.outcome, r.error_type, r.cost_usd) for r in rows] == [("error", "AuthenticationError", 0.0)] * 2
