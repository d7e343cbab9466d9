"""Serializers turn values into the bytes every backend stores, so text results and media share the backends.

Each has a ``name`` recorded with the entry (a reader is told which one wrote it) and a ``media_type`` used
when the bytes are handed out as a file or URL. The JSON serializer refuses values that hold a credential,
so a cached result can never carry an API key into Redis or an object store.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, TypeVar

from pydantic import SecretBytes, SecretStr

from contentmill.cache.keys import refuse_secrets

T = TypeVar("T")


class Serializer(Protocol[T]):
    """Values of type T to bytes and back."""

    name: str
    media_type: str

    def dumps(self, value: T) -> bytes: ...

    def loads(self, data: bytes) -> T: ...


def _refuse_secret_objects(value: object) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        raise ValueError("a secret (SecretStr) cannot be stored in the cache")
    raise TypeError(f"{type(value).__name__} is not JSON-serializable; cache a dict/list/str/number instead")


class JsonSerializer:
    """JSON for text results (dicts, lists, strings): compact UTF-8, credential-looking content refused."""

    name = "json"
    media_type = "application/json"

    def dumps(self, value: Any) -> bytes:
        refuse_secrets(value, "cached value")
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_refuse_secret_objects)
        return text.encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class BytesSerializer:
    """Raw bytes for media (audio, video, images): stored as they are, handed out as they are."""

    name = "bytes"

    def __init__(self, media_type: str = "application/octet-stream") -> None:
        self.media_type = media_type

    def dumps(self, value: bytes) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"BytesSerializer stores bytes, not {type(value).__name__}")
        return bytes(value)

    def loads(self, data: bytes) -> bytes:
        return data


JSON = JsonSerializer()
BYTES = BytesSerializer()
WAV = BytesSerializer("audio/wav")
IMAGES = BytesSerializer("application/x-contentmill-images")  # gateway.core packs one call's images into it
