"""The provider-response cache, so nobody pays twice for the same generation.

L1 in-process memory -> L2 Redis -> L3 object store (S3 or a local directory); see ``tiered``. Typical use::

    cache = build_cache(CacheConfig.from_settings(get_settings()))
    key = text_key(request, model="openai:gpt-4o-mini", tenant="team-a")
    result, hit = await cache.get_or_compute(key, produce, cost_usd=lambda r: r["cost_usd"])
"""

from contentmill.cache.base import BaseCache, Cache
from contentmill.cache.config import CacheConfig, build_cache
from contentmill.cache.entry import Entry, Hit, MediaRef
from contentmill.cache.keys import (
    CacheKey,
    SecretInCacheKey,
    build_key,
    embedding_key,
    image_key,
    speech_key,
    text_key,
)
from contentmill.cache.memory import MemoryCache
from contentmill.cache.objectstore import LocalDirCache, ObjectStoreCache, S3Cache
from contentmill.cache.redis import RedisCache
from contentmill.cache.serializers import BYTES, IMAGES, JSON, WAV, BytesSerializer, JsonSerializer, Serializer
from contentmill.cache.singleflight import SingleFlight
from contentmill.cache.stats import StatsRecorder, TierStats
from contentmill.cache.tiered import TieredCache

__all__ = [
    "BYTES", "IMAGES", "JSON", "WAV", "BaseCache", "BytesSerializer", "Cache", "CacheConfig", "CacheKey", "Entry",
    "Hit", "JsonSerializer", "LocalDirCache", "MediaRef", "MemoryCache", "ObjectStoreCache", "RedisCache",
    "S3Cache", "SecretInCacheKey", "Serializer", "SingleFlight", "StatsRecorder", "TierStats", "TieredCache",
    "build_cache", "build_key", "embedding_key", "image_key", "speech_key", "text_key",
]
