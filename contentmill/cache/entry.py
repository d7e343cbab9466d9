"""What a backend stores: one envelope of bytes, a small fixed binary header followed by the payload.

The header carries what a hit must report or honour wherever the bytes live: the serializer that wrote the
payload, the cost the entry saves on a hit, its absolute expiry (object stores have no native TTL in seconds),
the payload's length (a cut-off entry is detected) and, for media kept only in the object store, a pointer to
the object instead of a payload. It is binary (``struct``), not JSON, because every hit decodes it.
"""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

T = TypeVar("T")
MAGIC = b"CM"
ENVELOPE_VERSION = 1
# magic, version, serializer name length, cost USD, created at, expires at (NaN: none), payload length,
# media pointer length (0: the payload is inline)
_HEADER = struct.Struct("<2sBBdddQH")


class CorruptEntry(ValueError):
    """Stored bytes that are not an envelope this version can read; the reader treats it as a miss."""


@dataclass(frozen=True, slots=True)
class MediaRef:
    """Where a large payload lives in the object store, and how to check it."""

    name: str
    size: int
    sha256: str
    media_type: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached value in stored form. ``expires_at`` is wall-clock seconds (None: the tier's own TTL)."""

    payload: bytes
    serializer: str
    cost_usd: float = 0.0
    created_at: float = 0.0
    expires_at: float | None = None
    media: MediaRef | None = None

    def encode(self) -> bytes:
        serializer = self.serializer.encode()
        media = b""
        if self.media is not None:
            m = self.media
            media = json.dumps([m.name, m.size, m.sha256, m.media_type], separators=(",", ":")).encode()
        expires = math.nan if self.expires_at is None else self.expires_at
        header = _HEADER.pack(
            MAGIC, ENVELOPE_VERSION, len(serializer), self.cost_usd, self.created_at, expires,
            len(self.payload), len(media),
        )
        return b"".join((header, serializer, media, self.payload))

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        try:
            magic, version, name_len, cost, created, expires, size, media_len = _HEADER.unpack_from(data)
        except struct.error:
            raise CorruptEntry("shorter than an envelope header") from None
        if magic != MAGIC or version != ENVELOPE_VERSION:
            raise CorruptEntry(f"not a version {ENVELOPE_VERSION} envelope")
        start = _HEADER.size + name_len + media_len
        if len(data) - start != size:
            raise CorruptEntry(f"payload of {len(data) - start} bytes, header says {size}")
        media = None
        if media_len:
            try:
                name, length, digest, media_type = json.loads(data[start - media_len:start])
                media = MediaRef(str(name), int(length), str(digest), str(media_type))
            except (ValueError, TypeError) as exc:
                raise CorruptEntry(f"unreadable media pointer: {exc}") from None
        try:
            serializer = data[_HEADER.size:_HEADER.size + name_len].decode()
        except UnicodeDecodeError:
            raise CorruptEntry("unreadable serializer name") from None
        return cls(data[start:], serializer, cost, created, None if math.isnan(expires) else expires, media)

    def ttl(self, now: float | None = None) -> float | None:
        """Seconds left to live (None: no expiry of its own)."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def expired(self, now: float | None = None) -> bool:
        left = self.ttl(now)
        return left is not None and left <= 0

    def capped(self, ttl: float | None, now: float) -> Entry:
        """This entry expiring no later than ``ttl`` seconds from ``now`` (a tier's own limit)."""
        if ttl is None:
            return self
        limit = now + ttl
        if self.expires_at is not None and self.expires_at <= limit:
            return self
        return replace(self, expires_at=limit)


@dataclass(frozen=True, slots=True)
class Hit(Generic[T]):
    """A value found in the cache: which tier served it, what it saved, and for media where to fetch it."""

    value: T
    tier: str
    cost_usd: float
    created_at: float
    expires_at: float | None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """An entry as a cache read it: the tier that had it and the payload (fetched from the object store for
    media), with the URL or path of that media object."""

    entry: Entry
    tier: str
    payload: bytes
    location: str | None = None
