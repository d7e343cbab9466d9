"""Live statistics from real calls through the gateway shift the ranking when a model degrades, and the gateway's
health removes a model in cooldown from the candidates."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from routing_helpers import GPT4O, MINI, settings_for, two_model_config

from contentmill.errors import ProviderUnavailable
from contentmill.gateway import Gateway
from contentmill.requests import TextRequest
from contentmill.routing import Router
from contentmill.testing.harness import Upstream

# Quality-heavy weights, so that on catalog priors gpt-4o (quality 0.90) ranks above gpt-4o-mini (0.78).
WEIGHTS = {"quality": 0.6, "latency": 0.1, "stability": 0.3}


def ask(i: int) -> TextRequest:
    return TextRequest.chat(f"Name a color, number {i}.", max_tokens=8)


async def test_a_model_that_turns_slow_and_failing_drops_in_the_ranking(upstream: Callable[..., Upstream]) -> None:
    config = two_model_config(prior_calls=5, weights=WEIGHTS)
    healthy = upstream()
    async with Gateway(settings_for(healthy.base_url)) as gw:
        router = Router(gw.catalog, gw.store, config)  # no health: only the statistics move the ranking
        assert [c.model for c in router.rank(config.tier_models("standard"))] == [GPT4O, MINI]
        for i in range(10):
            for model in (GPT4O, MINI):
                await gw.generate(ask(i), model=model)
        gw.ledger.flush()
        router.refresh()
        ranked = router.rank(config.tier_models("standard"))
        assert [c.model for c in ranked] == [GPT4O, MINI]
        assert router.live[GPT4O].calls == 10 and router.live[GPT4O].errors == 0
        assert ranked[0].samples["calls"] == 10

    degraded = upstream(error_rate=1.0, latency_ms=50)  # the same model names, now slow and failing
    async with Gateway(settings_for(degraded.base_url)) as gw:
        for i in range(10):
            with pytest.raises(ProviderUnavailable):
                await gw.generate(ask(100 + i), model=GPT4O)
        gw.ledger.flush()
        router = Router(gw.catalog, gw.store, config)
        router.refresh()
        live = router.live[GPT4O]
        assert (live.calls, live.errors, live.useful) == (20, 10, 10)
        assert live.p99_latency_s is not None and live.p99_latency_s >= 0.05
        ranked = router.rank(config.tier_models("standard"))
        assert [c.model for c in ranked] == [MINI, GPT4O]
        assert ranked[1].raw["error_rate"] == pytest.approx((5 * 0.02 + 20 * 0.5) / 25)
        assert ranked[1].contributions["stability"] < ranked[0].contributions["stability"]

        # The gateway's health put gpt-4o in cooldown after three failures: the router skips it outright.
        with_health = Router.for_gateway(gw, two_model_config(prior_calls=5))
        with_health.refresh()
        decision = with_health.choose("chat", "en", weights=WEIGHTS)
        assert decision.model == MINI and decision.fallbacks == ()
        cooling = next(c for c in decision.candidates if c.model == GPT4O)
        assert cooling.excluded is not None and "cooling down" in cooling.excluded
        assert "skipped in cooldown: openai:gpt-4o" in decision.reason
