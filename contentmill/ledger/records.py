"""What the ledger keeps: one ``CallRecord`` per model call, budgets and alerts.

A record is shown to anyone who can read a report, so it never holds a prompt or a credential: tags are
checked by ``check_tags`` and a tag that looks like a secret is refused with ``UnsafeTag``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contentmill.errors import CatalogError, GatewayError, LedgerError, UnsafeTag
from contentmill.ids import new_id, ordered_id
from contentmill.metering import Usage

ApiType = Literal["text", "speech", "video", "embedding", "image"]  # the catalog's modalities
Outcome = Literal["ok", "error", "refused", "orphaned", "cached"]
Period = Literal["day", "week", "month"]
Severity = Literal["info", "warning", "critical"]

API_TYPES: tuple[str, ...] = get_args(ApiType)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
PERIODS: tuple[str, ...] = get_args(Period)
SEVERITIES: tuple[str, ...] = get_args(Severity)

MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
TAG_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
HEX = re.compile(r"^[0-9a-f]*$")
ERROR_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")
# Tags of a call whose vendor reported usage that could not be billed: the figures as sent, and why.
VENDOR_USAGE_TAG = "vendor_usage"
USAGE_PROBLEM_TAG = "usage_problem"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime, what: str = "timestamp") -> datetime:
    """The same instant in UTC; a naive datetime is refused, since its zone would be a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise LedgerError(f"{what} {moment.isoformat()} has no time zone; give an aware datetime (e.g. UTC)")
    return moment.astimezone(UTC)


# Credentials as vendors and protocols format them. A match refuses the tag; the value is never echoed.
_SECRET_VALUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an 'sk-' API key", re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")),
    # "Bearer <credential>": 12+ characters with a digit, or 20+; prose like "basic template" passes.
    ("an HTTP Authorization credential", re.compile(
        r"(?i)\b(bearer|basic|token)\s+((?=\S*\d)[\w.~+/=\-]{12,}|[\w.~+/=\-]{20,})"
    )),
    ("a GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a URL with a password", re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)),
)
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_\-+/=.]{32,}$")
# Lower-case letters and digits only (ids, hex digests, names like "shop"): no pattern above can match such a
# value (each needs a separator, an upper-case letter, a space or a scheme), so it skips them.
_PLAIN_VALUE = re.compile(rf"[a-z0-9]{{1,{MAX_TAG_VALUE}}}")
# Tag names that say they hold a credential: checked per word, so "tokenizer" or "monkey" pass.
_SECRET_KEY_WORD = re.compile(
    r"^(api|access|private|secret|auth|session|refresh|client|signing|bearer)?"
    r"(key|keys|secret|secrets|token|tokens|password|passwords|passwd|pwd|passphrase|credential|credentials)$"
)
_SECRET_KEY_NAMES = frozenset({"authorization", "auth", "bearer", "cookie", "apikey"})


def _key_words(key: str) -> list[str]:
    """``openaiApiKey`` and ``OPENAI_API_KEY`` both give ``[openai, api, key]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def _char_class(char: str) -> int:
    return 0 if char.islower() else 1 if char.isupper() else 2 if char.isdigit() else 3


def _looks_random(text: str) -> bool:
    """A long token mixing upper, lower and digits with frequent switches between them, as random keys do.

    Random base62 switches class at ~60% of positions; CamelCase names and hex ids (no upper case) do not.
    """
    if not _TOKEN_CHARS.match(text):
        return False
    classes = [_char_class(c) for c in text]
    if not {0, 1, 2} <= set(classes):
        return False
    switches = sum(a != b for a, b in zip(classes, classes[1:], strict=False))
    return switches >= 0.4 * len(text)


def secret_kind(text: str) -> str | None:
    """What kind of credential ``text`` looks like, or None when it looks like an ordinary value."""
    for kind, pattern in _SECRET_VALUES:
        if pattern.search(text):
            return kind
    return "a random credential-like string" if _looks_random(text) else None


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A plain copy of ``tags`` after refusing anything that is not a short, credential-free string pair."""
    try:
        items = tuple(tags.items())
        hash(items)
    except TypeError:  # unhashable values: checked (and refused) below
        return _check_tags(tags.items())
    return dict(_checked_pairs(items))


