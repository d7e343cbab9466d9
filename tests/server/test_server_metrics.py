"""What /metrics counts for the model calls a server answers: calls, tokens, cost, latency, cache hits and what the
cache saved, each series by model and team (and outcome), added to on every call."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from contentmill.gateway import Generation
from contentmill.metering import Usage
from contentmill.server.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_each_call_adds_to_its_series_of_model_team_and_outcome() -> None:
    metrics = Metrics()
    paid = Generation(model="openai:gpt-4o-mini", usage=Usage(input_tokens=12, output_tokens=5), cost_usd=0.002,
                      estimate=Usage(), latency_s=0.1, tags={"team": "shop"})
    for _ in range(3):
        metrics.observe(paid, 0.2)
    metrics.observe(paid.as_hit(0.002, "memory", {"team": "shop"}), 0.001)
    metrics.observe(paid, 0.3, "error")
    metrics.observe(Generation(model="openai:gpt-4o-mini", usage=Usage(input_tokens=1), cost_usd=0.5,
                               estimate=Usage(), latency_s=0.1, tags={"team": "ads"}), 0.2)
    got = samples(metrics)
    shop = (("model", "openai:gpt-4o-mini"), ("team", "shop"))

    def value(name: str, *extra: tuple[str, str], labels: tuple[tuple[str, str], ...] = shop) -> float:
        return got[(name, tuple(sorted(labels + extra)))]

    assert value("contentmill_model_calls_total", ("outcome", "ok")) == 3
    assert value("contentmill_model_calls_total", ("outcome", "cached")) == 1
    assert value("contentmill_model_calls_total", ("outcome", "error")) == 1
    assert value("contentmill_tokens_total", ("direction", "input")) == 4 * 12  # the failed call's usage counts
    assert value("contentmill_tokens_total", ("direction", "output")) == 4 * 5
    assert abs(value("contentmill_cost_usd_total") - 4 * 0.002) < 1e-12
    assert abs(value("contentmill_cache_saved_usd_total") - 0.002) < 1e-12
    assert got[("contentmill_cache_hits_total", (("tier", "memory"),))] == 1
    assert value("contentmill_request_latency_seconds_count") == 5
    ads = (("model", "openai:gpt-4o-mini"), ("team", "ads"))
    assert value("contentmill_cost_usd_total", labels=ads) == 0.5  # another team: a series of its own
    assert value("contentmill_model_calls_total", ("outcome", "ok"), labels=ads) == 1
