"""Budget pressure moves only low-priority work (and defers it near the limit), each downgrade logged and recorded;
the quality floor picks the cheapest model whose scores clear it with confidence, and reports the saving."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from routing_helpers import GPT4O, MINI, settings_for
from typer.testing import CliRunner

from contentmill.catalog import builtin_catalog
from contentmill.cli import app
from contentmill.errors import RouteDeferred, RoutingError
from contentmill.gateway import Gateway
from contentmill.ids import new_id
from contentmill.ledger import Budget, CallRecord, LedgerStore, settings_url
from contentmill.ledger.records import utcnow
from contentmill.ledger.schema import quality_scores, route_decisions
from contentmill.metering import Usage
from contentmill.requests import TextRequest
from contentmill.routing import Router, RoutingConfig
from contentmill.routing.stats import prior_cost
from contentmill.testing.harness import Upstream

MID = "openai:gpt-4.1-mini"
TIERS = {"premium": (GPT4O,), "standard": (MID,), "light": (MINI,)}


def spend(store: LedgerStore, usd: float) -> None:
    """Money already spent by team shop today, as the gateway would have recorded it."""
    store.write_calls([CallRecord(model=GPT4O, api_type="text", outcome="ok", estimate=Usage(output_tokens=10),
                                  usage=Usage(input_tokens=10, output_tokens=10), cost_usd=usd,
                                  tags={"team": "shop"})])


async def test_a_nearly_spent_budget_moves_only_low_priority_work(
    upstream: Callable[..., Upstream], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(upstream().base_url)
    with LedgerStore(settings_url(settings)) as store:
        store.set_budget(Budget("team", "shop", "day", limit_usd=1.0))
        spend(store, 0.85)
    config = RoutingConfig(tiers=TIERS, default_tier="premium", refresh_s=3600)
    request = TextRequest.chat("Describe a mug.", max_tokens=8)
    async with Gateway(settings) as gw:
        router = Router.for_gateway(gw, config)
        served = {}
        with caplog.at_level(logging.WARNING, logger="contentmill.routing"):
            for priority in ("low", "normal", "high"):
                gen, decision = await router.generate(gw, request, priority=priority, tags={"team": "shop"})
                served[priority] = (gen.model, decision.tier, decision.downgraded_from)
        assert served == {"low": (MID, "standard", "premium"), "normal": (GPT4O, "premium", None),
                          "high": (GPT4O, "premium", None)}
        assert [r.getMessage() for r in caplog.records] == [
            "routing: downgraded low-priority work from premium to standard: team=shop per day 85% spent "
            "(downgrades at 80%)"]
        # Other teams' work is not under this budget's pressure.
        assert router.choose(priority="low", tags={"team": "ads"}).tier == "premium"

        spend(gw.store, 0.11)  # 96% spent
        router.refresh()
        with pytest.raises(RouteDeferred, match="deferred low-priority work: team=shop per day 96% spent"):
            await router.generate(gw, request, priority="low", tags={"team": "shop"})
        assert router.choose(priority="normal", tags={"team": "shop"}).tier == "standard"
        assert router.choose(priority="high", tags={"team": "shop"}).tier == "premium"

        assert router.flush() == 4
        router.close()
        rows = gw.store.rows(sa.select(route_decisions.c.priority, route_decisions.c.chosen_model,
                                       route_decisions.c.tier, route_decisions.c.downgraded_from)
                             .order_by(route_decisions.c.ts), "read decisions")
    assert [tuple(r.values()) for r in rows] == [
        ("low", MID, "standard", "premium"), ("normal", GPT4O, "premium", None), ("high", GPT4O, "premium", None),
        ("low", "(deferred)", "premium", None)]


def scores(model: str, values: list[float], template: str | None = None) -> list[dict[str, Any]]:
    return [{"id": new_id(), "ts": utcnow(), "call_id": None, "model": model, "template_version": template,
             "scorer": "rubric", "score": v, "tags": {}} for v in values]


def write_quality_scores(store: LedgerStore, rows: list[dict[str, Any]]) -> None:
    with store.transaction("write quality scores") as conn:
        conn.execute(quality_scores.insert(), rows)


def test_the_quality_floor_picks_the_cheapest_model_that_clears_it_with_confidence() -> None:
    with LedgerStore(settings_url(settings_for("http://127.0.0.1:9/v1"))) as store:
        write_quality_scores(store, [
            *scores(GPT4O, [0.93, 0.95] * 10),
            *scores(MID, [0.85, 0.89] * 10),
            *scores(MINI, [0.80, 0.90] * 10),  # its mean is the floor, its lower bound is not
            *scores("qwen:qwen-turbo", [0.99]),  # one score: no interval, never chosen
        ])
        router = Router(builtin_catalog(), store, RoutingConfig())
        router.refresh()
        choice = router.quality_floor(0.85, confidence=0.95)
        assert choice.chosen.model == MID and choice.best.model == GPT4O
        assert choice.chosen.lower is not None and 0.85 <= choice.chosen.lower < 0.87
        mini = next(a for a in choice.arms if a.model == MINI)
        assert mini.mean == pytest.approx(0.85) and not mini.meets_floor
        config = router.config
        expected = prior_cost(builtin_catalog().get(GPT4O), config) - prior_cost(builtin_catalog().get(MID), config)
        assert choice.saving_usd_per_output == pytest.approx(expected)
        assert choice.saving_share == pytest.approx(expected / prior_cost(builtin_catalog().get(GPT4O), config))
        assert choice.as_dict()["chosen"]["model"] == MID
        text = CliRunner().invoke(app, ["route", "floor", "0.85"])
        assert text.exit_code == 0 and "[bold]" not in text.stdout and MID in text.stdout and "saves $" in text.stdout
        done = CliRunner().invoke(app, ["route", "floor", "0.85", "--json"])
        assert done.exit_code == 0, done.output
        data = json.loads(done.stdout)
        assert (data["chosen"]["model"], data["best"]["model"]) == (MID, GPT4O) and data["saving_usd_per_output"] > 0
        missed = CliRunner().invoke(app, ["route", "floor", "0.99"])
        assert missed.exit_code == 1 and "no model meets the quality floor" in missed.output

        # Per template version: a better template lets the cheapest model clear the floor.
        write_quality_scores(store, scores(MINI, [0.95, 0.97] * 5, template="describe@2"))
        by_template = router.quality_floor(0.85, by_template=True)
        assert (by_template.chosen.model, by_template.chosen.template_version) == (MINI, "describe@2")

        with pytest.raises(RoutingError, match=r"no model meets the quality floor 0.99 .*openai:gpt-4o: 0\.9"):
            router.quality_floor(0.99)
        # With template versions, the cheap model's better template is also the best measured arm: nothing to save.
        done = CliRunner().invoke(app, ["route", "floor", "0.85", "--by-template", "--json"])
        data = json.loads(done.stdout)
        assert data["chosen"] == data["best"] and data["chosen"]["template_version"] == "describe@2"
        assert data["saving_share"] == 0
