"""One place for every setting: environment (CONTENTMILL_*), an optional contentmill.toml, defaults.

Profile ``embedded`` (default) needs no service at all; ``services`` expects Redis, a database and S3.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contentmill.errors import ConfigError, MissingCredential

ENV_PREFIX = "CONTENTMILL_"
CONFIG_FILE_VARIABLE = "CONTENTMILL_CONFIG"


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


LimitUnit = Literal["requests", "tokens", "characters", "seconds"]


def _scope(value: str) -> str:
    key, sep, rest = value.partition("=")
    if not sep or not key.strip() or not rest.strip():
        raise ValueError("scope is KEY=VALUE such as team=shop, api_type=video or team=*")
    return value.strip()


ScopeText = Annotated[str, AfterValidator(_scope)]


class QuotaSetting(BaseModel):
    """At most ``limit`` units per calendar period for a scope (``team=*``: each team its own quota)."""

    model_config = ConfigDict(extra="forbid")
    scope: ScopeText
    unit: LimitUnit
    limit: float = Field(gt=0)
    period: Literal["day", "week", "month"] = "day"
    tz: str = "UTC"


class RateLimitSetting(BaseModel):
    """At most ``per_minute`` units a minute for a scope, refilled continuously."""

    model_config = ConfigDict(extra="forbid")
    scope: ScopeText
    unit: LimitUnit
    per_minute: float = Field(gt=0)


class Settings(BaseSettings):
    """Every setting of contentmill; the environment wins over contentmill.toml, which wins over defaults."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True)

    profile: Literal["embedded", "services"] = "embedded"
    data_dir: Path = Path(".contentmill")
    redis_url: str | None = None
    redis_prefix: str = "contentmill:"  # every key contentmill writes to Redis starts with it
    # Redis unreachable: "local" admits against this machine's limits with the share below (and alerts); "refuse"
    on_redis_down: Literal["local", "refuse"] = "local"
    redis_down_share: float = Field(default=0.5, gt=0, le=1)  # of what a limit has left, each machine's while down
    database_url: str | None = None
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = "contentmill/"

    text_model: str = "local:gemma-3-270m"
    speech_model: str = "local:espeak-ng"
    image_model: str | None = None  # each creator-video scene's picture; unset: an offline illustration
    pexels_api_key: SecretStr | None = None  # stock footage by search for creator videos (--footage)
    pexels_base_url: str = "https://api.pexels.com"  # or any Pexels-compatible API (the fake upstream's /pexels)
    catalog_file: Path | None = None
    routing_file: Path | None = None  # tiers, matrix weights, degradation policy (TOML or YAML; see routing.config)
    # Your prompt template folders, searched after the packaged ones (os.pathsep-separated or a JSON list).
    template_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    font_file: Path | None = None
    request_timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    alert_webhook_url: SecretStr | None = None  # alerts are POSTed here as JSON (the URL may hold a token)
    monitor_interval_s: float = Field(default=60.0, ge=0)  # periodic alert rules and orphan sweeps; 0 turns off
    quotas: list[QuotaSetting] = Field(default_factory=list)  # [[quotas]] in contentmill.toml, or JSON
    rate_limits: list[RateLimitSetting] = Field(default_factory=list)  # [[rate_limits]] in contentmill.toml
    admission_wait_s: float = Field(default=30.0, ge=0)  # how long a call may wait for rate-limit capacity
    log_level: str = "ERROR"  # WARNING shows alerts and retries as they happen

    # The gateway server (contentmill serve; docs/server.md).
    admin_key: SecretStr | None = None  # turns the /admin API on; its bearer token
    server_max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)  # larger bodies get a 413
    server_max_file_bytes: int = Field(default=100 * 1024 * 1024, gt=0)  # the cap on a Batch API input file
    server_default_max_tokens: int = Field(default=1024, gt=0)  # a chat request without max_tokens reserves this
    server_admission_wait_s: float = Field(default=0.0, ge=0)  # wait for rate-limit capacity before a 429
    # Where people reach this server, e.g. https://media.example.com: flows then link their media through its
    # /media/ route (or a presigned S3 URL) instead of file://.
    public_url: str | None = None
    # The studio starts creator videos through this Prefect deployment (e.g. creator-video/creator-video) when
    # set and a Prefect API is configured; unset, it runs them in the server process.
    studio_deployment: str | None = None

    # The knowledge graph of prior outputs (contentmill.knowledge_graph).
    graph_database_url: str | None = None  # default: database_url, else graph.sqlite3 in data_dir
    graph_reuse_threshold: float = Field(default=0.9, gt=0, le=1)  # similarity a prior output needs to be reused
    graph_poll_interval_s: float = Field(default=1.0, ge=0)  # how often a process reads other writers' changes
    embedding_threads: int | None = Field(default=None, ge=1)  # torch threads for embeddings; None: torch decides

    # The cache (contentmill.cache.config.CacheConfig holds the defaults; None keeps them).
    cache_enabled: bool = True
    cache_redis_prefix: str | None = None
    cache_memory_max_bytes: int | None = Field(default=None, gt=0)
    cache_memory_ttl_s: float | None = Field(default=None, gt=0)
    cache_redis_ttl_s: float | None = Field(default=None, gt=0)
    cache_objectstore_ttl_s: float | None = Field(default=None, gt=0)
    cache_media_threshold_bytes: int | None = Field(default=None, gt=0)
    cache_presign_expires_s: int | None = Field(default=None, gt=0)
    cache_redis_timeout_s: float | None = Field(default=None, gt=0)
    cache_s3_timeout_s: float | None = Field(default=None, gt=0)
    cache_lock_lease_s: float | None = Field(default=None, gt=0)
    cache_lock_wait_s: float | None = Field(default=None, gt=0)
    cache_retry_backoff_s: float | None = Field(default=None, gt=0)
    cache_stats_flush_s: float | None = Field(default=None, gt=0)

    # Vendor credentials and endpoints use the vendors' own variable names, as their SDKs do.
    openai_api_key: SecretStr | None = Field(default=None, validation_alias=_alias("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=_alias("OPENAI_BASE_URL"))
    deepseek_api_key: SecretStr | None = Field(default=None, validation_alias=_alias("DEEPSEEK_API_KEY"))
    deepseek_base_url: str | None = Field(default=None, validation_alias=_alias("DEEPSEEK_BASE_URL"))
    dashscope_api_key: SecretStr | None = Field(
        default=None, validation_alias=_alias("DASHSCOPE_API_KEY", "QWEN_API_KEY")
    )
    dashscope_base_url: str | None = Field(
        default=None, validation_alias=_alias("DASHSCOPE_BASE_URL", "QWEN_BASE_URL")
    )

    @field_validator("text_model", "speech_model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if ":" not in value or value.startswith(":") or value.endswith(":"):
            raise ValueError(f"name the model as 'provider:model', e.g. 'openai:gpt-4o-mini' (got {value!r})")
        return value

    @field_validator("image_model")
    @classmethod
    def _optional_model_name(cls, value: str | None) -> str | None:
        """Unset or empty (CONTENTMILL_IMAGE_MODEL=) is no model; anything else is named 'provider:model'."""
        return cls._model_name(value) if value else None

    @field_validator("template_dirs", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split(os.pathsep) if part.strip()]
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"use a redis://, rediss:// or unix:// URL (got {value!r})")
        return value

    @model_validator(mode="after")
    def _services_need_their_services(self) -> Settings:
        if self.profile == "services":
            missing = [
                ENV_PREFIX + name.upper()
                for name in ("redis_url", "database_url")
                if getattr(self, name) in (None, "")
            ]
            if missing:
                raise ValueError(f"the services profile needs {', '.join(missing)} to be set")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get(CONFIG_FILE_VARIABLE, "contentmill.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        elif CONFIG_FILE_VARIABLE in os.environ:
            raise ConfigError(f"{CONFIG_FILE_VARIABLE} points at {toml_path}, which is not a file")
        return tuple(sources)

    def secret(self, variable: str, purpose: str) -> SecretStr:
        """The secret held in ``variable`` (a vendor key field or any environment variable), or a clear error."""
        for name, field in type(self).model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices) and variable in alias.choices:
                value = getattr(self, name)
                if isinstance(value, SecretStr) and value.get_secret_value():
                    return value
                raise MissingCredential(variable, purpose)
        raw = os.environ.get(variable, "")
        if not raw:
            raise MissingCredential(variable, purpose)
        return SecretStr(raw)

    def value_of(self, variable: str) -> str | None:
        """A plain (non-secret) setting named by its environment variable, e.g. OPENAI_BASE_URL."""
        for name, field in type(self).model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices) and variable in alias.choices:
                value = getattr(self, name)
                return None if value is None else str(value)
        return os.environ.get(variable) or None


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")  # pydantic's wrapping of our own messages
        given = item.get("input")
        if not isinstance(given, dict) and given is not None and repr(given) not in message:
            message += f" (got {given!r})"
        if not item["loc"]:  # a check across several settings names them itself
            lines.append(message)
            continue
        field = str(item["loc"][0])
        lines.append(f"{ENV_PREFIX + field.upper() if field in Settings.model_fields else field}: {message}")
    return "invalid settings: " + "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning validation failures into one ConfigError naming each variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
