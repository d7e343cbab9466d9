"""Published prices, user overrides, LiteLLM price files, and the refusal to bill an unpriced model at 0."""

import json
from pathlib import Path

import pytest

from contentmill.catalog import builtin_catalog, load_catalog
from contentmill.errors import ConfigError, UnknownModel, UnpricedModel
from contentmill.metering import Usage

# USD per 1M tokens (input, cached input, output) as published by each vendor.
PUBLISHED = {
    "openai:gpt-4o": (2.50, 1.25, 10.00),
    "openai:gpt-4o-mini": (0.15, 0.075, 0.60),
    "openai:gpt-4.1-mini": (0.40, 0.10, 1.60),
    "deepseek:deepseek-chat": (0.28, 0.028, 0.42),
    "qwen:qwen-plus": (0.40, None, 1.20),
    "qwen:qwen-turbo": (0.05, None, 0.20),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_text_prices(name: str) -> None:
    info = builtin_catalog().get(name)
    assert (info.input_per_mtok, info.cached_input_per_mtok, info.output_per_mtok) == PUBLISHED[name]
    assert info.context_window and info.context_window >= 128_000


def test_cost_of_a_call() -> None:
    catalog = builtin_catalog()
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert catalog.cost("openai:gpt-4o-mini", usage) == pytest.approx(0.75)
    # cached input is billed at the cached price
    cached = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=0)
    assert catalog.cost("openai:gpt-4o", cached) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)
    assert catalog.cost("openai:gpt-4o", Usage(input_tokens=1000), batch=True) == pytest.approx(0.00125)


def test_speech_is_billed_per_character() -> None:
    assert builtin_catalog().cost("openai:tts-1", Usage(characters=2000, seconds=9.0)) == pytest.approx(0.03)


def test_local_engines_cost_nothing() -> None:
    catalog = builtin_catalog()
    assert catalog.cost("local:gemma-3-270m", Usage(input_tokens=10**6, output_tokens=10**6)) == 0
    assert catalog.cost("local:espeak-ng", Usage(characters=10**6)) == 0


def test_a_model_without_a_price_is_refused_not_billed_at_zero() -> None:
    catalog = builtin_catalog()
    with pytest.raises(UnpricedModel, match="CONTENTMILL_CATALOG_FILE"):
        catalog.cost("openai:gpt-9-preview", Usage(input_tokens=1))
    with pytest.raises(UnknownModel, match="provider:model"):
        catalog.get("nosuchvendor:model")
    with pytest.raises(UnknownModel):
        catalog.get("gpt-4o")


def test_user_file_prices_a_model_or_marks_it_free(tmp_path: Path) -> None:
    user = tmp_path / "catalog.yaml"
    user.write_text(
        "providers:\n  vllm:\n    base_url: http://127.0.0.1:8000/v1\n    api_key_env: null\n"
        "models:\n"
        "  openai:gpt-9-preview: {input_per_mtok: 1.0, output_per_mtok: 2.0}\n"
        "  vllm:qwen2.5-7b: {free: true, context_window: 32768}\n"
        "  openai:gpt-4o-mini: {output_per_mtok: 0.5}\n"
    )
    catalog = load_catalog(user)
    assert catalog.cost("openai:gpt-9-preview", Usage(input_tokens=10**6, output_tokens=10**6)) == 3.0
    assert catalog.cost("vllm:qwen2.5-7b", Usage(input_tokens=5)) == 0.0
    assert catalog.provider("vllm").kind == "openai_compat"
    mini = catalog.get("openai:gpt-4o-mini")
    assert (mini.input_per_mtok, mini.output_per_mtok) == (0.15, 0.5)  # merged field by field


def test_litellm_price_file(tmp_path: Path) -> None:
    prices = {
        "sample_spec": {"input_cost_per_token": 0},
        "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2e-7,
                        "output_cost_per_token": 8e-7, "max_input_tokens": 128000, "max_output_tokens": 16384},
        "deepseek/deepseek-reasoner": {"litellm_provider": "deepseek", "mode": "chat",
                                       "input_cost_per_token": 5.5e-7, "output_cost_per_token": 2.19e-6},
        "tts-1-hd": {"litellm_provider": "openai", "mode": "audio_speech", "input_cost_per_character": 3e-5},
    }
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps(prices))
    catalog = load_catalog(path)
    assert catalog.get("openai:gpt-4o-mini").input_per_mtok == pytest.approx(0.2)
    assert catalog.get("openai:gpt-4o-mini").quality == builtin_catalog().get("openai:gpt-4o-mini").quality
    assert catalog.get("deepseek:deepseek-reasoner").output_per_mtok == pytest.approx(2.19)
    hd = catalog.get("openai:tts-1-hd")
    assert hd.modality == "speech" and hd.per_mchar == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("models:\n  gpt-4o: {free: true}\n", "provider:model"),
        ("models:\n  acme:x: {free: true}\n", "provider that is not defined"),
        ("models:\n  openai:x: {price: 3}\n", "unknown fields"),
        ("- just a list\n", "mapping"),
        ("models: [\n", "cannot be parsed"),
    ],
)
def test_bad_user_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_catalog(path)


def test_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog(tmp_path / "nope.yaml")
