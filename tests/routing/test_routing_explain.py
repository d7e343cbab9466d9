"""Every routed call's decision is in the ledger, and ``contentmill route explain`` finds it by the request id, the
call id or the decision id and shows each candidate's per-dimension contribution."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from routing_helpers import GPT4O, MINI, settings_for, two_model_config
from typer.testing import CliRunner

from contentmill.cli import app
from contentmill.gateway import Gateway
from contentmill.requests import TextRequest
from contentmill.routing import DIMENSIONS, Router
from contentmill.routing.store import ROUTE_TAG
from contentmill.testing.harness import Upstream

runner = CliRunner()


def explain(ident: str, *extra: str) -> Any:
    done = runner.invoke(app, ["route", "explain", ident, *extra])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout) if "--json" in extra else done.stdout


async def test_route_explain_shows_why_a_model_was_chosen(upstream: Callable[..., Upstream]) -> None:
    server = upstream()
    async with Gateway(settings_for(server.base_url)) as gw:
        with Router.for_gateway(gw, two_model_config()) as router:
            gen, decision = await router.generate(gw, TextRequest.chat("Say hi.", max_tokens=8), task_kind="chat",
                                                  tags={"team": "shop"})
        gw.ledger.flush()
        call = next(c for c in gw.store.calls() if c.tags.get(ROUTE_TAG) == decision.id)
    assert gen.model == decision.model == MINI and decision.fallbacks == (GPT4O,)
    assert gen.request_id and call.model == MINI

    by_request = explain(gen.request_id, "--json")
    assert explain(call.id, "--json") == by_request == explain(decision.id, "--json")
    assert by_request["chosen_model"] == MINI and by_request["request_hash"] == gen.request_id
    assert by_request["reason"] == decision.reason and "ranks first of tier standard" in decision.reason
    assert by_request["weights"] == pytest.approx(router.config.weights.as_dict())
    rows = {c["model"]: c for c in by_request["candidates"]}
    assert list(rows) == [MINI, GPT4O]
    for row in rows.values():
        assert set(row["contributions"]) == set(DIMENSIONS)
        assert sum(row["contributions"].values()) == pytest.approx(row["total"], abs=1e-5)
        for d in DIMENSIONS:
            assert row["contributions"][d] == pytest.approx(by_request["weights"][d] * row["scores"][d], abs=1e-5)
    assert rows[MINI]["total"] > rows[GPT4O]["total"]

    text = explain(gen.request_id)
    assert MINI in text and GPT4O in text and "reason:" in text and f"{rows[MINI]['total']:.3f}" in text

    missing = runner.invoke(app, ["route", "explain", "nope"])
    assert missing.exit_code == 1 and "no routing decision for 'nope'" in missing.output


def test_route_rank_ranks_a_tier_without_calling_anything() -> None:
    done = runner.invoke(app, ["route", "rank", "--tier", "premium", "--weights", "quality=1", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["chosen_model"] == GPT4O and data["tier"] == "premium"  # the highest quality prior
    assert data["weights"]["quality"] == 1.0
    bad = runner.invoke(app, ["route", "rank", "--tier", "gold"])
    assert bad.exit_code == 1 and "unknown tier 'gold'" in bad.output
