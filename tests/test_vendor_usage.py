"""A vendor's usage block is checked before it is billed: wrong figures bill the reserved estimate, flagged,
with the vendor's figures kept and an alert raised; every answer the fake upstream gave has one ledger row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from contentmill.errors import BudgetExceeded, MalformedResponse, UnusableAnswer
from contentmill.gateway import Gateway
from contentmill.ledger import Budget, CallRecord, LedgerStore, settings_url
from contentmill.metering import ReportedUsage, Usage, usage_ceiling, usage_problem
from contentmill.providers.openai_client import OpenAICompatClient, reported_usage
from contentmill.providers.openai_compat import OpenAICompatEmbeddingModel, OpenAICompatTextModel
from contentmill.requests import EmbeddingRequest, TextRequest
from contentmill.settings import Settings, get_settings, load_settings

KEY = "sk-test-vendor-usage-0123456789"
MODEL = "openai:gpt-4o-mini"
EMBEDDER = "openai:text-embedding-3-small"
BAD = ("negative", "text", "null", "huge")
# What each kind of wrong usage looks like in the figures kept in the ledger row.
SHOWN = {"negative": '"prompt_tokens":-', "text": '"prompt_tokens":"n/a"', "null": '"prompt_tokens":null',
         "huge": '"prompt_tokens":1000000000000'}


def settings_for(base_url: str, data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(openai_base_url=base_url, openai_api_key=SecretStr(KEY), data_dir=data_dir, **overrides)


def gateway(base_url: str, data_dir: Path, usage: str | None = None, **overrides: Any) -> Gateway:
    """A gateway whose OpenAI models ask the fake upstream for ``usage`` (X-Upstream-Usage) on every call."""
    headers = {"X-Upstream-Usage": usage} if usage else None

    def client() -> OpenAICompatClient:
        return OpenAICompatClient("openai", base_url, SecretStr(KEY), extra_headers=headers)

    models = {MODEL: OpenAICompatTextModel(MODEL, client()), EMBEDDER: OpenAICompatEmbeddingModel(EMBEDDER, client())}
    return Gateway(settings_for(base_url, data_dir, **overrides), models=models)


def rows_and_alerts(data_dir: Path, base_url: str) -> tuple[list[CallRecord], list[str]]:
    with LedgerStore(settings_url(settings_for(base_url, data_dir))) as store:
        return store.calls(), [a.rule for a in store.alerts()]


# -- reading and checking a usage block ---------------------------------------------------------------------


def test_a_usage_block_is_read_only_when_its_counts_are_counts() -> None:
    good = reported_usage({"prompt_tokens": 12, "completion_tokens": 7,
                           "prompt_tokens_details": {"cached_tokens": None}})
    assert good is not None and good.usage == Usage(input_tokens=12, output_tokens=7) and good.problem is None
    assert reported_usage(None) is None  # no block at all (a stream's chunks before the last)
    wrong = {
        "prompt_tokens is negative (-5)": {"prompt_tokens": -5, "completion_tokens": 7},
        "completion_tokens is not a number ('n/a')": {"prompt_tokens": 5, "completion_tokens": "n/a"},
        "prompt_tokens is null": {"prompt_tokens": None, "completion_tokens": None},
        "completion_tokens is missing": {"prompt_tokens": 5},
        "prompt_tokens is not a whole number (2.5)": {"prompt_tokens": 2.5, "completion_tokens": 1},
        "completion_tokens is not a number (True)": {"prompt_tokens": 5, "completion_tokens": True},
        "prompt_tokens_details.cached_tokens is negative (-1)":
            {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": -1}},
        "the usage block is not a JSON object": ["prompt_tokens", 5],
    }
    for problem, block in wrong.items():
        reported = reported_usage(block)
        assert reported is not None and reported.usage is None and reported.problem == problem, block
        assert reported.figures == json.dumps(block, separators=(",", ":"))
    long = reported_usage({"prompt_tokens": "x" * 1000, "completion_tokens": 1})
    assert long is not None and len(long.figures) <= 200 and long.figures.endswith("...")
    assert reported_usage({"prompt_tokens": 9}, output=False) == ReportedUsage('{"prompt_tokens":9}',
                                                                              Usage(input_tokens=9))


def test_usage_past_what_the_call_could_use_is_refused() -> None:
    ceiling = usage_ceiling(Usage(input_tokens=100, output_tokens=50), context_window=128_000)
    assert usage_problem(Usage(input_tokens=128_000, output_tokens=66), ceiling) is None  # the slack
    assert "max_tokens 50" in (usage_problem(Usage(input_tokens=10, output_tokens=67), ceiling) or "")
    assert "128000" in (usage_problem(Usage(input_tokens=128_001, output_tokens=1), ceiling) or "")
    assert "cached" in (usage_problem(Usage(input_tokens=10, cached_input_tokens=11), ceiling) or "")
    assert "negative" in (usage_problem(Usage(input_tokens=-1), ceiling) or "")
    no_window = usage_ceiling(Usage(input_tokens=100, output_tokens=50))
    assert no_window.input_tokens == 142  # 10% + 32 tokens past our count
    assert usage_ceiling(Usage(input_tokens=10), 8192, windows=3).input_tokens == 3 * 8192


# -- through the gateway -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BAD)
async def test_wrong_usage_bills_the_estimate_flagged_and_alerted(upstream: Callable[..., Any], tmp_path: Path,
                                                                  kind: str) -> None:
    server = upstream()
    request = TextRequest.chat(f"A tagline for a {kind} kettle.", max_tokens=50)
    async with gateway(server.base_url, tmp_path, kind) as gw:
        gen = await gw.generate(request, model=MODEL, tags={"team": "shop"})
        estimate_cost = gw.catalog.get(MODEL).cost(gen.estimate)
    assert gen.text and gen.usage == gen.estimate and gen.usage.estimated
    assert gen.cost_usd == pytest.approx(estimate_cost) and 0 < gen.cost_usd < 1e-4
    rows, alerts = rows_and_alerts(tmp_path, server.base_url)
    assert len(rows) == server.stats()["requests"] == 1
    (row,) = rows
    assert (row.outcome, row.flagged, row.error_type) == ("ok", True, None)
    assert row.usage is not None and row.usage.estimated and row.usage.total_tokens == gen.estimate.total_tokens
    assert row.cost_usd == pytest.approx(estimate_cost) == pytest.approx(row.reserved_usd)
    assert row.vendor_usage is not None and SHOWN[kind] in row.vendor_usage
    assert row.tags["team"] == "shop" and row.tags["usage_problem"]
    assert alerts == ["usage_rejected"]


async def test_a_valid_usage_is_billed_as_reported(upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    async with gateway(server.base_url, tmp_path) as gw:
        gen = await gw.generate(TextRequest.chat("A tagline for a kettle.", max_tokens=50), model=MODEL)
    stats = server.stats()
    assert not gen.usage.estimated
    assert (gen.usage.input_tokens, gen.usage.output_tokens) == (stats["input_tokens"], stats["output_tokens"])
    assert gen.cost_usd == pytest.approx((gen.usage.input_tokens * 0.15 + gen.usage.output_tokens * 0.6) / 1e6)
    rows, alerts = rows_and_alerts(tmp_path, server.base_url)
    (row,) = rows
    assert not row.flagged and row.vendor_usage is None and row.usage == gen.usage and alerts == []


async def test_an_unusable_answer_with_usage_is_billed_once_and_not_retried(upstream: Callable[..., Any],
                                                                            tmp_path: Path) -> None:
    server = upstream()
    async with gateway(server.base_url, tmp_path, "empty-choices", max_retries=3) as gw:
        with pytest.raises(UnusableAnswer) as failed:
            await gw.generate(TextRequest.chat("A tagline for a kettle.", max_tokens=50), model=MODEL)
    assert isinstance(failed.value, MalformedResponse) and not failed.value.retryable
    message = str(failed.value)
    assert "vendor's answer cannot be used" in message and "billed" in message and "invalid input" not in message
    stats = server.stats()
    rows, alerts = rows_and_alerts(tmp_path, server.base_url)
    assert len(rows) == stats["requests"] == 1
    (row,) = rows
    assert (row.outcome, row.error_type, row.flagged, row.retries) == ("error", "UnusableAnswer", False, 0)
    assert row.usage == Usage(input_tokens=stats["input_tokens"], output_tokens=stats["output_tokens"])
    assert row.cost_usd > 0
    assert row.cost_usd == pytest.approx((stats["input_tokens"] * 0.15 + stats["output_tokens"] * 0.6) / 1e6)
    assert alerts == []


@pytest.mark.parametrize("kind", ["huge", "text"])
async def test_a_streams_wrong_final_usage_bills_the_estimate(upstream: Callable[..., Any], tmp_path: Path,
                                                              kind: str) -> None:
    server = upstream()
    async with gateway(server.base_url, tmp_path, kind) as gw:
        stream = await gw.stream(TextRequest.chat("A tagline for a kettle.", max_tokens=50), model=MODEL)
        gen = await stream.collect()
        estimate_cost = gw.catalog.get(MODEL).cost(gen.estimate)
    assert gen.text and gen.usage == gen.estimate and gen.cost_usd == pytest.approx(estimate_cost)
    rows, alerts = rows_and_alerts(tmp_path, server.base_url)
    assert len(rows) == server.stats()["requests"] == 1
    (row,) = rows
    assert row.outcome == "ok" and row.flagged and row.vendor_usage and SHOWN[kind] in row.vendor_usage
    assert row.cost_usd == pytest.approx(estimate_cost) and alerts == ["usage_rejected"]


async def test_embeddings_check_the_vendors_usage_too(upstream: Callable[..., Any], tmp_path: Path) -> None:
    server = upstream()
    request = EmbeddingRequest(("a bamboo board", "a steel kettle"))
    async with gateway(server.base_url, tmp_path, "negative") as gw:
        gen = await gw.embed(request, model=EMBEDDER)
        estimate_cost = gw.catalog.get(EMBEDDER).cost(gen.estimate)
    async with gateway(server.base_url, tmp_path, "empty-choices") as gw:
        with pytest.raises(UnusableAnswer):
            await gw.embed(EmbeddingRequest(("an oak spoon",)), model=EMBEDDER)
    assert gen.vectors and len(gen.vectors) == 2 and gen.usage == gen.estimate and gen.cost_usd > 0
    rows, alerts = rows_and_alerts(tmp_path, server.base_url)
    assert len(rows) == server.stats()["requests"] == 2
    flagged = next(r for r in rows if r.outcome == "ok")
    assert flagged.flagged and flagged.cost_usd == pytest.approx(estimate_cost)
    assert flagged.vendor_usage and '"prompt_tokens":-' in flagged.vendor_usage
    unusable = next(r for r in rows if r.outcome == "error")
    assert not unusable.flagged and unusable.usage is not None and unusable.cost_usd > 0
    assert alerts == ["usage_rejected"]


async def test_a_huge_usage_never_pushes_a_hard_budget_past_its_limit(upstream: Callable[..., Any],
                                                                      tmp_path: Path) -> None:
    server = upstream()
    settings = settings_for(server.base_url, tmp_path)
    limit = 0.0001  # about three calls at their reserved estimate
    with LedgerStore(settings_url(settings)) as store:
        store.set_budget(Budget(scope_key="team", scope_value="shop", period="day", limit_usd=limit))
    billed = 0.0
    async with gateway(server.base_url, tmp_path, "huge") as gw:
        with pytest.raises(BudgetExceeded):
            for i in range(20):
                gen = await gw.generate(TextRequest.chat(f"tagline {i}", max_tokens=50), model=MODEL,
                                        tags={"team": "shop"})
                billed += gen.cost_usd
    rows, _ = rows_and_alerts(tmp_path, server.base_url)
    paid = [r for r in rows if r.outcome == "ok"]
    assert len(paid) == server.stats()["requests"] >= 2 and all(r.flagged for r in paid)
    assert 0 < billed <= limit and sum(r.cost_usd for r in rows) == pytest.approx(billed)


# -- through the CLI -----------------------------------------------------------------------------------------


def run_cli(*args: str, base_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "contentmill.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def cli_rows() -> list[CallRecord]:
    with LedgerStore(settings_url(get_settings())) as store:
        return store.calls()


def test_cli_bills_an_unusable_answer_and_says_whose_fault_it_is(upstream: Callable[..., Any]) -> None:
    server = upstream(wrong_usage="empty-choices")
    done = run_cli("generate", "hi", "--model", MODEL, "--max-tokens", "50", "--json", base_url=server.base_url)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "vendor's answer cannot be used" in done.stderr and "invalid input" not in done.stderr
    stats = server.stats()
    (row,) = cli_rows()
    assert stats["requests"] == 1 and row.outcome == "error" and row.cost_usd > 0


def test_cli_bills_the_estimate_for_a_negative_usage(upstream: Callable[..., Any]) -> None:
    server = upstream(wrong_usage="negative")
    done = run_cli("generate", "hi", "--model", MODEL, "--max-tokens", "50", "--json", base_url=server.base_url)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "cannot be negative" not in done.stderr
    data = json.loads(done.stdout)
    assert data["usage"] == data["estimate"] and data["usage"]["estimated"] is True
    assert data["cost_usd"] == pytest.approx((data["estimate"]["input_tokens"] * 0.15 + 50 * 0.6) / 1e6)
    (row,) = cli_rows()
    assert server.stats()["requests"] == 1 and row.flagged and row.vendor_usage and "-" in row.vendor_usage
    assert row.cost_usd == pytest.approx(data["cost_usd"])


def test_a_usage_block_holding_a_credential_is_not_kept() -> None:
    record = CallRecord(model=MODEL, api_type="text", estimate=Usage(input_tokens=5, output_tokens=9), outcome="ok")
    secret = "sk-" + "a1B2c3D4" * 4
    block = reported_usage({"prompt_tokens": secret, "completion_tokens": 1})
    assert block is not None and block.problem is not None
    flagged = record.usage_rejected(block.figures, block.problem)
    assert flagged.flagged and secret not in str(flagged.tags) and "withheld" in (flagged.vendor_usage or "")
