"""A/B experiments against the fake upstream: a planted 30% token difference between two template versions is
found significant, no difference is not; the split is deterministic; promotion pins the winner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scipy import stats as scipy_stats
from tuning_helpers import cli_env

from contentmill.errors import ExperimentError
from contentmill.experiments import (
    Experiment,
    ExperimentStore,
    TrialRequest,
    assign,
    parse_arms,
    parse_split,
    promoted_library,
    request_hash,
    run_trials,
    status,
    welch,
)
from contentmill.experiments.store import Metric
from contentmill.gateway import Gateway
from contentmill.ledger.store import LedgerStore, settings_url
from contentmill.prompts import TemplateLibrary
from contentmill.quality import FinishedScorer
from contentmill.settings import Settings

MODEL = "openai:gpt-4o-mini"
PRODUCTS = [TrialRequest({"product": f"Trail bottle no. {i}", "facts": f"steel, {300 + 10 * i} ml, {i % 5} colours"})
            for i in range(120)]


def test_welch_matches_a_worked_example_and_scipy() -> None:
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    result = welch(a, b)
    assert result is not None
    assert result.t == pytest.approx(-2.46, abs=0.005)  # Welch (1947)-style textbook example: t = -2.46
    assert result.df == pytest.approx(24.99, abs=0.01)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert result.p == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.ci_low < result.diff < result.ci_high < 0
    assert welch([1.0], [2.0, 3.0]) is None
    exact = welch([2.0, 2.0], [2.0, 2.0])
    assert exact is not None and exact.p == 1.0


def test_the_split_is_deterministic_and_follows_the_shares() -> None:
    hashes = [request_hash({"product": f"p{i}"}) for i in range(4000)]
    first = [assign("exp", h, {"a": 30.0, "b": 70.0}) for h in hashes]
    assert first == [assign("exp", h, {"a": 30.0, "b": 70.0}) for h in hashes]
    assert 0.27 < first.count("a") / len(first) < 0.33
    other = [assign("another", h, {"a": 30.0, "b": 70.0}) for h in hashes]
    assert other != first  # experiments split independently
    assert request_hash({"a": 1, "b": 2}) == request_hash({"b": 2, "a": 1})


def test_arms_and_split_are_checked() -> None:
    arms = parse_arms("a=ab_line@1,b=ab_line@2+openai:gpt-4o")
    assert [(a.name, a.spec) for a in arms] == [("a", "ab_line@1"), ("b", "ab_line@2+openai:gpt-4o")]
    assert parse_split(None, arms) == {"a": 50.0, "b": 50.0}
    assert parse_split("20,80", arms) == {"a": 20.0, "b": 80.0}
    for bad in ("a=ab_line@1", "a=ab_line,b=ab_line@2", "a=x@1,a=x@2", "a:x@1,b=x@2"):
        with pytest.raises(ExperimentError):
            parse_arms(bad)
    with pytest.raises(ExperimentError, match="summing to 100"):
        parse_split("50,60", arms)


async def run_experiment(settings: Settings, name: str, arms: str, metric: Metric = "tokens",
                         score: bool = False) -> dict[str, Any]:
    library = TemplateLibrary.from_settings(settings)
    parsed = parse_arms(arms)
    async with Gateway(settings) as gateway:
        store = ExperimentStore(gateway.store)
        experiment = store.start(Experiment(name, parsed, parse_split(None, parsed), metric=metric), library)
        trials = await run_trials(gateway, library, experiment, PRODUCTS, model=MODEL,
                                  scorer=FinishedScorer() if score else None)
        assert len(trials) == len(PRODUCTS)
        assert {t.arm for t in trials} == {"a", "b"}
        for trial, request in zip(trials, PRODUCTS, strict=True):  # each request went to the arm its hash says
            assert trial.request == request_hash(request.variables)
            assert trial.arm == assign(name, trial.request, experiment.split)
        return status(store, name).as_dict()


async def test_a_planted_30_percent_token_difference_is_significant(settings: Settings) -> None:
    result = await run_experiment(settings, "shorter-line", "a=ab_line@1,b=ab_line@2")
    arms = {a["arm"]: a for a in result["arms"]}
    assert arms["a"]["calls"] + arms["b"]["calls"] == len(PRODUCTS)
    assert min(arms["a"]["calls"], arms["b"]["calls"]) >= 40
    growth = arms["b"]["tokens_mean"] / arms["a"]["tokens_mean"] - 1
    assert 0.25 < growth < 0.35  # the planted difference, measured from the ledger
    assert result["leader"] == "a" and result["runner_up"] == "b"
    assert result["significant"] is True and result["welch"]["p"] < 0.001
    assert result["welch"]["ci_high"] < 0  # a - b: a needs fewer tokens, the interval leaves out 0
    assert arms["a"]["cost_mean_usd"] < arms["b"]["cost_mean_usd"]
    assert "arm a wins on tokens" in result["verdict"]


async def test_no_difference_is_not_significant(settings: Settings) -> None:
    result = await run_experiment(settings, "same-line", "a=ab_line@1,b=ab_line@3", score=True)
    arms = {a["arm"]: a for a in result["arms"]}
    assert min(arms["a"]["calls"], arms["b"]["calls"]) >= 40
    assert result["significant"] is False and result["welch"]["p"] > 0.05
    assert result["welch"]["ci_low"] < 0 < result["welch"]["ci_high"]
    assert "no significant difference" in result["verdict"]
    assert arms["a"]["quality_n"] == arms["a"]["calls"] and arms["a"]["quality_mean"] == 1.0


async def test_promotion_pins_the_winning_version(settings: Settings) -> None:
    await run_experiment(settings, "pin-me", "a=ab_line@1,b=ab_line@2")
    with LedgerStore(settings_url(settings)) as ledger:
        store = ExperimentStore(ledger)
        assert promoted_library(settings, ledger).get("ab_line").version == "3"  # highest while nothing is promoted
        stopped = store.stop("pin-me", winner="a")
        assert (stopped.state, stopped.winner) == ("promoted", "a")
        assert promoted_library(settings, ledger).get("ab_line").version == "1"
        with pytest.raises(ExperimentError, match="already promoted"):
            store.stop("pin-me")
        with pytest.raises(ExperimentError, match="already exists"):
            store.start(store.get("pin-me"))
        with pytest.raises(ExperimentError, match="no experiment named 'nope'"):
            store.get("nope")


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    code = "from contentmill.commands.experiment import experiment_app; experiment_app()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=cli_env(settings),
                          timeout=180, check=False)


def test_the_experiment_commands(settings: Settings, tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(json.dumps(dict(r.variables)) for r in PRODUCTS[:80]), encoding="utf-8")
    started = cli(settings, "start", "cli-exp", "--arms", "a=ab_line@1,b=ab_line@2", "--split", "50,50", "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["arms"] == {"a": "ab_line@1", "b": "ab_line@2"}
    refused = cli(settings, "start", "bad", "--arms", "a=ab_line@1,b=ab_line@9")
    assert refused.returncode == 1 and "has no version '9'" in refused.stderr
    ran = cli(settings, "run", "cli-exp", str(requests), "--model", MODEL, "--json")
    assert ran.returncode == 0, ran.stderr
    shown = json.loads(cli(settings, "status", "cli-exp", "--json").stdout)
    assert shown == json.loads(ran.stdout)
    assert sum(a["calls"] for a in shown["arms"]) == 80 and shown["significant"] is True
    stopped = cli(settings, "stop", "cli-exp", "--promote", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["winner"] == "a"
    listed = subprocess.run(
        [sys.executable, "-c", "from contentmill.commands.prompts import prompts_app; prompts_app()", "list",
         "--json"], capture_output=True, text=True, env=cli_env(settings), timeout=120, check=True)
    assert json.loads(listed.stdout)["pins"] == {"ab_line": "1"}
