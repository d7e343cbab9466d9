"""The cache's settings and the one function that builds the tiers from them.

Embedded profile (no Redis, no bucket): memory -> local directory in CONTENTMILL_DATA_DIR, stats in a SQLite
file there. With CONTENTMILL_REDIS_URL: memory -> Redis -> object store, stats in Redis, single flight across
processes. With CONTENTMILL_S3_BUCKET the object store is S3 (CONTENTMILL_S3_ENDPOINT_URL for MinIO or another
S3-compatible store), else the local directory. The ``cache_*`` fields are read from the settings when they
exist, so they can be added there (as CONTENTMILL_CACHE_*) without changing this module.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from contentmill.cache.base import BaseCache
from contentmill.cache.memory import MemoryCache
from contentmill.cache.objectstore import LocalDirCache, ObjectStoreCache, S3Cache
from contentmill.cache.redis import RedisCache, connect
from contentmill.cache.singleflight import SingleFlight
from contentmill.cache.stats import RedisStatsStore, SqliteStatsStore, StatsRecorder, StatsStore
from contentmill.cache.tiered import DEFAULT_MEDIA_THRESHOLD, TieredCache
from contentmill.errors import ConfigError


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Every knob of the cache, with defaults that suit one laptop and a fleet of workers alike."""

    data_dir: Path = Path(".contentmill")
    redis_url: str | None = None
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = "contentmill/"
    cache_redis_prefix: str = "contentmill:cache:"  # entries, stats, locks and epochs live under it
    cache_memory_max_bytes: int = 64 * 2**20
    cache_memory_ttl_s: float = 3600.0
    cache_redis_ttl_s: float = 7 * 86400.0
    cache_objectstore_ttl_s: float = 30 * 86400.0
    cache_media_threshold_bytes: int = DEFAULT_MEDIA_THRESHOLD
    cache_presign_expires_s: int = 3600
    cache_redis_timeout_s: float = 0.5
    cache_s3_timeout_s: float = 10.0
    cache_lock_lease_s: float = 30.0
    cache_lock_wait_s: float = 120.0
    cache_retry_backoff_s: float = 1.0
    cache_stats_flush_s: float = 2.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                variable = "CONTENTMILL_" + field.name.upper()
                raise ConfigError(f"{variable} must be positive (got {value})")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> CacheConfig:
        """The values ``settings`` has (any field of this class by the same name), defaults for the rest; without
        its own prefix the cache lives under the settings' ``redis_prefix``, for the gateway and the CLI alike."""
        values = {f.name: getattr(settings, f.name, None) for f in fields(cls)}
        given = {name: value for name, value in values.items() if value is not None}
        prefix = getattr(settings, "redis_prefix", None)
        if "cache_redis_prefix" not in given and isinstance(prefix, str):
            given["cache_redis_prefix"] = prefix + "cache:"  # under the installation's Redis prefix
        return cls(**{**given, **overrides})

    @property
    def stats_path(self) -> Path:
        return self.data_dir / "cache-stats.sqlite3"

    @property
    def local_root(self) -> Path:
        return self.data_dir / "cache"


def redis_client(config: CacheConfig) -> Redis | None:
    return connect(config.redis_url, timeout=config.cache_redis_timeout_s) if config.redis_url else None


def stats_store(config: CacheConfig, client: Redis | None) -> StatsStore:
    """Where counters add up across processes: Redis when configured, else SQLite in the data directory."""
    if client is not None:
        return RedisStatsStore(client, config.cache_redis_prefix.rstrip(":"))
    return SqliteStatsStore(config.stats_path)


def object_store(
    config: CacheConfig, *, stats: StatsRecorder | None = None, s3_client: Any = None
) -> ObjectStoreCache:
    """S3 when a bucket is configured, else the local directory under the data directory."""
    backoff = config.cache_retry_backoff_s
    if config.s3_bucket:
        return S3Cache(
            config.s3_bucket, client=s3_client, endpoint_url=config.s3_endpoint_url,
            prefix=config.s3_prefix + "cache/", ttl=config.cache_objectstore_ttl_s,
            timeout=config.cache_s3_timeout_s, presign_expires_s=config.cache_presign_expires_s,
            backoff_s=backoff, stats=stats,
        )
    return LocalDirCache(
        config.local_root, ttl=config.cache_objectstore_ttl_s, backoff_s=backoff, stats=stats
    )


def build_cache(config: CacheConfig, *, s3_client: Any = None) -> TieredCache:
    """The tiered cache the configuration describes; close it with ``aclose`` (or ``async with``)."""
    client = redis_client(config)
    recorder = StatsRecorder(stats_store(config, client), flush_interval_s=config.cache_stats_flush_s)
    memory = MemoryCache(max_bytes=config.cache_memory_max_bytes, ttl=config.cache_memory_ttl_s)
    tiers: list[BaseCache] = [memory]
    if client is not None:
        tiers.append(RedisCache(
            client, prefix=config.cache_redis_prefix + "e:", ttl=config.cache_redis_ttl_s,
            backoff_s=config.cache_retry_backoff_s, owns_client=True,  # the client's socket timeouts bound it
        ))
    tiers.append(object_store(config, s3_client=s3_client))
    flight = SingleFlight(
        client, prefix=config.cache_redis_prefix + "lock:", lease_s=config.cache_lock_lease_s,
        wait_s=config.cache_lock_wait_s, backoff_s=config.cache_retry_backoff_s,
    )
    return TieredCache(
        tiers, media_threshold=config.cache_media_threshold_bytes, stats=recorder, flight=flight
    )
