"""The model catalog: who serves a model, what it costs per unit, its limits, and a prior on its quality.

The packaged ``data/catalog.yaml`` is merged with a user file (YAML in the same shape, or LiteLLM's
``model_prices_and_context_window.json``). A model without a price is refused, never billed at 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml

from contentmill.errors import ConfigError, UnknownModel, UnpricedModel
from contentmill.metering import Usage

Modality = Literal["text", "speech", "video", "image", "embedding"]
PER_MILLION = 1_000_000.0


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    kind: Literal["openai_compat", "local", "fake"]
    base_url: str | None = None
    base_url_env: str | None = None
    api_key_env: str | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # "provider:model"
    modality: Modality = "text"
    free: bool = False
    input_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    per_mchar: float | None = None
    per_second: float | None = None
    per_image: float | None = None
    batch_discount: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    quality: float = 0.5
    # Routing priors, used while the ledger holds few calls of the model: a typical P99 latency in seconds,
    # the languages (ISO 639-1) and task kinds it serves well (empty: no claim either way).
    latency_s: float | None = None
    languages: tuple[str, ...] = ()
    task_kinds: tuple[str, ...] = ()
    tokenizer: str = "cl100k_base"
    tokenizer_exact: bool = True
    as_of: str | None = None
    voices: tuple[str, ...] = ()  # a speech model's voice names, the first its default (what the studio offers)

    @property
    def provider(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def model_id(self) -> str:
        """The name the provider's API knows the model by."""
        return self.name.split(":", 1)[1]

    def missing_price(self) -> str | None:
        """Which price a call would need and the catalog lacks; None when the model can be billed."""
        if self.free:
            return None
        needed: dict[str, tuple[str, ...]] = {
            "text": ("input_per_mtok", "output_per_mtok"),
            "embedding": ("input_per_mtok",),
            "speech": ("per_mchar", "per_second"),
            "video": ("per_second",),
            "image": ("per_image",),
        }
        wanted = needed[self.modality]
        if self.modality == "speech":  # billed per character or per second: either price is enough
            return None if any(getattr(self, n) is not None for n in wanted) else "per-character"
        for name in wanted:
            if getattr(self, name) is None:
                return name.replace("_per_mtok", "").replace("_", " ") + " token"
        return None

    def cost(self, usage: Usage, *, batch: bool = False) -> float:
        """USD for ``usage``; raises UnpricedModel rather than guessing."""
        missing = self.missing_price()
        if missing:
            raise UnpricedModel(self.name, missing)
        if self.free:
            return 0.0
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_price = self.cached_input_per_mtok if self.cached_input_per_mtok is not None else self.input_per_mtok
        total = (
            (usage.input_tokens - cached) * (self.input_per_mtok or 0.0)
            + cached * (cached_price or 0.0)
            + usage.output_tokens * (self.output_per_mtok or 0.0)
            + usage.characters * (self.per_mchar or 0.0)
        ) / PER_MILLION
        if self.modality != "speech" or self.per_mchar is None:
            total += usage.seconds * (self.per_second or 0.0)
        total += usage.images * (self.per_image or 0.0)
        if batch and self.batch_discount:
            total *= 1.0 - self.batch_discount
        return total


_MODEL_FIELDS = {f.name for f in fields(ModelInfo)} - {"name"}
_PROVIDER_FIELDS = {f.name for f in fields(ProviderInfo)} - {"name"}


class Catalog:
    """Models and providers by name; the single place where 'provider:model' is resolved."""

    def __init__(self, providers: dict[str, ProviderInfo], models: dict[str, ModelInfo]) -> None:
        self.providers = providers
        self.models = models

    def provider(self, name: str) -> ProviderInfo:
        try:
            return self.providers[name]
        except KeyError:
            raise UnknownModel(name, list(self.models)) from None

    def get(self, name: str) -> ModelInfo:
        """The model's entry. A model of a known provider that the catalog lacks comes back unpriced."""
        if name in self.models:
            return self.models[name]
        provider, sep, model_id = name.partition(":")
        if not sep or not model_id or provider not in self.providers:
            raise UnknownModel(name, list(self.models))
        return ModelInfo(name=name)

    def cost(self, name: str, usage: Usage, *, batch: bool = False) -> float:
        return self.get(name).cost(usage, batch=batch)

    def merged(self, data: dict[str, Any], source: str) -> Catalog:
        """A new catalog with ``data`` (catalog-shaped: providers/models) laid over this one."""
        providers = dict(self.providers)
        for name, entry in (data.get("providers") or {}).items():
            base = providers.get(name)
            providers[name] = _provider(name, entry, base, source)
        models = dict(self.models)
        for name, entry in (data.get("models") or {}).items():
            if ":" not in name:
                raise ConfigError(f"{source}: model {name!r} must be named 'provider:model'")
            models[name] = _model(name, entry, models.get(name), source)
        for name in models:
            if name.split(":", 1)[0] not in providers:
                raise ConfigError(f"{source}: model {name!r} names a provider that is not defined")
        return Catalog(providers, models)


