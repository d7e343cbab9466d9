"""The gateway: the one path every model call in contentmill takes.

For each call: resolve the model and refuse what cannot be priced or cannot fit; serve it from the cache when the
same request was paid for before; admit it against every rate limit, quota and budget that applies, reserving
the most it can cost (atomically, and durably before the provider is called); call the provider with retries,
falling back to the next model on failures retries cannot fix; then meter the reported usage, settle the
reservation, write the ledger row and let the alert rules see it.

A vendor's usage is billed only when it can be this call's: counts that are non-negative integers within what the
call could have used (``metering.usage_ceiling``). Otherwise the call is billed at the estimate it reserved,
marked estimated and flagged, the vendor's figures kept in its row, and the ``usage_rejected`` alert fires. An
answer whose content is unusable but which reports usage is billed too (one row, outcome error). Every answer
the vendor gave gets its ledger row, whatever it said.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import orjson

from contentmill.audio import wav_info
from contentmill.cache import IMAGES, JSON, WAV, Cache, CacheKey, embedding_key, image_key, speech_key, text_key
from contentmill.cache.config import CacheConfig, build_cache
from contentmill.catalog import Catalog, ModelInfo, load_catalog
from contentmill.errors import (
    AdmissionUnavailable,
    BudgetExceeded,
    ConfigError,
    ContentmillError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestTooLarge,
    UnpricedModel,
    UnusableAnswer,
)
from contentmill.gateway.admission import Admission, Claim, MemoryAdmission, Refusal, Reservation
from contentmill.gateway.admission_fallback import FallbackAdmission
from contentmill.gateway.admission_redis import RedisAdmission
from contentmill.gateway.admission_sqlite import SQLiteAdmission
from contentmill.gateway.health import Health
from contentmill.gateway.journal import ReservationJournal
from contentmill.gateway.policy import NO_LIMITS, CallFacts, CallLimits, Metered, Policy, with_caller
from contentmill.gateway.retry import RetryPolicy, call_with_retries
from contentmill.gateway.stream import StreamEnd, TextStream
from contentmill.ledger import (
    Alert,
    AlertEngine,
    AlertSink,
    CallRecord,
    LedgerSpool,
    LedgerStore,
    LedgerWriter,
    LogSink,
    PrefectArtifactSink,
    WebhookSink,
    settings_url,
)
from contentmill.metering import (
    TOKENS_PER_MESSAGE,
    TOKENS_REPLY_PRIMING,
    ReportedUsage,
    Usage,
    usage_ceiling,
    usage_figures,
    usage_problem,
)
from contentmill.providers.base import (
    EmbeddingModel,
    EmbeddingRequest,
    EmbeddingResult,
    ImageModel,
    ImageRequest,
    ImageResult,
    SpeechModel,
    SpeechRequest,
    SpeechResult,
    TextChunk,
    TextModel,
    TextRequest,
    TextResult,
)
from contentmill.providers.resolve import embedding_model, image_model, provider_account, speech_model, text_model
from contentmill.settings import Settings, get_settings

if TYPE_CHECKING:
    from contentmill.gateway.batch import BatchOutcome, BatchTicket

log = logging.getLogger("contentmill.gateway")
Result = TextResult | SpeechResult | EmbeddingResult | ImageResult
T = TypeVar("T")
DEFAULT_TENANT = "default"  # cache scope of calls without a team tag
INEXACT_TOKENIZER_MARGIN = 1.25  # our count for a vendor whose tokenizer we lack is an estimate: reserve more


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
    saved_usd: float = 0.0  # on a cache hit: what the first call cost
    cache_tier: str | None = None
    vectors: list[list[float]] | None = field(default=None, repr=False)
    images: tuple[bytes, ...] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (audio bytes are left out; their length is kept)."""
        data: dict[str, Any] = {
            "model": self.model,
            "usage": self.usage.as_dict(),
            "estimate": self.estimate.as_dict(),
            "cost_usd": round(self.cost_usd, 10),
            "cached": self.cached,
            "saved_usd": round(self.saved_usd, 10),
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
        if self.vectors is not None:
            data.update(vectors=len(self.vectors), dimensions=len(self.vectors[0]) if self.vectors else 0)
        if self.images is not None:
            data["image_bytes"] = [len(image) for image in self.images]
        return data


def estimate_text_usage(model: TextModel, request: TextRequest, exact: bool = True) -> Usage:
    """Input tokens counted now plus the full max output: the most this call can use."""
    if request.prompt is not None:
        input_tokens = model.count_tokens(request.prompt)
    else:
        input_tokens = TOKENS_REPLY_PRIMING + sum(
            TOKENS_PER_MESSAGE + model.count_tokens(m.content) + model.count_tokens(m.role)
            for m in request.messages
        )
    if not exact:
        input_tokens = math.ceil(input_tokens * INEXACT_TOKENIZER_MARGIN)
    return Usage(input_tokens=input_tokens, output_tokens=request.max_tokens, estimated=True)


@dataclass(slots=True)
class _Call:
    """One attempt at one model: what the gateway knows before calling it."""

    info: ModelInfo
    estimate: Usage
    reserved_usd: float
    tags: dict[str, str]
    request_hash: str
    limits: CallLimits = NO_LIMITS
    metered: list[Metered] = field(default_factory=list)
    reservation: Reservation | None = None
    keeper: asyncio.Task[None] | None = None  # renews a stream's reservation while it is read
    ceiling: Usage | None = None  # the most the call could have used; None: its usage is not the vendor's


@dataclass(frozen=True, slots=True)
class Bill:
    """What a call is charged: the usage it reported when that can be this call's, else the estimate it reserved
    (then ``problem`` says why and ``figures`` keeps what the vendor sent)."""

    usage: Usage
    cost_usd: float
    figures: str | None = None
    problem: str | None = None

    def mark(self, record: CallRecord) -> CallRecord:
        """The call's ledger row, flagged with the vendor's figures when they were not billed."""
        if self.problem is None:
            return record
        return record.usage_rejected(self.figures or "", self.problem)


def bill(info: ModelInfo, estimate: Usage, ceiling: Usage | None, usage: Usage | None,
         reported: ReportedUsage | None, *, batch: bool = False) -> Bill:
    """Check the usage a vendor reported before it is billed; what cannot be the call's is billed at ``estimate``.

    A vendor's counts (``reported``) must be non-negative integers within ``ceiling``; our own counts and those
    of local engines and fakes (no ``reported``) are billed as they are.
    """
    problem = reported.problem if reported is not None else None
    if problem is None and reported is not None and usage is not None and ceiling is not None:
        problem = usage_problem(usage, ceiling)
    if problem is None and usage is not None:
        return Bill(usage, info.cost(usage, batch=batch))
    fallback = estimate.with_estimate(True)
    figures = reported.figures if reported is not None else usage_figures(usage.as_dict() if usage else None)
    return Bill(fallback, info.cost(fallback, batch=batch), figures, problem or "the answer reports no usage")


def _reported(result: Result) -> ReportedUsage | None:
    return result.reported if isinstance(result, TextResult | EmbeddingResult) else None


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
        health: Health | None = None,
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
        # What the gateway builds it also closes; what the caller passes in stays the caller's to close.
        self._owned = {name for name, given in (("admission", admission), ("cache", cache), ("store", ledger),
                                                 ("alerts", alerts)) if given is None}
        self.admission = admission or self._built_admission()
        self.journal = (ReservationJournal(s.data_dir / "reservations.journal")
                        if isinstance(self.admission, MemoryAdmission) else None)
        self.cache = cache if cache is not None else (
            build_cache(CacheConfig.from_settings(s)) if s.cache_enabled else None)
        self.store = ledger or LedgerStore(settings_url(s))
        self.ledger = LedgerWriter(self.store, spool=LedgerSpool.for_settings(s))
        self.policy = policy or Policy.from_settings(s, self.store.budgets())
        self.alerts = alerts if alerts is not None else AlertEngine(self.store, sinks=alert_sinks(s))
        self.health = health or Health()
        self._seeded: set[str] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._unsettled: list[tuple[Reservation, list[float]]] = []  # settlements the store could not take yet
        self._settling = asyncio.Lock()
        self._sweeping = asyncio.Lock()
        self._settle_in_background = settle_in_background
        self._settlements: set[asyncio.Task[None]] = set()

    # -- models ---------------------------------------------------------------------------------------------

    def _priced(self, name: str, modality: str, tags: Mapping[str, str]) -> ModelInfo:
        """The model's catalog entry; an unpriced model is refused (and recorded, so an alert can say so)."""
        info = self.catalog.get(name)
        if info.modality != modality:
            raise ConfigError(f"{name} is a {info.modality} model, not a {modality} model")
        missing = info.missing_price()
        if missing:
            raise self._refused(UnpricedModel(name, missing), info, Usage(), tags)
        return info

    def _refused(self, error: ContentmillError, info: ModelInfo, estimate: Usage, tags: Mapping[str, str]
                 ) -> ContentmillError:
        """Record a call the gateway stopped before any provider was paid; returns the error to raise."""
        self._record(CallRecord.from_error(error, model=info.name, api_type=info.modality, estimate=estimate,
                                           tags=tags))
        return error

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
        self._watch()

        async def attempt(name: str) -> Generation:
            call, key, provider = self._text_call(name, request, tags, cache, shareable, template_version, limits)
            return await self._run(call, key, lambda: provider.complete(request), _text_codec, wait_s)

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
        self._watch()

        async def attempt(name: str) -> TextStream:
            call, key, provider = self._text_call(name, request, tags, cache, shareable, template_version, limits)
            if key is not None:
                assert self.cache is not None
                hit = await self.cache.get(key, JSON)
                if hit is not None:
                    return TextStream.replay(self._hit(_text_decode(hit.value, call), call, hit.cost_usd, hit.tier))
            await self._open(call, wait_s)
            # Only a stream can outlive its reservation (the reader sets its pace): it renews it until settled.
            assert call.reservation is not None
            call.keeper = asyncio.get_running_loop().create_task(self._keep_alive(call.reservation))
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
                return await self._streamed(call, key, provider, request, end, attempts, started)

            return TextStream(pieces, first, finish, model=name,
                              request_id=first.request_id if first is not None else None)

        return await self._with_fallbacks([model or self.settings.text_model, *fallbacks], attempt)

    def _text_call(self, name: str, request: TextRequest, tags: dict[str, str], cache: bool, shareable: bool,
                   template_version: str | None, limits: CallLimits) -> tuple[_Call, CacheKey | None, TextModel]:
        """What the gateway knows of a text call to ``name`` before calling it; refuses what cannot fit."""
        info = self._priced(name, "text", tags)
        provider = self.text_model(name)
        estimate = estimate_text_usage(provider, request, info.tokenizer_exact)
        if info.context_window and estimate.input_tokens + request.max_tokens > info.context_window:
            too_large = RequestTooLarge(name, estimate.input_tokens, request.max_tokens, info.context_window)
            raise self._refused(too_large, info, estimate, tags)
        key = text_key(request, model=name, tenant=tags.get("team") or DEFAULT_TENANT,
                       template_version=template_version, shareable=shareable) if self._caching(cache) else None
        call = _Call(info, estimate, info.cost(estimate), tags,
                     key.digest if key else _request_hash(name, request, template_version), with_caller(limits),
                     ceiling=usage_ceiling(estimate, info.context_window))
        return call, key, provider

    async def _streamed(self, call: _Call, key: CacheKey | None, provider: TextModel, request: TextRequest,
                        end: StreamEnd, attempts: int, started: float) -> Generation:
        """Settle and record a stream that has ended; a complete answer goes into the cache."""
        usage = end.usage
        if usage is None:  # stopped or failed before the vendor's usage: bill what it produced, as an estimate
            usage = Usage(input_tokens=call.estimate.input_tokens, output_tokens=provider.count_tokens(end.text),
                          estimated=True)
        billed = bill(call.info, call.estimate, call.ceiling, usage, end.reported)
        usage, cost = billed.usage, billed.cost_usd
        await self._settle(call, usage, cost)
        gen = Generation(model=call.info.name, usage=usage, cost_usd=cost, estimate=call.estimate,
                         latency_s=time.perf_counter() - started, attempts=attempts, request_id=end.request_id,
                         text=end.text, finish_reason=end.finish_reason or ("stop" if end.error is None else None),
                         tags=call.tags)
        record = billed.mark(CallRecord.from_generation(
            gen, api_type="text", request_hash=call.request_hash, reserved_usd=call.reserved_usd,
            reservation_id=call.reservation.id if call.reservation else None,
            cache_status="off" if key is None else "miss"))
        if end.error is not None:
            self.health.failed(call.info.name)
            record = replace(record, outcome="error", error_type=type(end.error).__name__)
        elif end.closed_early:
            record = replace(record, error_type="StreamClosed")
        else:
            self.health.succeeded(call.info.name)
            if key is not None and self.cache is not None:
                await self.cache.set(key, _text_encode(gen), JSON, cost_usd=cost)
        self._record(record)
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
        self._watch()

        async def attempt(name: str) -> Generation:
            info = self._priced(name, "speech", tags)
            provider = self.speech_model(name)
            key = speech_key(request, model=name, tenant=tags.get("team") or DEFAULT_TENANT,
                             shareable=shareable) if self._caching(cache) else None
            call = _priced_call(info, Usage(characters=len(request.text), estimated=True), tags, key, request, limits)
            return await self._run(call, key, lambda: provider.synthesize(request), _speech_codec, wait_s)

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
        self._watch()

        async def attempt(name: str) -> Generation:
            info = self._priced(name, "embedding", tags)
            provider = self.embedding_model(name)
            tokens = sum(provider.count_tokens(text) for text in request.inputs)
            key = embedding_key(request, model=name, tenant=tags.get("team") or DEFAULT_TENANT,
                                shareable=shareable) if self._caching(cache) else None
            call = _priced_call(info, Usage(input_tokens=tokens, estimated=True), tags, key, request, limits)
            call.ceiling = usage_ceiling(call.estimate, info.context_window, windows=len(request.inputs))
            return await self._run(call, key, lambda: provider.embed(request), _embedding_codec, wait_s)

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
        self._watch()

        async def attempt(name: str) -> Generation:
            info = self._priced(name, "image", tags)
            provider = self.image_model(name)
            key = image_key(request, model=name, tenant=tags.get("team") or DEFAULT_TENANT,
                            shareable=shareable) if self._caching(cache) else None
            call = _priced_call(info, Usage(images=request.n, estimated=True), tags, key, request, limits)
            return await self._run(call, key, lambda: provider.imagine(request), _image_codec, wait_s)

        return await self._with_fallbacks([model, *fallbacks], attempt)

    async def tpm_headroom(self, model: str) -> tuple[float, float] | None:
        """(tokens available now, bucket size) of the model's tokens-per-minute limit at its vendor account, as
        admission counts them, for work packed to fit what is free; None when the catalog gives it no TPM."""
        info = self.catalog.get(model)
        if not info.tpm:
            return None
        self.text_model(model)  # the account is the resolved provider's
        claim = self.policy.vendor_limit(self._account(model), info, "tpm", 0.0)
        (available, _reserved), = await self.admission.levels([claim])
        return available, claim.limit

    # -- the Batch API (gateway/batch.py) -----------------------------------------------------------------

    async def submit_batch(self, items: Sequence[tuple[str, TextRequest]], *, model: str,
                           tags: Mapping[str, str] | None = None,
                           item_tags: Mapping[str, Mapping[str, str]] | None = None, cache: bool = True,
                           shareable: bool = False, template_version: str | None = None,
                           limits: CallLimits = NO_LIMITS) -> BatchTicket:
        """Submit ``(custom id, request)`` items as one Batch API batch, at the batch discount; the cache
        answers what it holds. Collect later, in this or another process, with ``collect_batch``. ``limits``
        are the caller's own budgets (per-minute rates do not apply to batch work)."""
        from contentmill.gateway import batch

        return await batch.submit(self, items, model=model, tags=tags, item_tags=item_tags, cache=cache,
                                  shareable=shareable, template_version=template_version, limits=limits)

    async def batch_pending(self, batch_id: str) -> bool:
        """Whether a submitted batch still waits to be collected (by this or any process sharing the store)."""
        from contentmill.gateway import batch

        return await batch.is_pending(self.settings, batch_id)

    async def collect_batch(self, batch_id: str, *, cancel: bool = False) -> BatchOutcome | None:
        """The results of a submitted batch once it has finished (None while it runs), settled and recorded."""
        from contentmill.gateway import batch

        return await batch.collect(self, batch_id, cancel=cancel)

    # -- the path ---------------------------------------------------------------------------------------

    def _watch(self) -> None:
        """Start the periodic rules (budget used, forecast, error rate, anomalies) and the orphan sweep."""
        if self._monitor is None and self.settings.monitor_interval_s > 0:
            self._monitor = asyncio.get_running_loop().create_task(self._monitor_loop())

    async def _monitor_loop(self) -> None:
        """A sweep at once (a short CLI call charges what a killed run left), then the rules and a sweep each
        interval. ``aclose`` waits for a sweep under way: orphans taken off the books are always recorded."""
        evaluate = False
        while True:
            async with self._sweeping:
                try:
                    await self.sweep_orphans()
                    if evaluate:
                        await asyncio.to_thread(self.alerts.evaluate)
                except ContentmillError as exc:
                    log.warning("monitoring round failed: %s", exc)
            evaluate = True
            await asyncio.sleep(self.settings.monitor_interval_s)

    def _caching(self, wanted: bool) -> bool:
        return wanted and self.cache is not None

    async def _run(self, call: _Call, key: CacheKey | None, invoke: Callable[[], Awaitable[Result]],
                   codec: _Codec, wait_s: float | None) -> Generation:
        """The cache in front of the money path of one model."""

        async def produce() -> Generation:
            result, billed, attempts, started = await self._admitted_call(call, invoke, wait_s)
            gen = _generation(call, result, billed, attempts, time.perf_counter() - started)

            def row() -> CallRecord:
                return billed.mark(CallRecord.from_generation(
                    gen, api_type=call.info.modality, request_hash=call.request_hash, reserved_usd=call.reserved_usd,
                    reservation_id=call.reservation.id if call.reservation else None,
                    cache_status="off" if key is None else "miss"))

            await self._close_call(call, billed, row)
            return gen

        return await produce() if key is None else await self._cached(call, key, produce, codec)

    async def _with_fallbacks(self, names: Sequence[str], attempt: Callable[[str], Awaitable[T]]) -> T:
        last: ContentmillError | None = None
        for index, name in enumerate(names):
            left = self.health.cooling(name)
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

    async def _cached(self, call: _Call, key: CacheKey, produce: Callable[[], Awaitable[Generation]],
                      codec: _Codec) -> Generation:
        """Serve the call from the cache, or produce it once (concurrent identical calls wait for that one)."""
        assert self.cache is not None
        hit = await self.cache.get(key, codec.serializer)
        if hit is not None:
            return self._hit(codec.decode(hit.value, call), call, hit.cost_usd, hit.tier)
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
        return self._hit(codec.decode(value, call), call, saved, "singleflight")

    def _hit(self, gen: Generation, call: _Call, saved: float, tier: str) -> Generation:
        gen = replace(gen, cost_usd=0.0, cached=True, saved_usd=saved, cache_tier=tier, latency_s=0.0,
                      attempts=0, tags=call.tags)
        self._record(CallRecord.from_generation(gen, api_type=call.info.modality, request_hash=call.request_hash,
                                                cache_status=f"hit:{tier}", saved_usd=saved))
        return gen

    async def _admitted_call(self, call: _Call, invoke: Callable[[], Awaitable[Result]], wait_s: float | None
                             ) -> tuple[Result, Bill, int, float]:
        """Admit and call with retries; what the answer is billed (settled by ``_close_call``)."""
        await self._open(call, wait_s)
        started = time.perf_counter()
        result, attempts = await self._invoke(call, invoke, started)
        billed = bill(call.info, call.estimate, call.ceiling, result.usage, _reported(result))
        self.health.succeeded(call.info.name)
        return result, billed, attempts, started

    async def _close_call(self, call: _Call, billed: Bill, row: Callable[[], CallRecord]) -> None:
        """Settle an answered call at what it is billed, then write its ledger row. With ``settle_in_background``
        both happen after the caller has the answer; the reservation holds what was reserved until then."""

        async def close() -> None:
            try:
                await self._settle(call, billed.usage, billed.cost_usd)
            finally:
                self._record(row())  # paid for: the row is written whatever became of the settlement

        if not self._settle_in_background:
            await close()
            return
        task = asyncio.get_running_loop().create_task(close())
        self._settlements.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        """A call closed in the background; one whose settlement failed is said (its reservation stays held
        until swept, charged as reserved, so no budget is passed)."""
        self._settlements.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("settling a paid call failed: %r", task.exception())

    async def _open(self, call: _Call, wait_s: float | None) -> None:
        """Claim every limit that applies and reserve them at once; a refusal is recorded and raised."""
        facts = CallFacts(call.info, self._account(call.info.name), call.tags)
        call.metered = self.policy.claims(facts, call.estimate, call.reserved_usd, time.time(), call.limits)
        try:
            call.reservation = await self._admit(call, wait_s)
        except ContentmillError as error:
            raise self._refused(error, call.info, call.estimate, call.tags) from None

    async def _invoke(self, call: _Call, invoke: Callable[[], Awaitable[T]], started: float) -> tuple[T, int]:
        """Call the provider with retries; a failure releases the reservation and is recorded."""
        try:
            return await call_with_retries(invoke, self.retry)
        except ProviderError as error:
            # An answer that reports usage is billed even when its content is unusable; other failures cost 0.
            billed = (bill(call.info, call.estimate, call.ceiling, error.reported.usage, error.reported)
                      if isinstance(error, UnusableAnswer) else None)
            await self._settle(call, billed.usage if billed else Usage(), billed.cost_usd if billed else 0.0)
            self.health.failed(call.info.name)
            record = CallRecord.from_error(
                error, model=call.info.name, api_type=call.info.modality, estimate=call.estimate, tags=call.tags,
                retries=self.retry.max_retries if error.retryable else 0, latency_s=time.perf_counter() - started,
                request_hash=call.request_hash, reserved_usd=call.reserved_usd,
                reservation_id=call.reservation.id if call.reservation else None)
            if billed is not None:
                record = billed.mark(replace(record, usage=billed.usage, cost_usd=billed.cost_usd))
            self._record(record)
            raise
        except BaseException:
            await self._settle(call, Usage(), 0.0)  # cancelled: nothing was delivered, hold nothing
            raise

    def _account(self, name: str) -> str:
        model = self._text.get(name) or self._speech.get(name) or self._embedding.get(name) or self._image.get(name)
        return provider_account(model) if model is not None else "local"

    async def _admit(self, call: _Call, wait_s: float | None) -> Reservation:
        """Reserve every claim at once, waiting for bucket capacity up to ``wait_s`` (settings default)."""
        deadline = time.monotonic() + (self.settings.admission_wait_s if wait_s is None else wait_s)
        ttl = self._reservation_ttl()
        payload = orjson.dumps({"model": call.info.name, "api_type": call.info.modality,
                                "estimate": call.estimate.as_dict(), "reserved_usd": call.reserved_usd,
                                "tags": call.tags, "request_hash": call.request_hash}).decode()
        claims = [m.claim for m in call.metered]
        await self._seed_budgets(claims)
        while True:
            outcome = await self.admission.acquire(claims, ttl_s=ttl, payload=payload)
            if isinstance(outcome, Reservation):
                if self.journal is not None:
                    self.journal.opened(outcome)
                return outcome
            left = deadline - time.monotonic()
            if outcome.retry_after is None or outcome.retry_after > left:
                raise _refusal_error(outcome, call)
            await asyncio.sleep(max(outcome.retry_after, 0.001))

    def _reservation_ttl(self) -> float:
        """Longer than a call's attempts can last: each ends at the timeout (its whole answer included) and the
        waits between them are capped. A stream, whose length no timeout bounds, renews it (``_keep_alive``)."""
        timeout, retries = self.settings.request_timeout_s, self.settings.max_retries
        return timeout * (retries + 1) + self.retry.max_delay_s * retries + max(5.0, timeout)

    async def _keep_alive(self, reservation: Reservation) -> None:
        """Renew a stream's reservation every third of its time to live, so no sweep takes it while it is read;
        at most for a day (a stream still open then has been abandoned, and its reservation may go)."""
        ttl = self._reservation_ttl()
        until = time.monotonic() + 86400.0
        while time.monotonic() < until:
            await asyncio.sleep(ttl / 3)
            try:
                if not await self.admission.extend(reservation, ttl):
                    return
            except AdmissionUnavailable as exc:
                log.warning("could not renew reservation %s: %s", reservation.id, exc)
                continue
            if self.journal is not None:
                self.journal.opened(reservation)  # the latest line of a reservation is the one that counts

    async def _seed_budgets(self, claims: Sequence[Claim]) -> None:
        """Start each budget window this process has not seen from what the ledger says it spent, so a restart
        (or a budget set mid-period) never forgets money already spent."""
        for claim in claims:
            if claim.key in self._seeded:
                continue
            spent = await self._ledger_spent(claim)
            if spent is None:
                continue
            await self.admission.seed(claim, spent)
            self._seeded.add(claim.key)

    async def _ledger_spent(self, claim: Claim) -> float | None:
        """What the ledger says a budget's window has spent so far; None for a claim that is not a budget."""
        where = self.policy.windows.get(claim.key)
        if where is None:
            return None
        scope_key, scope_value, start = where
        return float(await asyncio.to_thread(self.store.spent, scope_key, scope_value, start, datetime.now(UTC)))

    def _built_admission(self) -> Admission:
        """SQLite in the data directory without Redis; with Redis, Redis, and while it is down what
        CONTENTMILL_ON_REDIS_DOWN says (admission_fallback.py)."""
        s = self.settings
        if not s.redis_url:
            return SQLiteAdmission(s.data_dir / "admission.sqlite3")
        redis = RedisAdmission.from_url(s.redis_url, prefix=s.redis_prefix + "adm:")
        if s.on_redis_down == "refuse":
            return redis
        return FallbackAdmission(redis, SQLiteAdmission(s.data_dir / "admission.sqlite3"),
                                 share=s.redis_down_share, seeder=self._ledger_spent, on_down=self._redis_down)

    def _redis_down(self, reason: str) -> None:
        log.error("%s; admitting against this machine's limits (CONTENTMILL_ON_REDIS_DOWN=local)", reason)
        self.alerts.raise_alert(Alert(
            "redis_down", "critical", "redis",
            f"{reason}. Calls go on against this machine's limits with {self.settings.redis_down_share:.0%} of "
            "what each budget had left (CONTENTMILL_REDIS_DOWN_SHARE) until Redis answers again."))

    async def _settle(self, call: _Call, usage: Usage, cost: float) -> None:
        """Settle the call's reservation at what it was billed. When the limits' store cannot be reached the
        answer, already paid, is still returned and recorded: the settlement waits in this process and is tried
        again before each later settlement and sweep, and when the gateway closes."""
        if call.reservation is None:
            return
        if call.keeper is not None:
            call.keeper.cancel()
        await self._settle_waiting()
        actual = [m.actual(usage, cost) for m in call.metered]
        try:
            await self.admission.reconcile(call.reservation, actual)
        except AdmissionUnavailable as exc:
            self._unsettled.append((call.reservation, actual))
            log.warning("%d settlement(s) wait for the limits' store: %s", len(self._unsettled), exc)
            return
        if self.journal is not None:
            self.journal.settled(call.reservation.id)

    async def _settle_waiting(self) -> None:
        if not self._unsettled:
            return
        async with self._settling:
            while self._unsettled:
                reservation, actual = self._unsettled[0]
                try:
                    await self.admission.reconcile(reservation, actual)
                except AdmissionUnavailable:
                    return
                self._unsettled.pop(0)
                if self.journal is not None:
                    self.journal.settled(reservation.id)

    def _record(self, record: CallRecord) -> None:
        self.ledger.put(record)
        self.alerts.observe(record)

    # -- orphans and closing ----------------------------------------------------------------------------------

    async def sweep_orphans(self, now: float | None = None) -> list[CallRecord]:
        """Charge reservations whose worker died mid-call at their reserved amount, flagged in the ledger."""
        await self._settle_waiting()  # this process's own calls are not orphans
        orphans = await self.admission.orphans(now)
        if self.journal is not None:  # the same reservation may be in both: it is charged once
            taken = {r.id for r in orphans}
            orphans += [r for r in self.journal.orphans(time.time() if now is None else now) if r.id not in taken]
        records = [_orphan_record(r) for r in orphans]
        if records:
            self.store.write_calls(records)
            for record in records:
                self.alerts.observe(record)
        return records

    async def aclose(self) -> None:
        if self._settlements:
            await asyncio.wait(set(self._settlements))
        await self._settle_waiting()
        if self._unsettled:
            log.error("%d paid call(s) could not be settled with the limits' store before closing: their "
                      "reservations stay held until swept, charged as reserved", len(self._unsettled))
        if self._monitor is not None:
            async with self._sweeping:
                self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        for text in self._text.values():
            await text.aclose()
        for speech in self._speech.values():
            await speech.aclose()
        for embedder in self._embedding.values():
            await embedder.aclose()
        for imager in self._image.values():
            await imager.aclose()
        self._text.clear()
        self._speech.clear()
        self._embedding.clear()
        self._image.clear()
        if self.cache is not None and "cache" in self._owned:
            await self.cache.aclose()
        if "admission" in self._owned:
            await self.admission.aclose()
        if self.journal is not None:
            self.journal.close()
        try:
            self.ledger.close()  # writes what is queued (or spools it), whoever owns the store
        finally:  # CostNotRecorded still closes the rest
            if "alerts" in self._owned:
                self.alerts.close()
            if "store" in self._owned:
                self.store.close()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _priced_call(info: ModelInfo, estimate: Usage, tags: dict[str, str], key: CacheKey | None,
                 request: SpeechRequest | EmbeddingRequest | ImageRequest, limits: CallLimits) -> _Call:
    """A call whose estimate is its whole usage (speech, embeddings, images): reserved at the estimate's cost."""
    return _Call(info, estimate, info.cost(estimate), tags, key.digest if key else _request_hash(info.name, request),
                 with_caller(limits))


def _request_hash(model: str, request: TextRequest | SpeechRequest | EmbeddingRequest | ImageRequest,
                  template_version: str | None = None) -> str:
    """A digest of what determines the output, for the ledger when the cache (whose key digest serves) is off."""
    return hashlib.sha256(orjson.dumps([model, repr(request), template_version])).hexdigest()


def _generation(call: _Call, result: Result, billed: Bill, attempts: int, latency_s: float) -> Generation:
    common: dict[str, Any] = {
        "model": call.info.name, "usage": billed.usage, "cost_usd": billed.cost_usd,
        "estimate": call.estimate, "latency_s": latency_s, "attempts": attempts, "request_id": result.request_id,
        "tags": call.tags,
    }
    if isinstance(result, TextResult):
        return Generation(**common, text=result.text, finish_reason=result.finish_reason)
    if isinstance(result, EmbeddingResult):
        return Generation(**common, vectors=result.vectors)
    if isinstance(result, ImageResult):
        return Generation(**common, images=result.images)
    return Generation(**common, audio=result.audio, sample_rate=result.sample_rate, duration_s=result.duration_s)


def alert_sinks(settings: Settings) -> list[AlertSink]:
    """The log always; a webhook when CONTENTMILL_ALERT_WEBHOOK_URL is set; an artifact inside a Prefect run."""
    sinks: list[AlertSink] = [LogSink(), PrefectArtifactSink()]
    if settings.alert_webhook_url is not None:
        sinks.append(WebhookSink(settings.alert_webhook_url))
    return sinks


def _refusal_error(refusal: Refusal, call: _Call | None = None) -> ContentmillError:
    claim = refusal.claim
    if claim.key.startswith("budget:"):
        return BudgetExceeded(claim.label, refusal.used, refusal.reserved, claim.limit, claim.amount)
    unit = "" if claim.kind == "bucket" else " (period quota)"
    return RateLimited(
        f"{claim.label}{unit}: {claim.amount:g} asked, {max(refusal.available, 0):g} available of {claim.limit:g}"
        + (f"; retry in {refusal.retry_after:.2f} s" if refusal.retry_after is not None else ""),
        retry_after=refusal.retry_after,
    )


def _orphan_record(reservation: Reservation) -> CallRecord:
    data = json.loads(reservation.payload or "{}")
    reserved = float(data.get("reserved_usd", 0.0))
    return CallRecord(
        model=data.get("model", "unknown:unknown"), api_type=data.get("api_type", "text"),
        estimate=Usage.from_dict(data.get("estimate", {})), outcome="orphaned", cost_usd=reserved,
        reserved_usd=reserved, error_type="ReservationExpired", request_hash=data.get("request_hash", ""),
        reservation_id=reservation.id, tags=data.get("tags", {}), flagged=True,
    )


@dataclass(frozen=True)
class _Codec:
    """How a generation is kept in the cache and rebuilt from it."""

    serializer: Any
    encode: Callable[[Generation], Any]
    decode: Callable[[Any, _Call], Generation]


def _text_encode(gen: Generation) -> dict[str, Any]:
    return {"text": gen.text, "finish_reason": gen.finish_reason, "usage": gen.usage.as_dict(),
            "request_id": gen.request_id}


def _text_decode(value: dict[str, Any], call: _Call) -> Generation:
    return Generation(
        model=call.info.name, usage=Usage.from_dict(value["usage"]), cost_usd=0.0, estimate=call.estimate,
        latency_s=0.0, request_id=value["request_id"], text=value["text"], finish_reason=value["finish_reason"],
    )


def _speech_encode(gen: Generation) -> bytes:
    return gen.audio or b""


def _speech_decode(audio: bytes, call: _Call) -> Generation:
    info = wav_info(audio)
    usage = Usage(characters=call.estimate.characters, seconds=info.duration_s)
    return Generation(model=call.info.name, usage=usage, cost_usd=0.0, estimate=call.estimate, latency_s=0.0,
                      audio=audio, sample_rate=info.sample_rate, duration_s=info.duration_s)


def _embedding_encode(gen: Generation) -> dict[str, Any]:
    return {"vectors": gen.vectors, "usage": gen.usage.as_dict(), "request_id": gen.request_id}


def _embedding_decode(value: dict[str, Any], call: _Call) -> Generation:
    return Generation(model=call.info.name, usage=Usage.from_dict(value["usage"]), cost_usd=0.0,
                      estimate=call.estimate, latency_s=0.0, request_id=value["request_id"], vectors=value["vectors"])


def _image_encode(gen: Generation) -> bytes:
    """The images as bytes (never JSON: base64 of a picture can look like a credential to the JSON check): a
    count, then each image's length and bytes."""
    images = gen.images or ()
    return struct.pack("<I", len(images)) + b"".join(struct.pack("<I", len(i)) + i for i in images)


def _image_decode(packed: bytes, call: _Call) -> Generation:
    (count,), offset, images = struct.unpack_from("<I", packed), 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<I", packed, offset)
        images.append(packed[offset + 4: offset + 4 + length])
        offset += 4 + length
    return Generation(model=call.info.name, usage=Usage(images=count), cost_usd=0.0, estimate=call.estimate,
                      latency_s=0.0, images=tuple(images))


_text_codec = _Codec(JSON, _text_encode, _text_decode)
_embedding_codec = _Codec(JSON, _embedding_encode, _embedding_decode)
_speech_codec = _Codec(WAV, _speech_encode, _speech_decode)
_image_codec = _Codec(IMAGES, _image_encode, _image_decode)