@lru_cache(maxsize=4096)
def _checked_pairs(items: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The same few tag sets recur on every call of a job: check each set once, and within a new set each pair
    seen before once (a set that differs by a request id checks only that pair)."""
    return tuple(pair for item in items for pair in _checked_pair(item))


@lru_cache(maxsize=4096)
def _checked_pair(item: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(_check_tags((item,)).items())


def _check_tags(pairs: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in pairs:
        if not isinstance(key, str) or not isinstance(value, str):
            raise LedgerError(f"tags are str -> str; tag {key!r} has a {type(value).__name__} value")
        _check_key(key)
        if _PLAIN_VALUE.fullmatch(value):
            checked[key] = value  # a fresh request id on every call, say: nothing to look for in it
            continue
        value_kind = secret_kind(value)
        if value_kind:
            raise UnsafeTag(
                f"the value of tag {key!r} looks like {value_kind}; ledger rows are shown to anyone: "
                f"remove it (the value is not repeated here)"
            )
        if not value.isprintable():
            raise LedgerError(f"tag {key!r} holds control characters; tag values are one printable line")
        if len(value) > MAX_TAG_VALUE:
            raise LedgerError(f"tag {key!r} is {len(value)} characters; keep tag values to {MAX_TAG_VALUE}")
        checked[key] = value
    return checked


@lru_cache(maxsize=1024)
def _check_key(key: str) -> None:
    """Refuse a tag name that is malformed or says it holds a credential (a name passes once, then from the
    cache: the same few names come with every call)."""
    key_kind = secret_kind(key)
    if key_kind:
        raise UnsafeTag(f"a tag name looks like {key_kind}; ledger rows are shown to anyone: remove it")
    if not TAG_KEY.match(key) or len(key) > MAX_TAG_KEY:
        raise LedgerError(
            f"tag name {key!r} must start with a letter or '_' and hold only letters, digits, '_', '.', "
            f"'-' (at most {MAX_TAG_KEY} characters)"
        )
    words = _key_words(key)
    if any(_SECRET_KEY_WORD.match(w) or w in _SECRET_KEY_NAMES for w in words):
        raise UnsafeTag(
            f"tag {key!r} is named like a credential; ledger rows are shown to anyone, so keys, secrets, "
            f"tokens and passwords never go into tags: remove it"
        )


def _tag_text(text: str) -> str:
    """``text`` as a tag value: one printable line of at most MAX_TAG_VALUE characters."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= MAX_TAG_VALUE else text[: MAX_TAG_VALUE - 3] + "..."


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise LedgerError(f"{what} must be one of {', '.join(allowed)} (got {value!r})")


class GenerationLike(Protocol):
    """What the gateway's ``Generation`` reports about a finished call (the ledger does not import it)."""

    @property
    def model(self) -> str: ...
    @property
    def usage(self) -> Usage: ...
    @property
    def estimate(self) -> Usage: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def attempts(self) -> int: ...
    @property
    def cached(self) -> bool: ...
    @property
    def tags(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One model call as billed: what was estimated and reserved, what it used and cost, and how it ended.

    ``cost_usd`` is what the call is charged (0 for a cache hit or a refusal); ``saved_usd`` is what a cache
    hit avoided paying. ``usage`` is None when the provider never answered. ``latency_s`` is the provider's
    time; ``admission_wait_s`` the time the call waited for our own rate limits before it.
    """

    model: str
    api_type: ApiType
    estimate: Usage
    outcome: Outcome
    usage: Usage | None = None
    cost_usd: float = 0.0
    reserved_usd: float = 0.0
    saved_usd: float = 0.0
    latency_s: float = 0.0
    admission_wait_s: float = 0.0
    error_type: str | None = None
    retries: int = 0
    cache_status: str = "off"
    request_hash: str = ""
    reservation_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    flagged: bool = False
    provider: str = ""
    id: str = field(default_factory=ordered_id)
    ts: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        provider, sep, bare = self.model.partition(":")
        if not sep or not provider or not bare:
            raise LedgerError(f"model must be named 'provider:model' (got {self.model!r})")
        if not self.provider:
            object.__setattr__(self, "provider", provider)
        elif self.provider != provider:
            raise LedgerError(f"provider {self.provider!r} does not match model {self.model!r}")
        _one_of(self.api_type, API_TYPES, "api_type")
        _one_of(self.outcome, OUTCOMES, "outcome")
        for name in ("cost_usd", "reserved_usd", "saved_usd", "latency_s", "admission_wait_s", "retries"):
            if getattr(self, name) < 0:
                raise LedgerError(f"{name} cannot be negative (got {getattr(self, name)})")
        for name, limit in (("model", 200), ("cache_status", 32), ("request_hash", 128)):
            text = getattr(self, name)
            if len(text) > limit or not text.isprintable():
                raise LedgerError(f"{name} must be printable and at most {limit} characters ({text[:40]!r})")
        if not HEX.match(self.request_hash):
            raise LedgerError("request_hash must be lower-case hex: a digest, never the request itself")
        if self.error_type is not None and not ERROR_TYPE.match(self.error_type):
            raise LedgerError(f"error_type is an exception name like ProviderTimeout: {self.error_type!r}")
        object.__setattr__(self, "ts", as_utc(self.ts, "record ts"))
        object.__setattr__(self, "tags", check_tags(self.tags))
        if not self.estimate.estimated:  # an estimate is ours by definition; stored and read back as such
            object.__setattr__(self, "estimate", self.estimate.with_estimate(True))

    @classmethod
    def from_generation(
        cls,
        gen: GenerationLike,
        *,
        api_type: ApiType,
        request_hash: str = "",
        reserved_usd: float = 0.0,
        reservation_id: str | None = None,
        cache_status: str | None = None,
        saved_usd: float = 0.0,
        admission_wait_s: float = 0.0,
    ) -> CallRecord:
        """The record of a call that returned; a cache hit is charged nothing and keeps what it saved."""
        return cls(
            model=gen.model, api_type=api_type, estimate=gen.estimate, usage=gen.usage,
            outcome="cached" if gen.cached else "ok", cost_usd=0.0 if gen.cached else gen.cost_usd,
            reserved_usd=reserved_usd, saved_usd=saved_usd, latency_s=gen.latency_s, admission_wait_s=admission_wait_s,
            retries=max(0, gen.attempts - 1), cache_status=cache_status or ("hit" if gen.cached else "off"),
            request_hash=request_hash, reservation_id=reservation_id, tags=gen.tags,
        )

    @classmethod
    def from_error(
        cls,
        error: BaseException,
        *,
        model: str,
        api_type: ApiType,
        estimate: Usage,
        tags: Mapping[str, str] | None = None,
        retries: int = 0,
        latency_s: float = 0.0,
        request_hash: str = "",
        reserved_usd: float = 0.0,
        reservation_id: str | None = None,
        admission_wait_s: float = 0.0,
    ) -> CallRecord:
        """The record of a call that failed: ``refused`` when the gateway stopped it before any provider
        was paid (GatewayError, CatalogError), else ``error``; only the exception's class name is kept."""
        refused = isinstance(error, GatewayError | CatalogError)
        return cls(
            model=model, api_type=api_type, estimate=estimate, usage=None,
            outcome="refused" if refused else "error", error_type=type(error).__name__, retries=retries,
            latency_s=latency_s, admission_wait_s=admission_wait_s, request_hash=request_hash,
            reserved_usd=reserved_usd, reservation_id=reservation_id, tags=tags or {},
        )

    def usage_rejected(self, figures: str, problem: str) -> CallRecord:
        """This record flagged, keeping the vendor's usage figures that were not billed and why (as tags)."""
        kept = {name: "(withheld: it held something like a credential)" if secret_kind(text) else _tag_text(text)
                for name, text in ((VENDOR_USAGE_TAG, figures), (USAGE_PROBLEM_TAG, problem))}
        return replace(self, flagged=True, tags={**self.tags, **kept})

    @property
    def vendor_usage(self) -> str | None:
        """The vendor's usage figures when they could not be billed (the call was billed at its estimate)."""
        return self.tags.get(VENDOR_USAGE_TAG)

    @property
    def tokens(self) -> int:
        """Input plus output tokens: the provider's count when known, else the estimate."""
        return (self.usage or self.estimate).total_tokens

    @property
    def charged(self) -> bool:
        """Whether the call is paid for: a cache hit or a refusal costs nothing."""
        return self.outcome not in ("cached", "refused")


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit for one scope (``team=ads``, ``api_type=speech``, ``all=*``) per calendar period.

    ``soft_pct`` is the percentage of the limit at which an alert is raised; ``hard`` budgets refuse calls.
    """

    scope_key: str
    scope_value: str
    period: Period
    limit_usd: float
    timezone: str = "UTC"
    soft_pct: float = 80.0
    hard: bool = True
    created_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        _one_of(self.period, PERIODS, "budget period")
        if not self.scope_key or not self.scope_value:
            raise LedgerError("a budget needs a scope, e.g. team=ads, api_type=speech or all=*")
        if self.limit_usd <= 0:
            raise LedgerError(f"budget limit_usd must be positive (got {self.limit_usd})")
        if not 0 < self.soft_pct <= 100:
            raise LedgerError(f"soft_pct is a percentage in (0, 100] (got {self.soft_pct})")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problem = f"unknown time zone {self.timezone!r}: use an IANA name, e.g. Europe/Paris"
            raise LedgerError(problem) from None
        object.__setattr__(self, "created_at", as_utc(self.created_at, "budget created_at"))

    @property
    def name(self) -> str:
        return f"{self.scope_key}={self.scope_value}/{self.period}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator should know. ``subject`` (with ``rule``) is what deduplication compares."""

    rule: str
    severity: Severity
    subject: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: datetime = field(default_factory=utcnow)
    id: str = field(default_factory=new_id)
    delivered: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _one_of(self.severity, SEVERITIES, "alert severity")
        object.__setattr__(self, "ts", as_utc(self.ts, "alert ts"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "ts": self.ts.isoformat(), "rule": self.rule, "severity": self.severity,
            "subject": self.subject, "message": self.message, "data": dict(self.data),
            "delivered": dict(self.delivered),
        }
