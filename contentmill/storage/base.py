"""The object store's interface: bytes under a key (a relative path of plain names), put, got, listed, deleted
and located the same way in a local directory and in an S3 bucket."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-]*(/[A-Za-z0-9_][A-Za-z0-9._\-]*)*$")


def check_key(key: str) -> str:
    """A key is a relative path of plain names: no '..', no leading '/', nothing a shell or URL mangles."""
    if not KEY_PATTERN.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"object key {key!r} must be a relative path of letters, digits, '.', '_' and '-'")
    return key


def check_prefix(prefix: str) -> str:
    """A prefix is empty or the start of a key (``videos/`` or ``videos/x-``)."""
    if prefix:
        check_key(prefix.removesuffix("/"))
    return prefix


class ObjectStore(ABC):
    """Put, get, list, delete and locate objects by key; subclasses hold the bytes."""

    @abstractmethod
    def put(self, key: str, data: bytes, media_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``, replacing what was there."""

    @abstractmethod
    def put_file(self, key: str, path: Path, media_type: str = "application/octet-stream") -> None:
        """Store the file at ``path`` under ``key`` without reading it whole into memory."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object; True when it was there (S3 cannot tell: always True)."""

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key that starts with ``prefix``, in no set order."""

    @abstractmethod
    def clear(self, prefix: str = "") -> int:
        """Delete every object whose key starts with ``prefix``; returns how many went."""

    @abstractmethod
    def url(self, key: str) -> str:
        """Where a person or a program can fetch the object: a file path or a presigned URL."""

    @abstractmethod
    def copy(self, source: str, target: str) -> None:
        """Copy an object inside the store (no round trip through this process where the store allows)."""

    @abstractmethod
    def fetch(self, key: str, folder: Path) -> Path:
        """A local file holding the object: the stored file itself, or a download into ``folder``."""

    @abstractmethod
    def save_as(self, key: str, target: Path) -> Path:
        """Write a copy of the object to the local file ``target`` (atomically)."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is, for people: a directory or ``s3://bucket/prefix``."""

    def missing(self, key: str) -> FileNotFoundError:
        """What asking for a file of an object that is not there raises."""
        return FileNotFoundError(f"no object {key!r} in {self.location}")

    def put_json(self, key: str, value: Any) -> None:
        data = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
        self.put(key, data, "application/json")

    def get_json(self, key: str) -> Any | None:
        """The decoded JSON object under ``key``; None when missing or unreadable (treated as never made)."""
        data = self.get(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def close(self) -> None:  # noqa: B027  # a no-op by default: only some stores hold connections
        """Release connections (S3); the local store holds none."""
