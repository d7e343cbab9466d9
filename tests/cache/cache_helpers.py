"""Helpers of the cache tests: a redis-server of our own, raw views of what backends store, polling."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import boto3
import pytest

from contentmill.cache import Cache, LocalDirCache, MemoryCache, RedisCache, S3Cache, TieredCache

MakeBackend = Callable[..., Cache]
S3_CREDENTIALS = {
    "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """A redis-server of our own on a free port (no persistence), to stop and start at will."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (scripts/services.sh installs it)")
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not listening(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


class Clock:
    """A wall clock that moves only when the test says (``advance``): TTLs without sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def s3_client(endpoint: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=endpoint, **S3_CREDENTIALS)


async def raw_blobs(cache: Cache) -> list[bytes]:
    """Every stored name and value of a cache, read straight from its backends."""
    tiers = cache.tiers if isinstance(cache, TieredCache) else [cache]
    blobs: list[bytes] = []
    for tier in tiers:
        if isinstance(tier, MemoryCache):
            for name, (_deadline, data) in tier._entries.items():
                blobs += [name.encode(), data]
        elif isinstance(tier, RedisCache):
            async for name in tier.client.scan_iter(match=tier.prefix + "*"):
                value = await tier.client.get(name)
                blobs += [name, value if isinstance(value, bytes) else b""]
        elif isinstance(tier, S3Cache):  # boto3 straight on the bucket, below the store layer
            client, bucket = tier.objects.client, tier.objects.bucket
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=tier.objects.prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
                    blobs += [item["Key"].encode(), body.read()]
                    body.close()
        elif isinstance(tier, LocalDirCache):
            for path in tier.root.rglob("*"):
                if path.is_file():
                    blobs += [str(path).encode(), path.read_bytes()]
    return blobs


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes (for things that happen after a back-off)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()
