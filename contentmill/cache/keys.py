"""Cache keys: a canonical hash of what determines a generation, scoped by tenant, never holding a secret.

Two requests that would make the same output get the same key: text is unicode- (NFC) and
whitespace-normalized, roles stay part of each message, parameters are compared by value (``0`` == ``0.0``,
unset == ``None``). The key builder takes explicit fields only and refuses anything that looks like a
credential, so an API key can neither reach a key nor split the cache per key. A key belongs to one tenant
(team) unless the caller marks the result shareable, so one team never receives another team's output by
accident.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretBytes, SecretStr

from contentmill.requests import EmbeddingRequest, ImageRequest, Message, SpeechRequest, TextRequest

KEY_VERSION = 1  # part of every digest: bump it when the canonical form changes
SHARED_SCOPE = "shared"
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SECRET_NAME = re.compile(
    r"(^|[_\-.])(api[_\-]?keys?|apikey|authorization|auth|bearer|cookies?|credentials?|passwords?|passwd|"
    r"secrets?|client[_\-]?secret|private[_\-]?key|(access|refresh|session|id|auth)[_\-]?token)($|[_\-.])"
    r"|^token$",  # a bare "token", but not "max_tokens"
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"\b(sk|rk|pk)-[A-Za-z0-9_\-]{16,}"  # OpenAI, DeepSeek, Anthropic-style keys
    r"|\bBearer\s+[A-Za-z0-9._~+/=\-]{8,}"
    r"|\b(AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack tokens
    r"|\bAIza[0-9A-Za-z_\-]{30,}",  # Google API keys
)
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class SecretInCacheKey(ValueError):
    """A field given to the key builder looks like a credential; it is named, its value never shown."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(
            f"{where} looks like a credential and cannot be part of a cache key or entry; pass only what "
            "determines the output (model, input, generation parameters, template version)"
        )


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where an entry lives: ``namespace/scope/digest``. ``scope`` is the tenant, or ``shared``."""

    namespace: str
    scope: str
    digest: str

    def __post_init__(self) -> None:
        for part in (self.namespace, self.scope):
            if not _SAFE_PART.match(part):
                raise ValueError(f"cache key part {part!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if not re.fullmatch(r"[0-9a-f]{64}", self.digest):
            raise ValueError("cache key digest must be a sha256 hex digest")

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.scope}/{self.digest}"

    def __str__(self) -> str:
        return self.path


def find_secret(value: Any, where: str = "value") -> str | None:
    """Where the first credential-looking name or value inside ``value`` is (mappings, sequences, text)."""
    if isinstance(value, SecretStr | SecretBytes):
        return where
    if isinstance(value, str):
        return where if _SECRET_VALUE.search(value) else None
    if isinstance(value, Mapping):
        for name, item in value.items():
            inner = f"{where}.{name}"
            if _SECRET_NAME.search(str(name)):
                return inner
            found = find_secret(item, inner)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = find_secret(item, f"{where}[{index}]")
            if found:
                return found
    return None


def refuse_secrets(value: Any, where: str) -> None:
    """Raise SecretInCacheKey when ``value`` holds anything credential-looking."""
    found = find_secret(value, where)
    if found:
        raise SecretInCacheKey(found)


def normalize_text(text: str) -> str:
    """Same meaning, same text: NFC, LF line ends, single spaces, no edge spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_HORIZONTAL_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def normalize_messages(messages: Iterable[Message | Mapping[str, Any]]) -> list[list[str]]:
    """``[role, text]`` pairs in order; roles stay, so the same words from the system and the user differ."""
    out: list[list[str]] = []
    for index, message in enumerate(messages):
        role: str
        content: object
        if isinstance(message, Message):
            role, content = message.role, message.content
        else:
            extra = set(message) - {"role", "content", "name"}
            if extra:
                raise ValueError(f"message {index} has fields a cache key does not take: {sorted(extra)}")
            role, content = str(message.get("role", "")), message.get("content")
            if message.get("name"):
                role = f"{role}:{message['name']}"
        if not isinstance(content, str):
            raise ValueError(f"message {index} needs text content (got {type(content).__name__})")
        refuse_secrets(role, f"messages[{index}].role")
        out.append([role.strip().lower(), normalize_text(content)])
    return out


