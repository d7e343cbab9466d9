"""The gateway: the one path every model call in contentmill takes.

For each call: resolve the model and refuse what cannot be priced or cannot fit; serve it from the cache when the
same request was paid for before; admit it against every rate limit, quota and budget that applies, reserving
the most it can cost (atomically, and durably before the provider is called); call the provider with retries,
falling back to the next model on failures retries cannot fix; then bill the reported usage, settle the
reservation, write the ledger row and let the alert rules see it.

This module holds the call: the models, the cache in front, retries and fallbacks, streams. What concerns money
(claims, reservations, settlement, ledger rows, orphans) is the ``Meter``'s (meter.py; a call's bill is
billing.py's), which the Batch API (batch.py) uses too; what a call produced and how the cache keeps it is
generation.py's. It stays one module: the five public calls are a signature and an attempt each over one path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from contentmill.cache import JSON, Cache, CacheKey, embedding_key, image_key, speech_key, text_key
from contentmill.cache.config import CacheConfig, build_cache
from contentmill.catalog import Catalog, ModelInfo, load_catalog
from contentmill.errors import (
    ConfigError,
    ContentmillError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestTooLarge,
    UnpricedModel,
)
from contentmill.gateway import batch
from contentmill.gateway import generation as codecs
from contentmill.gateway.admission import Admission
from contentmill.gateway.batch import BatchOutcome, BatchTicket
from contentmill.gateway.billing import Bill, Call
from contentmill.gateway.cooldowns import Cooldowns
from contentmill.gateway.generation import (
    DEFAULT_TENANT,
    Codec,
    Generation,
    Result,
    estimate_text_usage,
    request_hash,
)
from contentmill.gateway.journal import ReservationJournal
from contentmill.gateway.meter import Meter
from contentmill.gateway.pending import is_pending
from contentmill.gateway.policy import NO_LIMITS, CallLimits, Policy, with_caller
from contentmill.gateway.retry import RetryPolicy, call_with_retries
from contentmill.gateway.stream import StreamEnd, TextStream
from contentmill.ledger import AlertEngine, CallRecord, LedgerStore, LedgerWriter
from contentmill.metering import Usage, usage_ceiling
from contentmill.providers.base import (
    EmbeddingModel,
    EmbeddingResult,
    ImageModel,
    SpeechModel,
    TextChunk,
    TextModel,
    TextResult,
)
from contentmill.providers.resolve import embedding_model, image_model, provider_account, speech_model, text_model
from contentmill.requests import EmbeddingRequest, ImageRequest, SpeechRequest, TextRequest
from contentmill.settings import Settings, get_settings

__all__ = ["Gateway"]

log = logging.getLogger("contentmill.gateway")
T = TypeVar("T")


class Gateway:
    """Every model call goes through here. Parts not given are built from the settings; ``aclose`` frees them."""

    def __init__(
        self,
        settings: Settings | None = None,
        catalog: Catalog | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        models: Mapping[str, TextModel | SpeechModel | EmbeddingModel | ImageModel] | None = None,
        admission: Admission | None = None,
        cache: Cache | None = None,
        ledger: LedgerStore | None = None,
        policy: Policy | None = None,
        alerts: AlertEngine | None = None,
        cooldowns: Cooldowns | None = None,
        settle_in_background: bool = False,
    ) -> None:
        """``settle_in_background``: a call's answer goes back to its caller before its reservation is settled
        and its ledger row written (the server sends it on at once); the reservation holds what was reserved
        until then, and ``aclose`` waits for every settlement. By default a call returns settled and recorded."""
        self.settings = settings or get_settings()
        s = self.settings
        self.catalog = catalog or load_catalog(s.catalog_file)
        self.retry = RetryPolicy(max_retries=s.max_retries)
        self._http_client = http_client
        self._text: dict[str, TextModel] = {}
        self._speech: dict[str, SpeechModel] = {}
        self._embedding: dict[str, EmbeddingModel] = {}
        self._image: dict[str, ImageModel] = {}
        for name, model in (models or {}).items():
            if isinstance(model, TextModel):
                self._text[name] = model
            elif isinstance(model, EmbeddingModel):
                self._embedding[name] = model
            elif isinstance(model, ImageModel):
                self._image[name] = model
            else:
                self._speech[name] = model
        self._owns_cache = cache is None
        self.cache = cache if cache is not None else (
            build_cache(CacheConfig.from_settings(s)) if s.cache_enabled else None)
        self.meter = Meter(s, retry=self.retry, admission=admission, store=ledger, policy=policy, alerts=alerts,
                           settle_in_background=settle_in_background)
        self.cooldowns = cooldowns or Cooldowns()

    # The meter's parts, named here as callers and operators know them.

    @property
    def admission(self) -> Admission:
        return self.meter.admission

    @property
    def journal(self) -> ReservationJournal | None:
        return self.meter.journal

    @property
    def policy(self) -> Policy:
        return self.meter.policy

    @property
    def store(self) -> LedgerStore:
        return self.meter.store

    @property
    def ledger(self) -> LedgerWriter:
        return self.meter.ledger

    @property
    def alerts(self) -> AlertEngine:
        return self.meter.alerts

    # -- models ---------------------------------------------------------------------------------------------

    def priced(self, name: str, modality: str, tags: Mapping[str, str]) -> ModelInfo:
        """The model's catalog entry; an unpriced model is refused (and recorded, so an alert can say so)."""
        info = self.catalog.get(name)
        if info.modality != modality:
            raise ConfigError(f"{name} is a {info.modality} model, not a {modality} model")
        missing = info.missing_price()
        if missing:
            raise self.meter.refused(UnpricedModel(name, missing), info, Usage(), tags)
        return info

    def account(self, name: str) -> str:
        """The vendor account a model is called on (the scope of its vendor's rpm/tpm limits)."""
        model = self._text.get(name) or self._speech.get(name) or self._embedding.get(name) or self._image.get(name)
        return provider_account(model) if model is not None else "local"

    def text_model(self, name: str) -> TextModel:
        if name not in self._text:
            self._text[name] = text_model(name, self.settings, self.catalog, http_client=self._http_client)
        return self._text[name]

    def speech_model(self, name: str) -> SpeechModel:
        if name not in self._speech:
            self._speech[name] = speech_model(name, self.settings, self.catalog, http_client=self._http_client)
        return self._speech[name]

    def embedding_model(self, name: str) -> EmbeddingModel:
        if name not in self._embedding:
            self._embedding[name] = embedding_model(name, self.settings, self.catalog,
                                                    http_client=self._http_client)
        return self._embedding[name]

    def image_model(self, name: str) -> ImageModel:
        if name not in self._image:
            self._image[name] = image_model(name, self.settings, self.catalog, http_client=self._http_client)
        return self._image[name]

    # -- the public calls ---------------------------------------------------------------------------------

    async def generate(
        self,
        request: TextRequest,
        *,
        model: str | None = None,
        fallbacks: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        wait_s: float | None = None,
        cache: bool = True,
        shareable: bool = False,
        template_version: str | None = None,
        limits: CallLimits = NO_LIMITS,
    ) -> Generation:
        """One text generation; ``fallbacks`` are tried in order when a model fails in a way retries can't fix.
        ``limits`` are the caller's own (a virtual key's budget and rates), applied on top of the policy's."""
        tags = dict(tags or {})
        self.meter.watch()

        async def attempt(name: str) -> Generation:
            call, key, provider = self._text_call(name, request, tags, cache, shareable, template_version, limits)
            return await self._run(call, key, lambda: provider.complete(request), codecs.TEXT, wait_s)

        return await self._with_fallbacks([model or self.settings.text_model, *fallbacks], attempt)

    async def stream(
        self,
        request: TextRequest,
        *,
        model: str | None = None,
        fallbacks: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        wait_s: float | None = None,
        cache: bool = True,
        shareable: bool = False,
        template_version: str | None = None,
        limits: CallLimits = NO_LIMITS,
    ) -> TextStream:
        """A streamed text generation, returned once its first piece has arrived: until then it is retried and
        falls back like ``generate``; after that it is billed when it ends, however it ends (gateway/stream.py).
        A cached answer comes back as a one-piece stream."""
        tags = dict(tags or {})
        self.meter.watch()

        async def attempt(name: str) -> TextStream:
            call, key, provider = self._text_call(name, request, tags, cache, shareable, template_version, limits)
            if key is not None:
                assert self.cache is not None
                hit = await self.cache.get(key, JSON)
                if hit is not None:
                    return TextStream.replay(self.meter.hit(codecs.TEXT, hit.value, call, hit.cost_usd, hit.tier))
            await self.meter.open(call, self.account(name), wait_s)
            self.meter.keep(call)  # only a stream can outlive its reservation: the reader sets its pace
            started = time.perf_counter()

            async def first_piece() -> tuple[AsyncIterator[TextChunk], TextChunk | None]:
                pieces = aiter(provider.stream(request))
                try:
                    return pieces, await anext(pieces, None)
                except BaseException:
                    closer = getattr(pieces, "aclose", None)
                    if closer is not None:
                        await closer()
                    raise

            (pieces, first), attempts = await self._invoke(call, first_piece, started)

            async def finish(end: StreamEnd) -> Generation:
                return await self._streamed(call, key, provider, end, attempts, started)

            return TextStream(pieces, first, finish, model=name,
                              request_id=first.request_id if first is not None else None)

        return await self._with_fallbacks([model or self.settings.text_model, *fallbacks], attempt)

    def _text_call(self, name: str, request: TextRequest, tags: dict[str, str], cache: bool, shareable: bool,
                   template_version: str | None, limits: CallLimits) -> tuple[Call, CacheKey | None, TextModel]:
        """What the gateway knows of a text call to ``name`` before calling it; refuses what cannot fit."""
        info = self.priced(name, "text", tags)
        provider = self.text_model(name)
        estimate = self.text_estimate(provider, info, request, tags)
        key = text_key(request, model=name, tenant=tags.get("team") or DEFAULT_TENANT,
                       template_version=template_version, shareable=shareable) if self._caching(cache) else None
        call = Call(info, estimate, info.cost(estimate), tags,
                    key.digest if key else request_hash(name, request, template_version), with_caller(limits),
                    ceiling=usage_ceiling(estimate, info.context_window))
        return call, key, provider

    def text_estimate(self, provider: TextModel, info: ModelInfo, request: TextRequest, tags: Mapping[str, str]
                      ) -> Usage:
        """The most a text request can use; one that cannot fit the model's context window is refused."""
        estimate = estimate_text_usage(provider, request, info.tokenizer_exact)
        if info.context_window and estimate.input_tokens + request.max_tokens > info.context_window:
            too_large = RequestTooLarge(info.name, estimate.input_tokens, request.max_tokens, info.context_window)
            raise self.meter.refused(too_large, info, estimate, tags)
        return estimate

    async def _streamed(self, call: Call, key: CacheKey | None, provider: TextModel, end: StreamEnd,
                        attempts: int, started: float) -> Generation:
        """Settle and record a stream that has ended; a complete answer goes into the cache."""
        usage = end.usage
        if usage is None:  # stopped or failed before the vendor's usage: bill what it produced, as an estimate
            usage = Usage(input_tokens=call.estimate.input_tokens, output_tokens=provider.count_tokens(end.text),
                          estimated=True)
        billed = call.bill(usage, end.reported)
        gen = Generation(model=call.info.name, usage=billed.usage, cost_usd=billed.cost_usd, estimate=call.estimate,
                         latency_s=time.perf_counter() - started, attempts=attempts, request_id=end.request_id,
                         text=end.text, finish_reason=end.finish_reason or ("stop" if end.error is None else None),
                         tags=call.tags)
        record = call.answered(gen, billed, "off" if key is None else "miss")
        if end.error is not None:
            self.cooldowns.failed(call.info.name)
            record = replace(record, outcome="error", error_type=type(end.error).__name__)
        elif end.closed_early:
            record = replace(record, error_type="StreamClosed")
        else:
            self.cooldowns.succeeded(call.info.name)
            if key is not None and self.cache is not None:
                await self.cache.set(key, codecs.TEXT.encode(gen), JSON, cost_usd=billed.cost_usd)
        await self.meter.close(call, billed, lambda: record)  # in the server: the row first, as for any answer
        return gen

    async def speak(
        self,
        request: SpeechRequest,
        *,
        model: str | None = None,
        fallbacks: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        wait_s: float | None = None,
        cache: bool = True,
        shareable: bool = False,
        limits: CallLimits = NO_LIMITS,
    ) -> Generation:
        """One speech synthesis, billed by characters (or seconds, where the vendor bills so)."""
        tags = dict(tags or {})
        self.meter.watch()

        async def attempt(name: str) -> Generation:
            info = self.priced(name, "speech", tags)
            provider = self.speech_model(name)
            key = speech_key(request, model=name, tenant=tags.get("team") or DEFAULT_TENANT,
                             shareable=shareable) if self._caching(cache) else None
            call = _priced_call(info, Usage(characters=len(request.text), estimated=True), tags, key, request, limits)
            return await self._run(call, key, lambda: provider.synthesize(request), codecs.SPEECH, wait_s)

        return await self._with_fallbacks([model or self.settings.speech_model, *fallbacks], attempt)

    async def embed(
        self,
        request: EmbeddingRequest,
        *,
        model: str,
        fallbacks: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        wait_s: float | None = None,
        cache: bool = True,
        shareable: bool = False,
        limits: CallLimits = NO_LIMITS,
    ) -> Generation:
        """Vectors for ``request.inputs``, billed by their input tokens (counted before the call, as reserved)."""
        tags = dict(tags or {})
        self.meter.watch()

        async def attempt(name: str) -> Generation:
            info = self.priced(name, "embedding", tags)
            provider = self.embedding_model(name)
            tokens = sum(provider.count_tokens(text) for text in request.inputs)
            key = embedding_key(request, model=name, tenant=tags.get("team") or DEFAULT_TENANT,
                                shareable=shareable) if self._caching(cache) else None
            call = _priced_call(info, Usage(input_tokens=tokens, estimated=True), tags, key, request, limits)
            call.ceiling = usage_ceiling(call.estimate, info.context_window, windows=len(request.inputs))
            return await self._run(call, key, lambda: provider.embed(request), codecs.EMBEDDING, wait_s)

        return await self._with_fallbacks([model, *fallbacks], attempt)

    async def image(
        self,
        request: ImageRequest,
        *,
        model: str,
        fallbacks: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        wait_s: float | None = None,
        cache: bool = True,
        shareable: bool = False,
        limits: CallLimits = NO_LIMITS,
    ) -> Generation:
        """Images from a prompt, billed per image (``request.n`` reserved, the images returned billed)."""
        tags = dict(tags or {})
        self.meter.watch()

        async def attempt(name: str) -> Generation:
            info = self.priced(name, "image", tags)
            provider = self.image_model(name)
            key = image_key(request, model=name, tenant=tags.get("team") or DEFAULT_TENANT,
                            shareable=shareable) if self._caching(cache) else None
            call = _priced_call(info, Usage(images=request.n, estimated=True), tags, key, request, limits)
            return await self._run(call, key, lambda: provider.imagine(request), codecs.IMAGE, wait_s)

        return await self._with_fallbacks([model, *fallbacks], attempt)

    async def tpm_headroom(self, model: str) -> tuple[float, float] | None:
        """(tokens available now, bucket size) of the model's tokens-per-minute limit at its vendor account, as
        admission counts them, for work packed to fit what is free; None when the catalog gives it no TPM."""
        info = self.catalog.get(model)
        if not info.tpm:
            return None
        self.text_model(model)  # the account is the resolved provider's
        claim = self.policy.vendor_limit(self.account(model), info, "tpm", 0.0)
        (available, _reserved), = await self.admission.levels([claim])
        return available, claim.limit

    # -- the Batch API (batch.py) -----------------------------------------------------------------------

    async def submit_batch(self, items: Sequence[tuple[str, TextRequest]], *, model: str,
                           tags: Mapping[str, str] | None = None,
                           item_tags: Mapping[str, Mapping[str, str]] | None = None, cache: bool = True,
                           shareable: bool = False, template_version: str | None = None,
                           limits: CallLimits = NO_LIMITS) -> BatchTicket:
        """Submit ``(custom id, request)`` items as one Batch API batch, at the batch discount; the cache
        answers what it holds. Collect later, in this or another process, with ``collect_batch``. ``limits``
        are the caller's own budgets (per-minute rates do not apply to batch work)."""
        return await batch.submit(self, items, model=model, tags=tags, item_tags=item_tags, cache=cache,
                                  shareable=shareable, template_version=template_version, limits=limits)

    async def batch_pending(self, batch_id: str) -> bool:
        """Whether a submitted batch still waits to be collected (by this or any process sharing the store)."""
        return await is_pending(self.settings, batch_id)

    async def collect_batch(self, batch_id: str, *, cancel: bool = False) -> BatchOutcome | None:
        """The results of a submitted batch once it has finished (None while it runs), settled and recorded."""
        return await batch.collect(self, batch_id, cancel=cancel)

    # -- the path ---------------------------------------------------------------------------------------

    def _caching(self, wanted: bool) -> bool:
        return wanted and self.cache is not None

    async def _run(self, call: Call, key: CacheKey | None, invoke: Callable[[], Awaitable[Result]],
                   codec: Codec, wait_s: float | None) -> Generation:
        """The cache in front of the money path of one model."""

        async def produce() -> Generation:
            result, billed, attempts, latency = await self._admitted_call(call, invoke, wait_s)
            gen = codecs.generation(result, model=call.info.name, usage=billed.usage, cost_usd=billed.cost_usd,
                                    estimate=call.estimate, latency_s=latency, attempts=attempts, tags=call.tags)
            await self.meter.close(call, billed, lambda: call.answered(gen, billed, "off" if key is None else "miss"))
            return gen

        return await produce() if key is None else await self._cached(call, key, produce, codec)

    async def _with_fallbacks(self, names: Sequence[str], attempt: Callable[[str], Awaitable[T]]) -> T:
        last: ContentmillError | None = None
        for index, name in enumerate(names):
            left = self.cooldowns.cooling(name)
            if left and index < len(names) - 1:
                log.info("skipping %s: cooling down for %.0f s after repeated failures", name, left)
                continue
            try:
                return await attempt(name)
            except (ProviderError, RateLimited) as error:
                fatal = isinstance(error, ProviderError) and not error.retryable
                if fatal or index == len(names) - 1:
                    raise
                log.warning("falling back from %s after %s", name, type(error).__name__)
                last = error
        raise last or ProviderUnavailable("every model is cooling down", model=", ".join(names))

    async def _cached(self, call: Call, key: CacheKey, produce: Callable[[], Awaitable[Generation]],
                      codec: Codec) -> Generation:
        """Serve the call from the cache, or produce it once (concurrent identical calls wait for that one)."""
        assert self.cache is not None
        hit = await self.cache.get(key, codec.serializer)
        if hit is not None:
            return self.meter.hit(codec, hit.value, call, hit.cost_usd, hit.tier)
        produced: list[Generation] = []

        async def compute() -> Any:
            produced.append(await produce())
            return codec.encode(produced[0])

        value, _ = await self.cache.compute_missing(  # the lookup above was this request's one read of the tiers
            key, compute, codec.serializer, cost_usd=lambda _: produced[0].cost_usd if produced else 0.0)
        if produced:
            return produced[0]
        # Another caller paid for it while this one waited (single flight): what it cost is what this saved.
        found = await self.cache.fetch(key, record=False)
        saved = found.entry.cost_usd if found is not None else 0.0
        return self.meter.hit(codec, value, call, saved, "singleflight")

    async def _admitted_call(self, call: Call, invoke: Callable[[], Awaitable[Result]], wait_s: float | None
                             ) -> tuple[Result, Bill, int, float]:
        """Admit and call with retries: the answer, its bill (settled by ``Meter.close``), the attempts and the
        provider's time (from after admission)."""
        await self.meter.open(call, self.account(call.info.name), wait_s)
        started = time.perf_counter()
        result, attempts = await self._invoke(call, invoke, started)
        reported = result.reported if isinstance(result, TextResult | EmbeddingResult) else None
        billed = call.bill(result.usage, reported)
        self.cooldowns.succeeded(call.info.name)
        return result, billed, attempts, time.perf_counter() - started

    async def _invoke(self, call: Call, invoke: Callable[[], Awaitable[T]], started: float) -> tuple[T, int]:
        """Call the provider with retries; a failure is settled and recorded by the meter."""
        try:
            return await call_with_retries(invoke, self.retry)
        except BaseException as error:
            retryable = isinstance(error, ProviderError) and error.retryable
            await self.meter.fail(call, error, latency_s=time.perf_counter() - started,
                                  retries=self.retry.max_retries if retryable else 0)
            if isinstance(error, ProviderError):
                self.cooldowns.failed(call.info.name)
            raise

    # -- orphans and closing ----------------------------------------------------------------------------------

    async def sweep_orphans(self, now: float | None = None) -> list[CallRecord]:
        """Charge reservations whose worker died mid-call at their reserved amount, flagged in the ledger."""
        return await self.meter.sweep_orphans(now)

    async def aclose(self) -> None:
        await self.meter.drain()
        closers = [m.aclose for m in self._text.values()] + [m.aclose for m in self._speech.values()]
        closers += [m.aclose for m in self._embedding.values()] + [m.aclose for m in self._image.values()]
        for close in closers:
            await close()
        for models in (self._text, self._speech, self._embedding, self._image):
            models.clear()
        if self.cache is not None and self._owns_cache:
            await self.cache.aclose()
        await self.meter.aclose()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _priced_call(info: ModelInfo, estimate: Usage, tags: dict[str, str], key: CacheKey | None,
                 request: SpeechRequest | EmbeddingRequest | ImageRequest, limits: CallLimits) -> Call:
    """A call whose estimate is its whole usage (speech, embeddings, images): reserved at the estimate's cost."""
    return Call(info, estimate, info.cost(estimate), tags, key.digest if key else request_hash(info.name, request),
                with_caller(limits))
