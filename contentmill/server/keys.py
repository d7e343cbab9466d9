"""Virtual keys: what a team's service presents to ``contentmill serve`` instead of a vendor's key.

A key is ``cm-`` and 43 URL-safe characters (256 random bits). It is shown once, when it is made; the ledger
database keeps only its SHA-256 (a key that random needs no salt or slow hash: nothing can be guessed) and a
short hint to tell keys apart. A lookup hashes the presented key and compares digests in constant time.

A key belongs to a team (optionally a project and a user); those tags, and ``vkey=<id>``, go on every call made
with it, so the budgets, quotas and rate limits set for the team apply, and reports can be cut by key. The key
may carry its own budget (USD per period), RPM and TPM, the models or tiers it may use, and an expiry.

Revocation reaches every replica within ``CACHE_S``: a replica remembers a lookup no longer than that, and the
keys live in the ledger database that the replicas share (PostgreSQL in the services profile).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from contentmill.errors import ConfigError
from contentmill.ids import new_id
from contentmill.ledger import LedgerStore, check_tags
from contentmill.ledger.schema import virtual_keys

PREFIX = "cm-"
SECRET_BYTES = 32
CACHE_S = 1.0  # how long a replica trusts a lookup: revocation takes effect everywhere within this
KEY_TAG = "vkey"  # the tag naming the key on every call made with it
Role = Literal["api", "read"]
ROLES: tuple[Role, ...] = ("api", "read")
PERIODS = ("day", "week", "month")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _hint(secret: str) -> str:
    return f"{secret[:7]}…{secret[-4:]}"


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A key as stored: everything but the secret. ``models`` holds model names and ``tier:NAME`` entries."""

    id: str
    name: str
    team: str
    hint: str
    project: str | None = None
    user: str | None = None
    role: Role = "api"
    budget_usd: float | None = None
    period: str = "month"
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] = ()
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    rotated_at: datetime | None = None

    def tags(self) -> dict[str, str]:
        """The tags every call made with this key carries."""
        tags = {"team": self.team, KEY_TAG: self.id}
        if self.project:
            tags["project"] = self.project
        if self.user:
            tags["user"] = self.user
        return tags

    def state(self, now: datetime | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    def allows(self, model: str, tier: str | None = None) -> bool:
        """Whether the key may call ``model`` (when the router chose it, from ``tier``); no list allows all."""
        if not self.models:
            return True
        return model in self.models or (tier is not None and f"tier:{tier}" in self.models)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "hint": self.hint, "team": self.team, "project": self.project,
            "user": self.user, "role": self.role, "budget_usd": self.budget_usd, "period": self.period,
            "rpm": self.rpm, "tpm": self.tpm, "models": list(self.models), "state": self.state(),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "rotated_at": self.rotated_at.isoformat() if self.rotated_at else None,
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made (or rotated), with its secret: the only moment the secret exists outside the client."""

    key: VirtualKey
    secret: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.key.as_dict(), "key": self.secret}


def _row(key: VirtualKey, key_hash: str) -> dict[str, Any]:
    return {
        "id": key.id, "key_hash": key_hash, "hint": key.hint, "name": key.name, "team": key.team,
        "project": key.project, "user": key.user, "role": key.role, "budget_usd": key.budget_usd,
        "period": key.period, "rpm": key.rpm, "tpm": key.tpm, "models": list(key.models),
        "created_at": key.created_at, "expires_at": key.expires_at, "revoked_at": key.revoked_at,
        "rotated_at": key.rotated_at,
    }


def _key(row: Any) -> VirtualKey:
    return VirtualKey(
        id=row["id"], name=row["name"], team=row["team"], hint=row["hint"], project=row["project"],
        user=row["user"], role=row["role"], budget_usd=row["budget_usd"], period=row["period"], rpm=row["rpm"],
        tpm=row["tpm"], models=tuple(row["models"] or ()), created_at=row["created_at"],
        expires_at=row["expires_at"], revoked_at=row["revoked_at"], rotated_at=row["rotated_at"],
    )


def _positive(value: float | None, what: str) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{what} must be a positive number (got {value})")


class KeyNotFound(ConfigError):
    """No key has this id."""


class KeyStore:
    """Virtual keys in the ledger database, with a per-process lookup cache of ``CACHE_S``."""

    UNSEEN: Any = object()  # what ``peek`` says when the database must be asked

    def __init__(self, store: LedgerStore, *, cache_s: float = CACHE_S) -> None:
        self.store = store
        self.cache_s = cache_s
        self._seen: dict[str, tuple[float, VirtualKey | None]] = {}
        self._lock = threading.Lock()

    # -- making and changing keys -----------------------------------------------------------------------------

    def create(
        self,
        team: str,
        *,
        name: str = "",
        project: str | None = None,
        user: str | None = None,
        role: str = "api",
        budget_usd: float | None = None,
        period: str = "month",
        rpm: int | None = None,
        tpm: int | None = None,
        models: Sequence[str] = (),
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        """Make a key; the returned secret is not kept anywhere."""
        check_tags({"team": team, **({"project": project} if project else {}), **({"user": user} if user else {})})
        if role not in ROLES:
            raise ConfigError(f"a key's role is one of {', '.join(ROLES)} (got {role!r})")
        if period not in PERIODS:
            raise ConfigError(f"a key's budget period is one of {', '.join(PERIODS)} (got {period!r})")
        _positive(budget_usd, "a key's budget_usd")
        _positive(rpm, "a key's rpm")
        _positive(tpm, "a key's tpm")
        if isinstance(models, str) or not all(isinstance(m, str) for m in models):
            raise ConfigError(f"a key's models are a list of model names or tier:NAME entries (got {models!r})")
        if expires_at is not None and expires_at.tzinfo is None:
            raise ConfigError(f"give the expiry with a time zone, e.g. {expires_at.isoformat()}Z or +00:00")
        cleaned = tuple(dict.fromkeys(m.strip() for m in models if m.strip()))
        key_id = "vk" + new_id()[:16]
        secret = PREFIX + secrets.token_urlsafe(SECRET_BYTES)
        key = VirtualKey(id=key_id, name=name or key_id, team=team, hint=_hint(secret), project=project,
                         user=user, role=role, budget_usd=budget_usd, period=period,
                         rpm=rpm, tpm=tpm, models=cleaned, expires_at=expires_at)
        with self.store.transaction("create a virtual key") as conn:
            conn.execute(virtual_keys.insert().values(**_row(key, digest(secret))))
        return IssuedKey(key, secret)

    def rotate(self, key_id: str) -> IssuedKey:
        """A new secret for the same key (same id, tags, limits and spend); the old secret stops working."""
        key = self.get(key_id)
        if key.state() == "revoked":
            raise ConfigError(f"key {key_id} is revoked; create a new one")
        secret = PREFIX + secrets.token_urlsafe(SECRET_BYTES)
        rotated = replace(key, hint=_hint(secret), rotated_at=datetime.now(UTC))
        with self.store.transaction("rotate a virtual key") as conn:
            conn.execute(virtual_keys.update().where(virtual_keys.c.id == key_id).values(
                key_hash=digest(secret), hint=rotated.hint, rotated_at=rotated.rotated_at))
        self._forget()
        return IssuedKey(rotated, secret)

    def revoke(self, key_id: str) -> VirtualKey:
        key = self.get(key_id)
        if key.revoked_at is not None:
            return key
        moment = datetime.now(UTC)
        with self.store.transaction("revoke a virtual key") as conn:
            conn.execute(virtual_keys.update().where(virtual_keys.c.id == key_id).values(revoked_at=moment))
        self._forget()
        return replace(key, revoked_at=moment)

    # -- reading ----------------------------------------------------------------------------------------------

    def get(self, key_id: str) -> VirtualKey:
        rows = self.store.rows(sa.select(virtual_keys).where(virtual_keys.c.id == key_id), "read a virtual key")
        if not rows:
            raise KeyNotFound(f"no key {key_id!r}; `contentmill keys list` shows the keys")
        return _key(rows[0])

    def list(self, *, team: str | None = None) -> list[VirtualKey]:
        query = sa.select(virtual_keys).order_by(virtual_keys.c.created_at, virtual_keys.c.id)
        if team is not None:
            query = query.where(virtual_keys.c.team == team)
        return [_key(row) for row in self.store.rows(query, "list virtual keys")]

    def peek(self, secret: str) -> VirtualKey | None | Any:
        """``lookup`` from this process's memory alone, or ``UNSEEN`` when only the database can answer: lets an
        event loop skip the thread hop on nearly every request."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return None
        with self._lock:
            seen = self._seen.get(digest(secret))
        if seen is None or time.monotonic() - seen[0] >= self.cache_s:
            return self.UNSEEN
        return _active(seen[1])

    def lookup(self, secret: str) -> VirtualKey | None:
        """The active key whose secret this is, or None: unknown, revoked and expired keys look the same."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return None
        wanted = digest(secret)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(wanted)
        if seen is not None and now - seen[0] < self.cache_s:
            key = seen[1]
        else:
            rows = self.store.rows(sa.select(virtual_keys).where(virtual_keys.c.key_hash == wanted),
                                   "look up a virtual key")
            found = rows[0] if rows and hmac.compare_digest(rows[0]["key_hash"], wanted) else None
            key = _key(found) if found is not None else None
            with self._lock:
                if len(self._seen) > 10_000:
                    self._seen.clear()
                self._seen[wanted] = (now, key)
        return _active(key)

    def _forget(self) -> None:
        with self._lock:
            self._seen.clear()


def _active(key: VirtualKey | None) -> VirtualKey | None:
    return key if key is not None and key.state() == "active" else None