def _provider(name: str, entry: dict[str, Any], base: ProviderInfo | None, source: str) -> ProviderInfo:
    unknown = set(entry) - _PROVIDER_FIELDS
    if unknown:
        raise ConfigError(f"{source}: provider {name!r} has unknown fields {sorted(unknown)}")
    if base is None:
        if "kind" not in entry:
            entry = {"kind": "openai_compat", **entry}
        return ProviderInfo(name=name, **entry)
    return replace(base, **entry)


def _model(name: str, entry: dict[str, Any], base: ModelInfo | None, source: str) -> ModelInfo:
    unknown = set(entry) - _MODEL_FIELDS
    if unknown:
        raise ConfigError(
            f"{source}: model {name!r} has unknown fields {sorted(unknown)}; known: {', '.join(sorted(_MODEL_FIELDS))}"
        )
    entry = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}  # YAML lists: hashable tuples
    return ModelInfo(name=name, **entry) if base is None else replace(base, **entry)


# LiteLLM's price file: per-token prices, provider in 'litellm_provider', 'mode' gives the modality.
_LITELLM_PROVIDERS = {"dashscope": "qwen", "text-completion-openai": "openai"}
_LITELLM_MODES: dict[str, Modality] = {
    "chat": "text",
    "completion": "text",
    "responses": "text",
    "audio_speech": "speech",
    "embedding": "embedding",
    "image_generation": "image",
    "video_generation": "video",
}


_LITELLM_PRICES = {
    "input_cost_per_token": ("input_per_mtok", PER_MILLION),
    "output_cost_per_token": ("output_per_mtok", PER_MILLION),
    "cache_read_input_token_cost": ("cached_input_per_mtok", PER_MILLION),
    "input_cost_per_character": ("per_mchar", PER_MILLION),
    "output_cost_per_second": ("per_second", 1.0),
    "output_cost_per_image": ("per_image", 1.0),
}
_LITELLM_LIMITS = {"max_input_tokens": "context_window", "max_output_tokens": "max_output_tokens",
                   "rpm": "rpm", "tpm": "tpm"}


def from_litellm(raw: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's model_prices_and_context_window.json as catalog data (models only)."""
    models: dict[str, Any] = {}
    for key, spec in raw.items():
        if key == "sample_spec" or not isinstance(spec, dict):
            continue
        provider = _LITELLM_PROVIDERS.get(spec.get("litellm_provider", ""), spec.get("litellm_provider", ""))
        model_id = key.split("/", 1)[1] if "/" in key else key
        if not provider:
            continue
        entry: dict[str, Any] = {"modality": _LITELLM_MODES.get(spec.get("mode", "chat"), "text")}
        for src, (dst, scale) in _LITELLM_PRICES.items():
            value = spec.get(src)
            if isinstance(value, int | float):
                entry[dst] = value * scale
        for src, dst in _LITELLM_LIMITS.items():
            value = spec.get(src)
            if isinstance(value, int | float):
                entry[dst] = int(value)
        models[f"{provider}:{model_id}"] = entry
    return {"models": models}


def read_catalog_file(path: Path) -> dict[str, Any]:
    """A user catalog file as catalog data; JSON files are read as LiteLLM price files."""
    if not path.is_file():
        raise ConfigError(f"catalog file {path} does not exist (CONTENTMILL_CATALOG_FILE)")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}: expected a JSON object of models")
            if "models" in raw or "providers" in raw:
                return raw
            return from_litellm(raw)
        data = yaml.safe_load(text) or {}
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"catalog file {path} cannot be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'models' (and optionally 'providers')")
    return data


def builtin_catalog() -> Catalog:
    data = yaml.safe_load(files("contentmill").joinpath("data", "catalog.yaml").read_text(encoding="utf-8"))
    return Catalog({}, {}).merged(data, "built-in catalog")


def load_catalog(user_file: Path | None = None) -> Catalog:
    """The built-in catalog with the user's file (if any) merged over it."""
    catalog = builtin_catalog()
    if user_file is not None:
        catalog = catalog.merged(read_catalog_file(user_file), str(user_file))
    return catalog
