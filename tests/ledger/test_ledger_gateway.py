"""What the gateway produces becomes ledger rows: a real Gateway with the packaged fake text model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contentmill.catalog import builtin_catalog
from contentmill.errors import UnpricedModel
from contentmill.gateway import Gateway
from contentmill.ledger import AlertEngine, CallRecord, LedgerStore, ModelUnpriced, report
from contentmill.metering import Usage
from contentmill.providers.fake import FakeTextModel
from contentmill.requests import TextRequest
from contentmill.settings import load_settings

PRICED_FAKE = {"models": {"fake:text": {"free": False, "input_per_mtok": 1.0, "output_per_mtok": 4.0}}}


async def test_generations_and_refusals_are_recorded_and_reported(store: LedgerStore, tmp_path: Path) -> None:
    catalog = builtin_catalog().merged(PRICED_FAKE, "test prices")
    tags = {"team": "ads", "project": "spring"}
    request = TextRequest.chat("Describe a walnut desk lamp in one sentence.", max_tokens=40)
    started = datetime.now(UTC)
    with AlertEngine(store, [ModelUnpriced()], sinks=[]) as engine:
        async with Gateway(
            load_settings(data_dir=tmp_path), catalog, models={"fake:text": FakeTextModel()}, ledger=store,
            alerts=engine,
        ) as gateway:
            generation = await gateway.generate(request, model="fake:text", tags=tags)
            with pytest.raises(UnpricedModel):
                await gateway.generate(request, model="openai:gpt-unlisted", tags=tags)
        engine.drain()

    result = report(store, "model", started - timedelta(seconds=1), datetime.now(UTC) + timedelta(seconds=1))
    rows = {row["model"]: row for row in result.rows}
    assert rows["fake:text"]["input_tokens"] == generation.usage.input_tokens
    assert rows["fake:text"]["output_tokens"] == generation.usage.output_tokens
    assert rows["fake:text"]["cost_usd"] == pytest.approx(generation.cost_usd) and generation.cost_usd > 0
    assert rows["openai:gpt-unlisted"]["refused"] == 1 and rows["openai:gpt-unlisted"]["cost_usd"] == 0.0
    refusal = next(r for r in store.calls() if r.model == "openai:gpt-unlisted")
    assert (refusal.outcome, refusal.error_type, refusal.cost_usd) == ("refused", "UnpricedModel", 0.0)
    assert refusal.tags == tags
    (alert,) = store.alerts()
    assert alert.rule == "model_unpriced" and alert.subject == "openai:gpt-unlisted"


def test_a_cache_hit_is_charged_nothing_and_keeps_its_saving() -> None:
    class Hit:
        model, cost_usd, latency_s, attempts, cached = "openai:gpt-4o", 0.0, 0.001, 1, True
        usage, estimate, tags = Usage(100, 50), Usage(100, 200, estimated=True), {"team": "ads"}

    record = CallRecord.from_generation(Hit(), api_type="text", cache_status="hit:redis", saved_usd=0.0125)
    assert (record.outcome, record.cost_usd, record.saved_usd, record.cache_status) == (
        "cached",
        0.0,
        0.0125,
        "hit:redis",
    )
    assert not record.charged
