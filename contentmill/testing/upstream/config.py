"""How one fake upstream is set up: its ``UpstreamConfig`` (the command line's flags) and per-model profiles."""

from __future__ import annotations

from dataclasses import dataclass

from contentmill.errors import ConfigError

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "tts-1", "text-embedding-3-small",
                  "text-embedding-3-large", "gpt-image-1", "dall-e-3")
# Effectively unlimited unless --rpm/--tpm say otherwise, so that benchmarks measure the client, not the limits.
DEFAULT_RPM = 1_000_000
DEFAULT_TPM = 1_000_000_000
DEFAULT_BATCH_DELAY_MS = 200.0  # how long a batch runs before it completes (a real one may take up to 24 h)
FAULTS = ("500", "503", "429", "timeout", "malformed", "disconnect", "trickle")
USAGE_FAULTS = ("negative", "text", "null", "huge", "empty-choices")


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How one model differs (``--model-profile NAME=LATENCY_MS:TOKENS_FACTOR``): its latency and how many times
    as long its plain answers are, so that models compared on the fake upstream differ as real ones do."""

    model: str
    latency_ms: float | None = None
    tokens_factor: float = 1.0

    @classmethod
    def parse(cls, text: str) -> ModelProfile:
        model, sep, rest = text.partition("=")
        latency, _, factor = rest.partition(":")
        usage = f"--model-profile is NAME=LATENCY_MS:TOKENS_FACTOR, e.g. gpt-4o=120:1.4 (got {text!r})"
        if not sep or not model.strip():
            raise ConfigError(usage)
        try:
            latency_ms = float(latency) if latency.strip() else None
            tokens_factor = float(factor) if factor.strip() else 1.0
        except ValueError:
            raise ConfigError(usage) from None
        if (latency_ms is not None and latency_ms < 0) or tokens_factor <= 0:
            raise ConfigError(f"--model-profile {text!r}: latency cannot be negative and the factor must be positive")
        return cls(model.strip(), latency_ms, tokens_factor)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    host: str = "127.0.0.1"
    port: int = 0
    rpm: int = DEFAULT_RPM
    tpm: int = DEFAULT_TPM
    latency_ms: float = 0.0
    error_rate: float = 0.0
    seed: int = 0
    api_keys: tuple[str, ...] = ()
    models: tuple[str, ...] = DEFAULT_MODELS
    batch_delay_ms: float = DEFAULT_BATCH_DELAY_MS
    rate_429: float = 0.0  # share of chat requests refused with a 429 (Retry-After 1 s), drawn from ``seed``
    corrupt_items: tuple[str, ...] = ()  # item ids a packed answer gets wrong (see contentmill.testing.packed)
    profiles: tuple[ModelProfile, ...] = ()  # per-model latency and answer length
    cut_streams_after: int | None = None  # close every stream's connection after this many events
    wrong_usage: str | None = None  # a USAGE_FAULTS kind for every chat and embedding answer (X-Upstream-Usage)
    fault: str | None = None  # a FAULTS kind for every request that names none (X-Upstream-Fault)

    def profile(self, model: str | None) -> ModelProfile:
        found = [p for p in self.profiles if p.model == model]
        return found[-1] if found else ModelProfile(model or "")

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be from 0 to 65535 (got {self.port})")
        if self.rpm < 1 or self.tpm < 1:
            raise ConfigError(f"--rpm and --tpm must be at least 1 (got {self.rpm} and {self.tpm})")
        if self.latency_ms < 0:
            raise ConfigError(f"--latency-ms cannot be negative (got {self.latency_ms})")
        if self.batch_delay_ms < 0:
            raise ConfigError(f"--batch-delay-ms cannot be negative (got {self.batch_delay_ms})")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ConfigError(f"--error-rate is a share from 0 to 1 (got {self.error_rate})")
        if not 0.0 <= self.rate_429 <= 1.0:
            raise ConfigError(f"--rate-429 is a share from 0 to 1 (got {self.rate_429})")
        if self.cut_streams_after is not None and self.cut_streams_after < 1:
            raise ConfigError(f"--cut-streams-after is at least 1 event (got {self.cut_streams_after})")
        if any(not key for key in self.api_keys):
            raise ConfigError("--api-key cannot be empty")
        if self.fault is not None and self.fault not in FAULTS:
            raise ConfigError(f"--fault must be one of {', '.join(FAULTS)} (got {self.fault!r})")
        if self.wrong_usage is not None and self.wrong_usage not in USAGE_FAULTS:
            raise ConfigError(f"--wrong-usage must be one of {', '.join(USAGE_FAULTS)} (got {self.wrong_usage!r})")
