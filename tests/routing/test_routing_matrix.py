"""The matrix on hand-made statistics: it ranks as its weights say, scores as its docstring states, and refuses
weights and routing files it cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest
from routing_helpers import stat

from contentmill.catalog import builtin_catalog
from contentmill.errors import ConfigError
from contentmill.routing import DIMENSIONS, RoutingConfig, SelectionMatrix, Weights, load_routing_config, rank
from contentmill.routing.stats import LiveStats, QualityStats, blend, blended, p99, prior_cost

# A: best quality, slow and dear. B: fast and cheap, mediocre. C: in between but unstable.
A = stat("x:a", quality=0.95, latency_p99_s=4.0, cost_per_output_usd=0.010)
B = stat("x:b", quality=0.60, latency_p99_s=1.0, cost_per_output_usd=0.001)
C = stat("x:c", quality=0.80, latency_p99_s=2.0, cost_per_output_usd=0.004, error_rate=0.5, sla_miss_rate=0.2)


def order(weights: Weights) -> list[str]:
    return [c.model for c in rank([A, B, C], weights, "chat", "en")]


@pytest.mark.parametrize(("weights", "expected"), [
    (Weights.of({"quality": 1}), ["x:a", "x:c", "x:b"]),
    (Weights.of({"latency": 1}), ["x:b", "x:c", "x:a"]),
    (Weights.of({"cost": 1}), ["x:b", "x:c", "x:a"]),
    (Weights.of({"stability": 1}), ["x:a", "x:b", "x:c"]),
    (Weights.of({"quality": 0.9, "cost": 0.1}), ["x:a", "x:c", "x:b"]),
    (Weights.of({"quality": 0.2, "cost": 0.8}), ["x:b", "x:c", "x:a"]),
])
def test_the_ranking_follows_the_weights(weights: Weights, expected: list[str]) -> None:
    assert order(weights) == expected


def test_each_score_is_the_documented_formula_and_contributions_sum_to_the_total() -> None:
    weights = Weights()
    ranked = {c.model: c for c in rank([A, B, C], weights, "chat", "en")}
    a, b, c = ranked["x:a"], ranked["x:b"], ranked["x:c"]
    assert a.scores["quality"] == 0.95
    assert a.scores["latency"] == pytest.approx(1.0 / 4.0) and b.scores["latency"] == 1.0
    assert a.scores["cost"] == pytest.approx((0.001 + 1e-6) / (0.010 + 1e-6)) and b.scores["cost"] == 1.0
    assert c.scores["stability"] == pytest.approx(0.5 * 0.8)
    for cand in (a, b, c):
        for d in DIMENSIONS:
            assert cand.contributions[d] == pytest.approx(getattr(weights, d) * cand.scores[d])
        assert cand.total == pytest.approx(sum(cand.contributions.values()))
    # Default weights: 0.3 q + 0.2 lat + 0.25 cost + 0.15 stab + 0.1 cov, by hand for B.
    assert b.total == pytest.approx(0.3 * 0.6 + 0.2 + 0.25 + 0.15 + 0.1)
    assert [x.model for x in rank([A, B, C], weights, "chat", "en")] == ["x:b", "x:a", "x:c"]


def test_coverage_scores_the_task_kind_and_language_a_model_claims() -> None:
    zh = stat("x:zh", languages=("zh",))
    silent = stat("x:any", languages=(), task_kinds=())
    only_coverage = Weights.of({"coverage": 1})
    ranked = {c.model: c.scores["coverage"] for c in rank([A, zh, silent], only_coverage, "chat", "zh")}
    assert ranked == {"x:zh": 1.0, "x:a": 0.5, "x:any": 0.5}
    assert [c.model for c in rank([A, zh], only_coverage, "chat", "zh")][0] == "x:zh"


def test_weights_are_normalized_and_bad_ones_are_refused_with_the_fix() -> None:
    assert Weights.of("quality=2,cost=2").as_dict() == {"quality": 0.5, "latency": 0.0, "cost": 0.5,
                                                        "stability": 0.0, "coverage": 0.0}
    assert sum(Weights().values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="non-negative"):
        Weights(quality=-0.1)
    with pytest.raises(ConfigError, match="at least one routing weight must be positive"):
        Weights.of({"quality": 0})
    with pytest.raises(ConfigError, match="unknown routing weights"):
        Weights.of({"speed": 1})
    with pytest.raises(ConfigError, match="NAME=NUMBER"):
        Weights.of("quality")


def test_the_matrix_memoizes_rankings_and_puts_unknown_models_last() -> None:
    matrix = SelectionMatrix({s.model: s for s in (A, B)}, {"x:speech": "a speech model"})
    ranked = matrix.rank(["x:speech", "x:a", "x:nope", "x:b"], Weights())
    assert [c.model for c in ranked] == ["x:b", "x:a", "x:speech", "x:nope"]
    assert [c.excluded for c in ranked[2:]] == ["a speech model", "not in the model catalog"]
    assert matrix.rank(["x:speech", "x:a", "x:nope", "x:b"], Weights()) is ranked


def test_priors_blend_with_live_statistics_by_sample_count() -> None:
    config = RoutingConfig(prior_calls=20, prior_scores=5)
    info = builtin_catalog().get("openai:gpt-4o")
    cold = blended(info, None, config)
    assert (cold.quality, cold.latency_p99_s, cold.error_rate) == (0.90, 4.0, 0.02)
    assert cold.cost_per_output_usd == pytest.approx(prior_cost(info, config))
    live = LiveStats("openai:gpt-4o", calls=20, errors=10, sla_misses=0, p99_latency_s=1.0, cost_usd=0.2, useful=10,
                     quality=QualityStats(5, 0.5, 0.1))
    warm = blended(info, live, config)
    assert warm.latency_p99_s == pytest.approx((20 * 4.0 + 20 * 1.0) / 40)
    assert warm.error_rate == pytest.approx((20 * 0.02 + 20 * 0.5) / 40)
    assert warm.quality == pytest.approx((5 * 0.90 + 5 * 0.5) / 10)
    assert warm.cost_per_output_usd == pytest.approx((20 * prior_cost(info, config) + 10 * 0.02) / 30)
    assert blend(1.0, 5, None, 0) == 1.0
    assert p99([float(i) for i in range(1, 101)]) == 99.0 and p99([3.0]) == 3.0


def test_a_routing_file_overrides_the_defaults_and_a_wrong_one_says_what_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "routing.toml"
    good.write_text('default_tier = "cheap"\ntier_order = ["cheap"]\n[tiers]\ncheap = ["openai:gpt-4o-mini"]\n'
                    '[weights]\nquality = 1\ncost = 1\n[[degradation]]\nat = 0.5\npriorities = ["low"]\n'
                    'action = "defer"\n')
    config = load_routing_config(good)
    assert config.tiers == {"cheap": ("openai:gpt-4o-mini",)} and config.weights.quality == 0.5
    assert config.degradation[0].action == "defer"
    yaml_file = tmp_path / "routing.yaml"
    yaml_file.write_text("tiers: {premium: [openai:gpt-4o]}\ntier_order: [premium]\ndefault_tier: premium\n")
    assert load_routing_config(yaml_file).tier_models("premium") == ("openai:gpt-4o",)
    bad = tmp_path / "bad.toml"
    bad.write_text('default_tier = "gold"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: .*\['gold'\] are named but not defined"):
        load_routing_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_routing_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown tier 'gold'"):
        RoutingConfig().tier_models("gold")
