"""Batch API calls through the gateway: priced at the batch discount, admitted, settled and recorded per item.

``submit`` serves what the cache already holds, prices the rest at the vendor's batch discount, reserves it
against every budget and quota that applies (per-minute buckets do not apply: the vendor runs batch work apart
from online traffic, within its 24 h window), submits one batch, and keeps a *pending* record of it (in Redis
when configured, else in the data directory) so that ``collect`` works in a later process. ``collect`` reads the
answers of a finished batch, settles the reservation with what was actually used, writes one ledger row per item
and stores each answer in the cache, so the same request online later costs nothing. The pending records are
pending.py's; the money is the ``Meter``'s, as for an online call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, cast

from contentmill.cache import Cache, CacheKey, text_key
from contentmill.catalog import Catalog, ModelInfo
from contentmill.errors import (
    BadRequest,
    ConfigError,
    ContentmillError,
    ProviderError,
    ProviderUnavailable,
)
from contentmill.gateway.admission import Claim, Reservation
from contentmill.gateway.billing import Call, reservation_payload
from contentmill.gateway.generation import DEFAULT_TENANT, TEXT, Generation, request_hash
from contentmill.gateway.meter import Meter, refusal_error
from contentmill.gateway.pending import (
    PendingBatch,
    PendingItem,
    PendingStore,
    pending_batch,
    pending_batches,
)
from contentmill.gateway.policy import NO_LIMITS, CallFacts, CallLimits, Unit, units
from contentmill.metering import Usage, usage_ceiling
from contentmill.providers.base import TextModel
from contentmill.providers.batch import BatchAnswer, BatchClient, BatchStatus, as_requests
from contentmill.providers.openai_compat import OpenAICompatTextModel
from contentmill.requests import TextRequest
from contentmill.settings import Settings

log = logging.getLogger("contentmill.gateway.batch")
WINDOW_S = 24 * 3600.0
SLACK_S = 3600.0  # a reservation outlives the vendor's window by this much before it is swept as an orphan
MODE_TAG = "submit_mode"


@dataclass(frozen=True, slots=True)
class BatchTicket:
    """What ``submit`` did: the batch it created (None when nothing was left to submit), the cache hits, and the
    items an earlier batch still pending already asks (custom id -> that batch's id: collect it, never pay twice).
    ``hashes`` gives each item's request hash, by which a pending batch's results are matched."""

    batch_id: str | None
    model: str
    submitted: tuple[str, ...]
    cached: Mapping[str, Generation] = field(default_factory=dict)
    reserved_usd: float = 0.0
    waiting: Mapping[str, str] = field(default_factory=dict)
    hashes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchItemResult:
    custom_id: str
    generation: Generation | None = None
    error: str | None = None  # the error's class and message when the item failed
    request_hash: str = ""


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What ``collect`` found: the batch's final status and one result per submitted item."""

    batch_id: str
    status: str
    results: Mapping[str, BatchItemResult]
    cost_usd: float

    @property
    def ok(self) -> int:
        return sum(r.generation is not None for r in self.results.values())


class Host(Protocol):
    """What the Batch API needs of the gateway (``Gateway`` is one)."""

    settings: Settings
    catalog: Catalog
    cache: Cache | None
    meter: Meter

    def priced(self, name: str, modality: str, tags: Mapping[str, str]) -> ModelInfo: ...
    def account(self, name: str) -> str: ...
    def text_model(self, name: str) -> TextModel: ...
    def text_estimate(self, provider: TextModel, info: ModelInfo, request: TextRequest, tags: Mapping[str, str]
                      ) -> Usage: ...


def batch_client(gateway: Host, model: str) -> tuple[BatchClient, ModelInfo]:
    provider = gateway.text_model(model)
    if not isinstance(provider, OpenAICompatTextModel):
        raise ConfigError(f"{model} is not served by an OpenAI-compatible API, so it has no Batch API; "
                          "submit it online instead")
    return BatchClient(provider), gateway.catalog.get(model)


async def submit(gateway: Host, items: Sequence[tuple[str, TextRequest]], *, model: str,
                 tags: Mapping[str, str] | None = None, item_tags: Mapping[str, Mapping[str, str]] | None = None,
                 cache: bool = True, shareable: bool = False, template_version: str | None = None,
                 limits: CallLimits = NO_LIMITS) -> BatchTicket:
    """Submit ``items`` (custom id, request) as one batch of ``model``; cache hits are answered at once."""
    requests = as_requests(items)
    base = {**(tags or {}), MODE_TAG: "batch"}
    info = gateway.priced(model, "text", base)
    if not info.batch_discount:
        log.info("%s has no batch discount in the catalog: batch calls are priced as online ones", model)
    client, _ = batch_client(gateway, model)
    caching = cache and gateway.cache is not None
    asked = {item.request_hash: batch.batch_id for batch in await pending_batches(gateway.settings)
             if batch.model == model for item in batch.items}
    cached: dict[str, Generation] = {}
    waiting: dict[str, str] = {}
    hashes: dict[str, str] = {}
    pending: list[PendingItem] = []
    claims: dict[str, Claim] = {}
    for custom_id, request in requests.items():
        item = {**base, **((item_tags or {}).get(custom_id) or {})}
        estimate = gateway.text_estimate(client.model, info, request, item)
        key = text_key(request, model=model, tenant=item.get("team") or DEFAULT_TENANT,
                       template_version=template_version, shareable=shareable) if caching else None
        digest = hashes[custom_id] = key.digest if key else request_hash(model, request, template_version)
        call = Call(info, estimate, info.cost(estimate, batch=True), item, digest, limits, batch=True)
        if key is not None and (hit := await _cache_hit(gateway, key, call)):
            cached[custom_id] = hit
            continue
        if digest in asked:
            waiting[custom_id] = asked[digest]
            continue
        metered = [m for m in gateway.meter.policy.claims(CallFacts(info, gateway.account(model), item), estimate,
                                                          call.reserved_usd, time.time(), limits)
                   if m.claim.kind == "counter"]
        for m in metered:
            claims[m.claim.key] = _merged(claims.get(m.claim.key), m.claim)
        pending.append(PendingItem(custom_id, digest, estimate, call.reserved_usd, item, key.path if key else None,
                                   tuple((m.claim.key, m.unit) for m in metered)))
    if not pending:
        return BatchTicket(None, model, (), cached, waiting=waiting, hashes=hashes)
    reservation = await _reserve(gateway.meter, info, list(claims.values()), pending)
    try:
        status = await client.submit({p.custom_id: requests[p.custom_id] for p in pending},
                                     metadata={"source": "contentmill"})
    except BaseException as error:
        await gateway.meter.reconcile(reservation, [0.0] * len(reservation.claims))
        if isinstance(error, ContentmillError):
            for failed in pending:
                gateway.meter.record(_item_call(info, failed, reservation).failed(error)[1])
        raise
    record = PendingBatch(status.id, model, time.time(), reservation.to_json(), tuple(pending))
    store = PendingStore(gateway.settings)
    try:
        await store.put(record)
    finally:
        await store.aclose()
    log.info("batch %s submitted: %d requests to %s, %.6f USD reserved", status.id, len(pending), model,
             record.reserved_usd)
    return BatchTicket(status.id, model, tuple(p.custom_id for p in pending), cached, record.reserved_usd,
                       waiting, hashes)


def _item_call(info: ModelInfo, item: PendingItem, reservation: Reservation | None = None) -> Call:
    """A submitted item as the meter sees a call: its estimate, reservation share, tags and usage ceiling."""
    return Call(info, item.estimate, item.reserved_usd, dict(item.tags), item.request_hash,
                ceiling=usage_ceiling(item.estimate, info.context_window), batch=True, reservation=reservation)


def _merged(existing: Claim | None, claim: Claim) -> Claim:
    if existing is None:
        return claim
    return Claim(claim.key, claim.kind, existing.amount + claim.amount, claim.limit, claim.period_s,
                 max(existing.ttl_s, claim.ttl_s), claim.label)


async def _cache_hit(gateway: Host, key: CacheKey, call: Call) -> Generation | None:
    assert gateway.cache is not None
    hit = await gateway.cache.get(key, TEXT.serializer)
    if hit is None:
        return None
    return gateway.meter.hit(TEXT, hit.value, call, hit.cost_usd, hit.tier)


async def _reserve(meter: Meter, info: ModelInfo, claims: list[Claim], pending: Sequence[PendingItem]
                   ) -> Reservation:
    """Reserve the whole batch at once against every budget and quota, or refuse it (recording each item)."""
    payload = reservation_payload(info.name, "text", sum((p.estimate for p in pending), Usage()),
                                  sum(p.reserved_usd for p in pending), pending[0].tags, "")
    outcome = await meter.reserve(claims, ttl_s=WINDOW_S + SLACK_S, payload=payload)
    if isinstance(outcome, Reservation):
        return outcome
    error = refusal_error(outcome)
    for item in pending:  # refused: nothing was reserved for it
        meter.record(_item_call(info, replace(item, reserved_usd=0.0)).failed(error)[1])
    raise error


async def collect(gateway: Host, batch_id: str, *, cancel: bool = False,
                  on_status: Callable[[BatchStatus], None] | None = None) -> BatchOutcome | None:
    """Collect a finished batch: settle, record and cache each item. None while the batch is still running
    (``cancel=True`` cancels it first, and then collects what it finished)."""
    pending = await pending_batch(gateway.settings, batch_id)
    client, info = batch_client(gateway, pending.model)
    found = await client.cancel(batch_id) if cancel else await client.status(batch_id)
    while cancel and not found.done:
        await asyncio.sleep(0.2)
        found = await client.status(batch_id)
    if on_status is not None:
        on_status(found)
    if not found.done:
        return None
    answers = await client.answers(found) if found.status in ("completed", "expired", "cancelled") else {}
    store = PendingStore(gateway.settings)
    try:
        if not await store.take(batch_id):
            raise ConfigError(f"batch {batch_id} was collected by another process meanwhile")
    finally:
        await store.aclose()
    return await _settle(gateway, pending, found, answers, info)


async def wait_and_collect(gateway: Host, batch_id: str, *, timeout_s: float, poll_s: float = 1.0,
                           max_poll_s: float = 60.0, on_status: Callable[[BatchStatus], None] | None = None
                           ) -> BatchOutcome | None:
    """Poll with exponential backoff (``poll_s`` doubling up to ``max_poll_s``) until the batch has finished,
    then collect it; None if it is still running after ``timeout_s`` (it stays pending: collect it later)."""
    deadline = time.monotonic() + timeout_s
    wait = poll_s
    while True:
        outcome = await collect(gateway, batch_id, on_status=on_status)
        left = deadline - time.monotonic()
        if outcome is not None or left <= 0:
            return outcome
        await asyncio.sleep(min(wait, left))
        wait = min(wait * 2, max_poll_s)


async def _settle(gateway: Host, pending: PendingBatch, found: BatchStatus, answers: Mapping[str, BatchAnswer],
                  info: ModelInfo) -> BatchOutcome:
    reservation = Reservation.from_json(pending.reservation)
    latency = max(0.0, time.time() - pending.submitted_at)
    actual: dict[str, float] = {claim.key: 0.0 for claim in reservation.claims}
    results: dict[str, BatchItemResult] = {}
    total = 0.0

    def charge(item: PendingItem, usage: Usage, cost: float) -> None:
        """Add what one item is billed to the claims it counts against."""
        nonlocal total
        total += cost
        for key, unit in item.claims:
            actual[key] = actual.get(key, 0.0) + (cost if unit == "usd" else units(usage, cast(Unit, unit)))

    for item in pending.items:
        call = _item_call(info, item, reservation)
        answer = answers.get(item.custom_id)
        result = answer.result if answer is not None else None
        if result is None:
            error = (answer.error if answer is not None else None) or _missing(found, info.name)
            billed, record = call.failed(error, latency_s=latency)
            if billed is not None:  # an unusable answer that reports usage: the vendor bills it, so it is here
                charge(item, billed.usage, billed.cost_usd)
            gateway.meter.record(record)
            results[item.custom_id] = BatchItemResult(item.custom_id, error=f"{type(error).__name__}: {error}",
                                                      request_hash=item.request_hash)
            continue
        billed = call.bill(result.usage, result.reported)
        charge(item, billed.usage, billed.cost_usd)
        gen = Generation(model=info.name, usage=billed.usage, cost_usd=billed.cost_usd, estimate=item.estimate,
                         latency_s=latency, request_id=result.request_id, text=result.text,
                         finish_reason=result.finish_reason, tags=item.tags)
        gateway.meter.record(call.answered(gen, billed, "off" if item.cache_key is None else "miss"))
        await _remember(gateway, item, gen)
        results[item.custom_id] = BatchItemResult(item.custom_id, gen, request_hash=item.request_hash)
    await gateway.meter.reconcile(reservation, [actual.get(c.key, 0.0) for c in reservation.claims])
    log.info("batch %s %s: %d of %d items answered, %.6f USD (%.6f reserved)", pending.batch_id, found.status,
             sum(r.generation is not None for r in results.values()), len(results), total, pending.reserved_usd)
    return BatchOutcome(pending.batch_id, found.status, results, total)


def _missing(found: BatchStatus, model: str) -> ProviderError:
    if found.status == "failed":
        detail = "; ".join(found.errors[:5]) or "no reason given"
        return BadRequest(f"batch {found.id} failed validation: {detail}", model=model)
    return ProviderUnavailable(f"batch {found.id} ended {found.status} before answering this request", model=model)


async def _remember(gateway: Host, item: PendingItem, gen: Generation) -> None:
    """Store the answer as the online call's cache entry would be, so the same request later costs nothing."""
    if gateway.cache is None or item.cache_key is None:
        return
    namespace, scope, digest = item.cache_key.split("/")
    await gateway.cache.set(CacheKey(namespace, scope, digest), TEXT.encode(gen), TEXT.serializer,
                            cost_usd=gen.cost_usd)
