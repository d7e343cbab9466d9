"""The one place where a 'provider:model' name becomes a model object."""

from __future__ import annotations

import httpx

from contentmill.catalog import Catalog, ModelInfo
from contentmill.errors import ConfigError
from contentmill.providers.base import EmbeddingModel, ImageModel, SpeechModel, TextModel
from contentmill.providers.fake import FakeImageModel, FakeSpeechModel, FakeTextModel
from contentmill.providers.openai_client import OpenAICompatClient
from contentmill.providers.openai_compat import (
    OpenAICompatEmbeddingModel,
    OpenAICompatImageModel,
    OpenAICompatSpeechModel,
    OpenAICompatTextModel,
)
from contentmill.providers.piper import installed as piper_installed
from contentmill.settings import Settings


def _expect(info: ModelInfo, modality: str) -> None:
    if info.modality != modality:
        raise ConfigError(f"{info.name} is a {info.modality} model, not a {modality} model")


def _client(info: ModelInfo, settings: Settings, catalog: Catalog,
            http_client: httpx.AsyncClient | None) -> OpenAICompatClient:
    provider = catalog.provider(info.provider)
    base_url = (settings.value_of(provider.base_url_env) if provider.base_url_env else None) or provider.base_url
    if not base_url:
        raise ConfigError(f"provider {provider.name!r} has no base_url: set {provider.base_url_env or 'base_url'}")
    api_key = settings.secret(provider.api_key_env, f"model {info.name}") if provider.api_key_env else None
    return OpenAICompatClient(provider.name, base_url, api_key, timeout=settings.request_timeout_s,
                              http_client=http_client)


def configured(name: str, settings: Settings, catalog: Catalog) -> bool:
    """Whether calls of ``name`` can be made with these settings: a local or fake engine, or a vendor whose base
    URL and key are set. A router that picks among models skips the others instead of failing on them."""
    provider = catalog.provider(catalog.get(name).provider)
    if provider.kind in ("local", "fake"):
        return not name.startswith("local:piper") or piper_installed()
    if not ((settings.value_of(provider.base_url_env) if provider.base_url_env else None) or provider.base_url):
        return False
    if not provider.api_key_env:
        return True
    try:
        return bool(settings.secret(provider.api_key_env, f"model {name}").get_secret_value())
    except ConfigError:
        return False


def text_model(name: str, settings: Settings, catalog: Catalog, *,
               http_client: httpx.AsyncClient | None = None) -> TextModel:
    info = catalog.get(name)
    _expect(info, "text")
    kind = catalog.provider(info.provider).kind
    if kind == "fake":
        return FakeTextModel(name, encoding=info.tokenizer)
    if kind == "local":
        from contentmill.providers.llama_local import LlamaTextModel

        return LlamaTextModel(settings.data_dir, name=name)
    return OpenAICompatTextModel(name, _client(info, settings, catalog, http_client), encoding=info.tokenizer,
                                 exact_tokenizer=info.tokenizer_exact)


def speech_model(name: str, settings: Settings, catalog: Catalog, *,
                 http_client: httpx.AsyncClient | None = None) -> SpeechModel:
    info = catalog.get(name)
    _expect(info, "speech")
    kind = catalog.provider(info.provider).kind
    if kind == "fake":
        return FakeSpeechModel(name)
    if kind == "local" and name.startswith("local:piper"):
        from contentmill.providers.piper import PiperSpeechModel

        return PiperSpeechModel(name)
    if kind == "local":
        from contentmill.providers.espeak import EspeakSpeechModel

        return EspeakSpeechModel(name=name)
    return OpenAICompatSpeechModel(name, _client(info, settings, catalog, http_client))


def embedding_model(name: str, settings: Settings, catalog: Catalog, *,
                    http_client: httpx.AsyncClient | None = None) -> EmbeddingModel:
    info = catalog.get(name)
    _expect(info, "embedding")
    if catalog.provider(info.provider).kind == "local":
        from contentmill.providers.sentence import LocalEmbeddingModel, SentenceEmbedder

        return LocalEmbeddingModel(name, SentenceEmbedder(threads=settings.embedding_threads))
    return OpenAICompatEmbeddingModel(name, _client(info, settings, catalog, http_client), encoding=info.tokenizer)


def image_model(name: str, settings: Settings, catalog: Catalog, *,
                http_client: httpx.AsyncClient | None = None) -> ImageModel:
    info = catalog.get(name)
    _expect(info, "image")
    kind = catalog.provider(info.provider).kind
    if kind == "fake":
        return FakeImageModel(name)
    if kind == "local":
        raise ConfigError(f"{name}: there is no local image engine; name an OpenAI-compatible image model, e.g. "
                          "openai:gpt-image-1")
    return OpenAICompatImageModel(name, _client(info, settings, catalog, http_client))


def provider_account(model: TextModel | SpeechModel | EmbeddingModel | ImageModel) -> str:
    """Which provider account a model's calls count against (vendor limits are per account): the provider and
    a fingerprint of its endpoint and key, never the key itself. Local engines and fakes share 'local'."""
    client = getattr(model, "client", None)
    if isinstance(client, OpenAICompatClient):
        return client.account
    return "local"
