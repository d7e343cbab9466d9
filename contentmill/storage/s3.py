"""Objects in an S3 bucket, or any S3-compatible store through ``endpoint_url`` (MinIO, moto, Ceph ...).

This module owns the boto3 client (endpoint, region, timeouts, retries) and turns boto3's failures into ours: a
missing object is ``None``/``False``, or ``FileNotFoundError`` where a file is asked for; any other failure is one
:class:`ObjectStoreError` line that says what is wrong and what to fix (a bucket that does not exist, credentials
it refuses, an endpoint that does not answer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from contentmill.errors import ObjectStoreError
from contentmill.files import atomic_target
from contentmill.storage.base import ObjectStore, check_key, check_prefix

log = logging.getLogger("contentmill.storage")
PRESIGN_EXPIRES_S = 7 * 86400  # the longest a SigV4 presigned URL may live
S3_TIMEOUT_S = 60.0
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_REFUSED = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                      "InvalidToken", "AllAccessDisabled", "AccountProblem"})


def s3_client(endpoint_url: str | None = None, region_name: str | None = None,
              timeout_s: float | None = S3_TIMEOUT_S) -> Any:
    """A boto3 S3 client that fails fast and speaks to plain S3-compatible stores too."""
    config = Config(
        connect_timeout=min(timeout_s or 5.0, 5.0), read_timeout=timeout_s or 60.0,
        retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=16,
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region_name, config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Objects in an S3 bucket (or any S3-compatible store) under ``prefix``; ``client`` is shared, not closed."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "contentmill/store/",
        client: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        timeout_s: float | None = S3_TIMEOUT_S,
        presign_expires_s: int = PRESIGN_EXPIRES_S,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.presign_expires_s = presign_expires_s
        self._owns_client = client is None
        self.client = client if client is not None else s3_client(endpoint_url, region_name, timeout_s)
        self.endpoint = endpoint_url or ("AWS S3" if client is None else str(client.meta.endpoint_url))

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def explain(self, exc: Exception, doing: str = "", *, bucket_only: bool = False) -> ObjectStoreError:
        """An S3 failure as one line: what is wrong, then what to fix (``doing`` names the object at stake)."""
        where = self.endpoint
        code = _code(exc) if isinstance(exc, ClientError) else ""
        if code == "NoSuchBucket" or (bucket_only and code in _MISSING):
            problem = f"bucket {self.bucket} does not exist at {where}"
            fix = "create it, or set CONTENTMILL_S3_BUCKET to one that does"
        elif code in _REFUSED:
            problem = f"bucket {self.bucket} at {where} refuses these credentials ({code})"
            fix = "check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        elif code or isinstance(exc, ClientError):
            problem = f"bucket {self.bucket} at {where} answered {code or ' '.join(str(exc).split())}"
            fix = "check CONTENTMILL_S3_BUCKET, CONTENTMILL_S3_ENDPOINT_URL and the AWS credentials"
        elif isinstance(exc, NoCredentialsError):
            problem = "no AWS credentials were found"
            fix = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        else:
            problem = f"cannot reach the object store at {where} ({' '.join(str(exc).split())})"
            fix = "start it or fix CONTENTMILL_S3_ENDPOINT_URL"
        return ObjectStoreError(f"{problem} ({doing}): {fix}" if doing else f"{problem}: {fix}")

    @contextmanager
    def _explained(self, doing: str, key: str = "") -> Iterator[None]:
        """boto3's failures as ours: a missing object as :meth:`missing`, the rest as :meth:`explain`."""
        try:
            yield
        except ClientError as exc:
            if key and _code(exc) in _MISSING:
                raise self.missing(key) from None
            where = f"s3://{self.bucket}/{self.prefix}{key}"
            raise self.explain(exc, f"{doing} {where}") from None
        except BotoCoreError as exc:
            raise self.explain(exc, f"{doing} s3://{self.bucket}/{self.prefix}{key}") from None

    def check(self) -> None:
        """That the bucket is there and takes these credentials; raises ObjectStoreError saying what to fix."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self.explain(exc, bucket_only=True) from None

    def put(self, key: str, data: bytes, media_type: str = "application/octet-stream") -> None:
        name = self.name(key)
        with self._explained("writing", key):
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data, ContentType=media_type)

    def put_file(self, key: str, path: Path, media_type: str = "application/octet-stream") -> None:
        name = self.name(key)
        with self._explained("uploading to", key):
            self.client.upload_file(str(path), self.bucket, name, ExtraArgs={"ContentType": media_type})

    def get(self, key: str) -> bytes | None:
        name = self.name(key)
        try:
            with self._explained("reading", key):
                response = self.client.get_object(Bucket=self.bucket, Key=name)
                with closing(response["Body"]) as body:
                    data: bytes = body.read()
        except FileNotFoundError:
            return None
        return data

    def exists(self, key: str) -> bool:
        name = self.name(key)
        try:
            with self._explained("looking up", key):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> bool:
        name = self.name(key)
        with self._explained("deleting", key):
            self.client.delete_object(Bucket=self.bucket, Key=name)
        return True

    def _pages(self, prefix: str) -> Iterator[list[str]]:
        """The names under ``prefix``, a page (up to 1,000) at a time."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + check_prefix(prefix)
        )
        with self._explained("listing", prefix):
            for page in pages:
                yield [item["Key"] for item in page.get("Contents", [])]

    def keys(self, prefix: str = "") -> Iterator[str]:
        for page in self._pages(prefix):
            yield from (name[len(self.prefix):] for name in page)

    def clear(self, prefix: str = "") -> int:
        """Deletes a page of objects per request."""
        removed = 0
        for page in self._pages(prefix):
            if not page:
                continue
            with self._explained("deleting under", prefix):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": name} for name in page], "Quiet": True}
                )
            failed = answer.get("Errors", [])
            if failed:
                log.warning("%d objects under %s could not be deleted (first: %s)", len(failed),
                            self.location + prefix, failed[0].get("Code"))
            removed += len(page) - len(failed)
        return removed

    def presign(self, key: str, *, expires_s: int | None = None, media_type: str | None = None,
                disposition: str | None = None) -> str:
        """A URL that fetches the object without credentials for ``expires_s`` seconds (the store's default
        otherwise); ``media_type`` and ``disposition`` set the answer's Content-Type and Content-Disposition."""
        params = {"Bucket": self.bucket, "Key": self.name(key)}
        if media_type is not None:
            params["ResponseContentType"] = media_type
        if disposition is not None:
            params["ResponseContentDisposition"] = disposition
        with self._explained("signing a URL for", key):
            url: str = self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_s or self.presign_expires_s
            )
        return url

    def url(self, key: str) -> str:
        return self.presign(key)

    def copy(self, source: str, target: str) -> None:
        """A server-side copy: the bytes never pass through this process."""
        copied = {"Bucket": self.bucket, "Key": self.name(source)}
        with self._explained("copying", source):
            self.client.copy_object(Bucket=self.bucket, Key=self.name(target), CopySource=copied)

    def fetch(self, key: str, folder: Path) -> Path:
        return self.save_as(key, folder / check_key(key).replace("/", "_"))

    def save_as(self, key: str, target: Path) -> Path:
        name = self.name(key)
        with atomic_target(target) as partial, self._explained("downloading", key):
            self.client.download_file(self.bucket, name, str(partial))
        return target

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
