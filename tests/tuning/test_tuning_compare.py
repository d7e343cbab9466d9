"""``contentmill compare`` against the fake upstream with three models: the per-model table and the chart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tuning_helpers import PRICES, cli_env

from contentmill.errors import ConfigError
from contentmill.experiments.compare import compare_models, percentile, read_prompts
from contentmill.gateway import Gateway
from contentmill.ledger.store import LedgerStore, settings_url
from contentmill.providers.fake import fake_reply
from contentmill.settings import Settings
from contentmill.testing.upstream import ModelProfile, verbose_reply

MODELS = ["openai:model-a", "openai:model-b", "openai:model-c"]
PROMPTS = ["Describe a walnut desk lamp.", "Name three uses of bamboo.", "Write a tagline for a steel bottle.",
           "Explain what a volcano is to a child.", "Suggest a name for a bakery in Lisbon."]
CODE = "import typer; from contentmill.commands.compare import compare; typer.run(compare)"


def test_percentiles_and_prompt_files(tmp_path: Path) -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([1.0] * 99 + [101.0], 99) == pytest.approx(2.0)
    assert percentile([], 50) is None
    text = tmp_path / "prompts.txt"
    text.write_text("First prompt\non two lines\n---\nSecond\n---\n\n", encoding="utf-8")
    assert [r.messages[-1].content for r in read_prompts(str(text))] == ["First prompt\non two lines", "Second"]
    rows = tmp_path / "prompts.jsonl"
    rows.write_text('{"prompt": "a", "max_tokens": 9}\n{"prompt": "b", "system": "s"}\n', encoding="utf-8")
    first, second = read_prompts(str(rows), max_tokens=50)
    assert (first.max_tokens, second.max_tokens, second.messages[0].content) == (9, 50, "s")
    assert read_prompts("just a prompt")[0].messages[-1].content == "just a prompt"


def test_model_profiles_of_the_fake_upstream() -> None:
    assert ModelProfile.parse("gpt-4o=120:1.4") == ModelProfile("gpt-4o", 120.0, 1.4)
    assert ModelProfile.parse("m=:0.5") == ModelProfile("m", None, 0.5)
    for bad in ("gpt-4o", "=1:2", "m=fast:2", "m=10:0", "m=-1:1"):
        with pytest.raises(ConfigError):
            ModelProfile.parse(bad)
    short, _ = verbose_reply("Describe a lamp.", 500, 0, "o200k_base", 0.5)
    plain, _ = fake_reply("Describe a lamp.", 500, 0, "o200k_base")
    long, _ = verbose_reply("Describe a lamp.", 500, 0, "o200k_base", 2.0)
    words = len(plain.split(" "))
    assert len(short.split(" ")) == max(1, round(words * 0.5)) and len(long.split(" ")) == round(words * 2.0)


def test_compare_command_reports_each_model_and_writes_the_chart(settings: Settings, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n---\n".join(PROMPTS), encoding="utf-8")
    chart = tmp_path / "out" / "chart.png"
    done = subprocess.run(
        [sys.executable, "-c", CODE, str(prompts), "--models", ",".join(MODELS), "--runs", "2", "--max-tokens", "60",
         "--chart", str(chart), "--json"], capture_output=True, text=True, env=cli_env(settings), timeout=180,
        check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {m["model"]: m for m in report["models"]}
    assert list(rows) == MODELS and report["runs"] == 2 and report["prompts"] == len(PROMPTS)
    for row in rows.values():
        assert row["calls"] == 2 * len(PROMPTS) and row["errors"] == 0
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0
        assert 0.0 <= row["quality"] <= 1.0
        assert 0 <= row["latency_ms_p50"] <= row["latency_ms_p99"]
        prices = PRICES[row["model"]]
        expected = (row["input_tokens"] * prices["input_per_mtok"]
                    + row["output_tokens"] * prices["output_per_mtok"]) / 1e6
        assert row["cost_usd"] == pytest.approx(expected, rel=1e-6)
    a, b, c = (rows[m] for m in MODELS)
    assert a["input_tokens"] == b["input_tokens"] == c["input_tokens"]  # the same prompts
    assert c["output_tokens"] < a["output_tokens"] < b["output_tokens"]  # the profiles' verbosity
    assert b["latency_ms_p50"] > c["latency_ms_p50"]  # 40 ms against 0 ms of upstream latency
    assert report["baseline"] == "openai:model-b" and b["tokens_diff_pct"] == 0.0  # the cheapest
    total = {m: r["input_tokens"] + r["output_tokens"] for m, r in rows.items()}
    assert a["tokens_diff_pct"] == pytest.approx(100 * (total[MODELS[0]] / total[MODELS[1]] - 1), abs=0.01)
    assert c["tokens_diff_pct"] < a["tokens_diff_pct"] < 0  # fewer tokens than the verbose baseline
    assert b["quality"] <= a["quality"]  # longer answers hit the 60-token limit more often
    assert report["chart"] == str(chart)
    with Image.open(chart) as image:
        image.verify()
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.size == (900, 560)
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 3  # points in several colours


async def test_an_unpriced_model_is_refused_before_anything_is_paid(settings: Settings) -> None:
    from contentmill.errors import UnpricedModel

    async with Gateway(settings) as gateway:
        with pytest.raises(UnpricedModel):
            await compare_models(gateway, read_prompts("hi"), ["openai:model-a", "openai:no-such-model"])
    with LedgerStore(settings_url(settings)) as store:
        assert store.count_calls() == 0


async def test_chosen_quality_grades_are_recorded_for_the_router(settings: Settings) -> None:
    import sqlalchemy as sa

    from contentmill.ledger.schema import quality_scores
    from contentmill.quality import FactsScorer

    async with Gateway(settings) as gateway:
        result = await compare_models(gateway, read_prompts("Name a river."), MODELS[:2], runs=3,
                                      scorer=FactsScorer(["sure"]), tags={"team": "tuning"}, record_quality=True)
    assert [m.quality for m in result.models] == [1.0, 1.0]
    with LedgerStore(settings_url(settings)) as store:
        rows = store.rows(sa.select(quality_scores), "read")
    assert sorted(r["model"] for r in rows) == [MODELS[0]] * 3 + [MODELS[1]] * 3
    assert all(r["scorer"] == "facts" and r["score"] == 1.0 for r in rows)
    assert all(r["tags"] == {"purpose": "compare", "team": "tuning"} for r in rows)
