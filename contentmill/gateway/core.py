"""The gateway: the one path every model call in contentmill takes.

Resolve the model, refuse what cannot be priced or cannot fit, estimate the usage, call the provider with
retries, then price the provider's reported usage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from contentmill.catalog import Catalog, ModelInfo, load_catalog
from contentmill.errors import ConfigError, RequestTooLarge, UnpricedModel
from contentmill.gateway.retry import RetryPolicy, call_with_retries
from contentmill.metering import TOKENS_PER_MESSAGE, TOKENS_REPLY_PRIMING, Usage
from contentmill.providers.base import SpeechModel, SpeechRequest, TextModel, TextRequest
from contentmill.providers.resolve import speech_model, text_model
from contentmill.settings import Settings, get_settings

log = logging.getLogger("contentmill.gateway")


@dataclass(frozen=True, slots=True)
class Generation:
    """What one call produced and what it cost. ``estimate`` is the usage reserved before the call."""

    model: str
    usage: Usage
    cost_usd: float
    estimate: Usage
    latency_s: float
    attempts: int = 1
    cached: bool = False
    request_id: str | None = None
    text: str | None = None
    finish_reason: str | None = None
    audio: bytes | None = field(default=None, repr=False)
    sample_rate: int | None = None
    duration_s: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (audio bytes are left out; their length is kept)."""
        data: dict[str, Any] = {
            "model": self.model,
            "usage": self.usage.as_dict(),
            "estimate": self.estimate.as_dict(),
            "cost_usd": round(self.cost_usd, 10),
            "cached": self.cached,
            "latency_s": round(self.latency_s, 4),
            "attempts": self.attempts,
            "request_id": self.request_id,
            "tags": dict(self.tags),
        }
        if self.text is not None:
            data["text"] = self.text
            data["finish_reason"] = self.finish_reason
        if self.audio is not None:
            data.update(audio_bytes=len(self.audio), sample_rate=self.sample_rate, duration_s=self.duration_s)
        return data


def estimate_text_usage(model: TextModel, request: TextRequest) -> Usage:
    """Input tokens counted now plus the full max output: the most this call can use."""
    if request.prompt is not None:
        input_tokens = model.count_tokens(request.prompt)
    else:
        input_tokens = TOKENS_REPLY_PRIMING + sum(
            TOKENS_PER_MESSAGE + model.count_tokens(m.content) + model.count_tokens(m.role)
            for m in request.messages
        )
    return Usage(input_tokens=input_tokens, output_tokens=request.max_tokens, estimated=True)


class Gateway:
    """Every model call goes through here. Models are resolved once and kept until ``aclose``."""

    def __init__(
        self,
        settings: Settings | None = None,
        catalog: Catalog | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        models: Mapping[str, TextModel | SpeechModel] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.catalog = catalog or load_catalog(self.settings.catalog_file)
        self.retry = RetryPolicy(max_retries=self.settings.max_retries)
        self._http_client = http_client
        self._text: dict[str, TextModel] = {}
        self._speech: dict[str, SpeechModel] = {}
        for name, model in (models or {}).items():
            if isinstance(model, TextModel):
                self._text[name] = model
            else:
                self._speech[name] = model

    def _priced(self, name: str, modality: str) -> ModelInfo:
        info = self.catalog.get(name)
        if info.modality != modality:
            raise ConfigError(f"{name} is a {info.modality} model, not a {modality} model")
        missing = info.missing_price()
        if missing:
            raise UnpricedModel(name, missing)
        return info

    def text_model(self, name: str) -> TextModel:
        if name not in self._text:
            self._text[name] = text_model(name, self.settings, self.catalog, http_client=self._http_client)
        return self._text[name]

    def speech_model(self, name: str) -> SpeechModel:
        if name not in self._speech:
            self._speech[name] = speech_model(name, self.settings, self.catalog, http_client=self._http_client)
        return self._speech[name]

    async def generate(
        self, request: TextRequest, *, model: str | None = None, tags: Mapping[str, str] | None = None
    ) -> Generation:
        """One text generation: priced and size-checked before the call, metered after it."""
        name = model or self.settings.text_model
        info = self._priced(name, "text")
        provider = self.text_model(name)
        estimate = estimate_text_usage(provider, request)
        if info.context_window and estimate.input_tokens + request.max_tokens > info.context_window:
            raise RequestTooLarge(name, estimate.input_tokens, request.max_tokens, info.context_window)
        started = time.perf_counter()
        result, attempts = await call_with_retries(lambda: provider.complete(request), self.retry)
        cost = info.cost(result.usage)
        log.debug("text %s in=%d out=%d cost=%.6f", name, result.usage.input_tokens, result.usage.output_tokens, cost)
        return Generation(
            model=name, usage=result.usage, cost_usd=cost, estimate=estimate,
            latency_s=time.perf_counter() - started, attempts=attempts, request_id=result.request_id,
            text=result.text, finish_reason=result.finish_reason, tags=dict(tags or {}),
        )

    async def speak(
        self, request: SpeechRequest, *, model: str | None = None, tags: Mapping[str, str] | None = None
    ) -> Generation:
        """One speech synthesis, billed by characters (or seconds, where the vendor bills so)."""
        name = model or self.settings.speech_model
        info = self._priced(name, "speech")
        provider = self.speech_model(name)
        estimate = Usage(characters=len(request.text), estimated=True)
        started = time.perf_counter()
        result, attempts = await call_with_retries(lambda: provider.synthesize(request), self.retry)
        cost = info.cost(result.usage)
        return Generation(
            model=name, usage=result.usage, cost_usd=cost, estimate=estimate,
            latency_s=time.perf_counter() - started, attempts=attempts, request_id=result.request_id,
            audio=result.audio, sample_rate=result.sample_rate, duration_s=result.duration_s,
            tags=dict(tags or {}),
        )

    async def aclose(self) -> None:
        for text in self._text.values():
            await text.aclose()
        for speech in self._speech.values():
            await speech.aclose()
        self._text.clear()
        self._speech.clear()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
