"""The product-descriptions flow against a real Prefect API and the fake upstream as a real server: packing
with a bad item, variants, escalation a tier up, a 429 storm, artifacts and the ledger's record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from products_helpers import product_row, write_catalog

from contentmill.catalog import load_catalog
from contentmill.flows.product_descriptions import product_descriptions
from contentmill.ledger import LedgerStore, settings_url
from contentmill.metering import Usage
from contentmill.routing import find_decision
from contentmill.settings import load_settings
from contentmill.testing.harness import Upstream

pytestmark = pytest.mark.usefixtures("prefect_api")


def read_rows(path: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {row["id"]: row for row in rows}


async def artifacts(flow_run_id: str) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
    return {artifact.key or str(artifact.type): artifact for artifact in found}


async def test_a_packed_request_with_one_bad_item_retries_that_item_alone_and_variants_reuse(
        shop: Callable[..., Upstream], tmp_path: Path) -> None:
    server = shop(corrupt_item=["p0007"])
    rows = [product_row(n) for n in range(1, 25)]
    rows.append(dict(rows[4], **{"Uniq Id": "twin-of-p0005", "Stock": "3"}))  # the same product under another id
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    out = tmp_path / "descriptions.jsonl"
    summary = await product_descriptions(catalog=str(catalog), out=str(out), config={"packing": {"max_items": 8}})
    assert (summary["items"], summary["done"], summary["failed"], summary["reused"]) == (25, 25, 0, 1)
    found = read_rows(out)
    assert list(found) == [r["Uniq Id"] for r in rows]  # catalog order
    stats = server.stats()
    assert stats["item_ids"]["p0007"] == 2  # in its packed batch, then alone
    assert all(count == 1 for pid, count in stats["item_ids"].items() if pid != "p0007")
    assert "twin-of-p0005" not in stats["item_ids"]
    assert stats["requests"] == summary["calls"] and stats["requests"] <= 24 / 8 + 3 + 1
    bad = found["p0007"]
    tier = bad["tier"]
    packed, alone = bad["attempts"]
    assert packed.startswith(f"{tier}:packed:") and "template_leftovers" in packed and alone == f"{tier}:alone"
    assert "{" not in bad["description"] and bad["checks"]["template_leftovers"] == "ok"
    twin = found["twin-of-p0005"]
    assert twin["reused_from"] == "p0005" and twin["description"] == found["p0005"]["description"]
    assert twin["cost_usd"] == 0 and twin["cached"] is False
    for row in found.values():
        assert set(row) >= {"id", "description", "tier", "model", "usage", "cost_usd", "cached", "reused_from",
                            "checks", "error"}
        assert row["error"] is None and row["model"].startswith("openai:")
    assert summary["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in found.values()))
    made = await artifacts(summary["flow_run_id"])
    assert {"product-descriptions-costs", "product-descriptions-progress"} <= set(made)
    table = json.loads(made["product-descriptions-costs"].data)
    assert {r["name"] for r in table if r["group"] == "tier"} == set(summary["by_tier"])
    assert {r["name"] for r in table if r["group"] == "category"} >= {"Toys & Games"}
    assert made["product-descriptions-progress"].data == 100.0


async def test_a_description_failing_its_checks_alone_is_written_a_tier_up_and_the_ledger_says_why(
        shop: Callable[..., Upstream], tmp_path: Path) -> None:
    shop()
    nameless = product_row(6, **{"Product Name": ""})
    catalog = write_catalog(tmp_path / "catalog.csv", [*(product_row(n) for n in range(6)), nameless])
    out = tmp_path / "out.jsonl"
    config = {"rules": [{"tier": "light", "skus": ["p0002"]}], "checks": {"min_words": 16},
              "tiers": {"light": {"model": "openai:gpt-4o-mini", "words": [5, 12]},
                        "standard": {"model": "openai:gpt-4.1-mini", "words": [40, 90]},
                        "premium": {"model": "openai:gpt-4o", "words": [60, 120]}}}
    summary = await product_descriptions(catalog=str(catalog), out=str(out), config=config)
    assert (summary["items"], summary["failed"], summary["row_errors"]) == (6, 0, 1)  # the run went on
    (error,) = [json.loads(line) for line in Path(summary["errors_out"]).read_text(encoding="utf-8").splitlines()]
    assert error["row"] == 7 and error["id"] == "p0006" and "no product name" in error["reason"]
    row = read_rows(out)["p0002"]
    assert (row["assigned_tier"], row["tier"], row["model"]) == ("light", "standard", "openai:gpt-4.1-mini")
    assert row["attempts"] == ["light:alone:length", "standard:alone"]
    with LedgerStore(settings_url(load_settings())) as store:
        calls = store.calls()
    retried = [c for c in calls if c.tags.get("retry") == "quality"]
    assert len(retried) == 1 and retried[0].tags["failed_check"] == "length"
    assert retried[0].tags["tier"] == "standard" and retried[0].model == "openai:gpt-4.1-mini"
    assert all(c.tags["flow"] == "product-descriptions" and c.tags["team"] == "shop" for c in calls)


async def test_a_429_storm_slows_the_run_down_and_every_item_still_finishes(
        shop: Callable[..., Upstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTENTMILL_MAX_RETRIES", "0")  # every 429 reaches the flow
    server = shop(rate_429=0.5, seed=3)
    catalog = write_catalog(tmp_path / "catalog.csv", [product_row(n) for n in range(24)])
    out = tmp_path / "out.jsonl"
    config = {"packing": {"max_items": 3, "start_concurrency": 6}}
    summary = await product_descriptions(catalog=str(catalog), out=str(out), config=config, use_graph=False)
    stats = server.stats()
    assert stats["rejected_429"] > 0
    assert (summary["done"], summary["failed"]) == (24, 0)
    assert summary["rate_limited"] > 0
    assert summary["concurrency"]["min"] < summary["concurrency"]["start"]  # it backed off
    assert sorted(stats["item_ids"]) == sorted(read_rows(out)) and set(stats["item_ids"].values()) == {1}


async def test_the_batch_api_path_describes_every_product_at_the_discount_and_retries_failures_online(
        shop: Callable[..., Upstream], tmp_path: Path) -> None:
    server = shop(batch_delay_ms=50)
    catalog = write_catalog(tmp_path / "catalog.csv", [product_row(n) for n in range(1, 13)])
    out = tmp_path / "out.jsonl"
    config = {"rules": [{"tier": "light", "skus": ["p0004"]}], "checks": {"min_words": 16},
              "tiers": {"light": {"model": "openai:gpt-4o-mini", "words": [5, 12]},
                        "standard": {"model": "openai:gpt-4o-mini", "words": [40, 90]},
                        "premium": {"model": "openai:gpt-4o", "words": [60, 120]}}}
    summary = await product_descriptions(catalog=str(catalog), out=str(out), config=config, submit_mode="batch")
    assert (summary["done"], summary["failed"]) == (12, 0)
    stats = server.stats()
    assert stats["batch"]["batches"] == stats["batch"]["requests"] == 2  # light and standard: one packed request each
    assert stats["requests"] == 1 and list(stats["item_ids"]) == ["p0004"]  # after the batch, online a tier up
    found = read_rows(out)
    assert found["p0004"]["attempts"] == ["light:batch:length", "standard:alone"]  # alone in its batch already
    models = load_catalog(load_settings().catalog_file)
    batch_only = [row for row in found.values() if row["attempts"] == [f"{row['tier']}:batch"]]
    assert len(batch_only) == 11
    for row in batch_only:
        full = models.get(row["model"]).cost(Usage.from_dict(row["usage"]))
        assert row["cost_usd"] == pytest.approx(full / 2, rel=0.02)  # the vendor's 50% batch discount


async def test_routed_tiers_take_the_routers_choice_and_each_decision_is_on_record(
        shop: Callable[..., Upstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shop()
    routing = tmp_path / "routing.toml"
    routing.write_text('[tiers]\npremium = ["openai:gpt-4o", "openai:gpt-4.1-mini"]\n'
                       'standard = ["openai:gpt-4.1-mini", "openai:gpt-4o-mini"]\nlight = ["openai:gpt-4o-mini"]\n'
                       '[weights]\ncost = 1\n', encoding="utf-8")  # cost alone: the cheapest of each tier wins
    monkeypatch.setenv("CONTENTMILL_ROUTING_FILE", str(routing))
    catalog = write_catalog(tmp_path / "catalog.csv", [product_row(n) for n in range(1, 9)])
    out = tmp_path / "descriptions.jsonl"
    summary = await product_descriptions(catalog=str(catalog), out=str(out), config={"route_tiers": True})
    assert summary["done"] == 8 and set(summary["routes"]) == {"premium", "standard", "light"}
    with LedgerStore(settings_url(load_settings())) as store:
        chosen = {tier: find_decision(store, decision) for tier, decision in summary["routes"].items()}
    assert all(found is not None for found in chosen.values())
    assert chosen["standard"] is not None and chosen["standard"]["chosen_model"] == "openai:gpt-4o-mini"
    for row in read_rows(out).values():
        decision = chosen[row["tier"]]
        assert decision is not None and row["model"] == decision["chosen_model"]
        assert decision["tier"] == row["tier"] and decision["task_kind"] == "product_description"