def canonical(value: Any, where: str = "params") -> Any:
    """A JSON-ready value that compares by meaning: integral floats as ints, no None, sorted mappings."""
    if isinstance(value, SecretStr | SecretBytes):
        raise SecretInCacheKey(where)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number (got {value!r})")
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {
            str(k): canonical(v, f"{where}.{k}") for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
            if v is not None
        }
    if isinstance(value, list | tuple):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where} is a {type(value).__name__}; give text, a number, a bool, a list or a mapping")


def _scope(tenant: str | None, shareable: bool) -> str:
    if shareable:
        return SHARED_SCOPE
    if not tenant or not tenant.strip():
        raise ValueError("a cache key needs the tenant (team) it belongs to, or shareable=True if shared")
    tenant = tenant.strip()
    if _SAFE_PART.match(tenant) and tenant != SHARED_SCOPE:
        return tenant
    return "t-" + hashlib.sha256(tenant.encode()).hexdigest()[:32]


def build_key(
    *,
    model: str,
    tenant: str | None,
    messages: Sequence[Message | Mapping[str, Any]] | None = None,
    input: str | None = None,
    params: Mapping[str, Any] | None = None,
    template_version: str | None = None,
    namespace: str = "text",
    shareable: bool = False,
) -> CacheKey:
    """The key of one generation from the fields that determine its output, and nothing else.

    Give ``messages`` (chat) or ``input`` (a prompt, a text to speak); ``params`` are generation parameters
    such as ``max_tokens`` or ``voice``. Secret-looking names or values raise SecretInCacheKey.
    """
    if (messages is None) == (input is None):
        raise ValueError("give either messages or input to a cache key, not both and not neither")
    refuse_secrets(model, "model")
    refuse_secrets(dict(params or {}), "params")
    refuse_secrets(template_version or "", "template_version")
    body = {
        "v": KEY_VERSION,
        "model": model.strip(),
        "messages": normalize_messages(messages) if messages is not None else None,
        "input": normalize_text(input) if input is not None else None,
        "params": canonical(dict(params or {})),
        "template": template_version,
    }
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return CacheKey(namespace, _scope(tenant, shareable), hashlib.sha256(blob).hexdigest())


def text_key(
    request: TextRequest,
    *,
    model: str,
    tenant: str | None,
    template_version: str | None = None,
    shareable: bool = False,
) -> CacheKey:
    """The key of a text generation."""
    params = {
        "max_tokens": request.max_tokens, "temperature": request.temperature, "stop": list(request.stop),
        "seed": request.seed, "response_format": request.response_format,
    }
    if request.prompt is not None:
        return build_key(model=model, tenant=tenant, input=request.prompt, params=params,
                         template_version=template_version, shareable=shareable)
    return build_key(model=model, tenant=tenant, messages=request.messages, params=params,
                     template_version=template_version, shareable=shareable)


def speech_key(
    request: SpeechRequest, *, model: str, tenant: str | None, shareable: bool = False
) -> CacheKey:
    """The key of a speech synthesis."""
    params = {
        "voice": request.voice, "language": request.language, "speed": request.speed,
        "format": request.format,
    }
    return build_key(model=model, tenant=tenant, input=request.text, params=params, namespace="speech",
                     shareable=shareable)


def embedding_key(request: EmbeddingRequest, *, model: str, tenant: str | None, shareable: bool = False) -> CacheKey:
    """The key of an embedding call: the texts in order and the dimensions asked for."""
    return build_key(model=model, tenant=tenant, input="\x1e".join(request.inputs),
                     params={"dimensions": request.dimensions, "n": len(request.inputs)}, namespace="embedding",
                     shareable=shareable)


def image_key(request: ImageRequest, *, model: str, tenant: str | None, shareable: bool = False) -> CacheKey:
    """The key of an image generation: the prompt, size, quality and number of images."""
    return build_key(model=model, tenant=tenant, input=request.prompt,
                     params={"size": request.size, "quality": request.quality, "n": request.n}, namespace="image",
                     shareable=shareable)
