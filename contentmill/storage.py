"""A small object store for what flows publish and for their steps' results: a local directory or S3.

Keys are relative paths such as ``videos/octopuses-1a2b/video.mp4``. The local store (the default, under
``DATA_DIR/store``) hands out file paths; the S3 store (when CONTENTMILL_S3_BUCKET is set, objects under
``<s3_prefix>store/``) hands out presigned URLs. Writes are atomic in both: a reader sees the old object or
the whole new one, never a part, so an object's presence means it is complete. Nothing expires: unlike the
provider cache, what is stored here stays until someone deletes it.

Calls block (file and network I/O); async callers run them in a worker thread.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contentmill.cache.objectstore import S3Cache
from contentmill.errors import ConfigError
from contentmill.files import atomic_target, write_atomic
from contentmill.settings import Settings

PRESIGN_EXPIRES_S = 7 * 86400  # the longest a SigV4 presigned URL may live
S3_TIMEOUT_S = 60.0
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-]*(/[A-Za-z0-9_][A-Za-z0-9._\-]*)*$")


def check_key(key: str) -> str:
    """A key is a relative path of plain names: no '..', no leading '/', nothing a shell or URL mangles."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"object key {key!r} must be a relative path of letters, digits, '.', '_' and '-'")
    return key


class ObjectStore(ABC):
    """Put, get and locate objects by key; subclasses hold the bytes."""

    @abstractmethod
    def put(self, key: str, data: bytes, media_type: str = "application/octet-stream") -> str:
        """Store ``data`` under ``key`` (replacing what was there); returns :meth:`url`."""

    @abstractmethod
    def put_file(self, key: str, path: Path, media_type: str = "application/octet-stream") -> str:
        """Store the file at ``path`` under ``key`` without reading it whole into memory."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def url(self, key: str) -> str:
        """Where a person or a program can fetch the object: a file path or a presigned URL."""

    @abstractmethod
    def copy(self, source: str, target: str) -> str:
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

    def put_json(self, key: str, value: Any) -> str:
        data = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")
        return self.put(key, data, "application/json")

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


class LocalStore(ObjectStore):
    """Objects as files under ``root``; writes go to a temporary name and are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, media_type: str = "application/octet-stream") -> str:
        write_atomic(self.path(key), data)
        return self.url(key)

    def put_file(self, key: str, path: Path, media_type: str = "application/octet-stream") -> str:
        target = self.path(key)
        with atomic_target(target) as partial:
            shutil.copyfile(path, partial)
        return self.url(key)

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def url(self, key: str) -> str:
        return str(self.path(key))

    def copy(self, source: str, target: str) -> str:
        """A hard link where the file system allows it (published copies then cost no space), else a copy."""
        origin, destination = self.path(source), self.path(target)
        if not origin.is_file():
            raise FileNotFoundError(f"no object {source!r} in {self.root}")
        with atomic_target(destination) as partial:
            partial.unlink()
            try:
                os.link(origin, partial)
            except OSError:
                shutil.copyfile(origin, partial)
        return self.url(target)

    def fetch(self, key: str, folder: Path) -> Path:
        found = self.path(key)
        if not found.is_file():
            raise FileNotFoundError(f"no object {key!r} in {self.root}")
        return found

    def save_as(self, key: str, target: Path) -> Path:
        with atomic_target(target) as partial:
            shutil.copyfile(self.fetch(key, target.parent), partial)
        return target


class S3Store(ObjectStore):
    """Objects in an S3 bucket (or any S3-compatible store) under ``prefix``."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "contentmill/store/",
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        presign_expires_s: int = PRESIGN_EXPIRES_S,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.presign_expires_s = presign_expires_s
        self.endpoint_url = endpoint_url
        self._owns_client = client is None
        self.client = (
            client if client is not None else S3Cache.make_client(endpoint_url, region_name, S3_TIMEOUT_S)
        )

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _error(self, action: str, key: str, exc: Exception) -> ConfigError:
        """An S3 failure as one ConfigError that names the object and the settings to check."""
        if isinstance(exc, ClientError):
            why = exc.response.get("Error", {}).get("Code", "error")
            check = "CONTENTMILL_S3_BUCKET, CONTENTMILL_S3_ENDPOINT_URL and the AWS credentials"
        else:
            why, check = str(exc), "CONTENTMILL_S3_ENDPOINT_URL and that the object store is reachable"
        return ConfigError(f"cannot {action} s3://{self.bucket}/{self.name(key)} ({why}): check {check}")

    @contextmanager
    def _explained(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._error(action, key, exc) from None

    def put(self, key: str, data: bytes, media_type: str = "application/octet-stream") -> str:
        with self._explained("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self.name(key), Body=data, ContentType=media_type)
        return self.url(key)

    def put_file(self, key: str, path: Path, media_type: str = "application/octet-stream") -> str:
        with self._explained("upload to", key):
            self.client.upload_file(
                str(path), self.bucket, self.name(key), ExtraArgs={"ContentType": media_type}
            )
        return self.url(key)

    def get(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.name(key))
            with closing(response["Body"]) as body:
                data: bytes = body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise self._error("read", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("read", key, exc) from None
        return data

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.name(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise self._error("look up", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("look up", key, exc) from None
        return True

    def url(self, key: str) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.name(key)},
            ExpiresIn=self.presign_expires_s,
        )
        return url

    def copy(self, source: str, target: str) -> str:
        """A server-side copy: the bytes never pass through this process."""
        with self._explained("copy into", target):
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self.name(target),
                CopySource={"Bucket": self.bucket, "Key": self.name(source)},
            )
        return self.url(target)

    def fetch(self, key: str, folder: Path) -> Path:
        return self.save_as(key, folder / check_key(key).replace("/", "_"))

    def save_as(self, key: str, target: Path) -> Path:
        with atomic_target(target) as partial, self._explained("download", key):
            self.client.download_file(self.bucket, self.name(key), str(partial))
        return target

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def open_store(settings: Settings) -> ObjectStore:
    """S3 when CONTENTMILL_S3_BUCKET is set, else the local directory ``DATA_DIR/store``."""
    if settings.s3_bucket:
        return S3Store(
            settings.s3_bucket, prefix=settings.s3_prefix + "store/", endpoint_url=settings.s3_endpoint_url
        )
    return LocalStore(settings.data_dir / "store")
