"""Bytes under a key, in a local directory or an S3 bucket: the one object-store layer of the project.

Keys are relative paths such as ``videos/octopuses-1a2b/video.mp4``. The local store (``local``) hands out file
paths; the S3 store (``s3``) keeps objects under its ``prefix`` and hands out presigned URLs. Writes are atomic in
both: a reader sees the old object or the whole new one, never a part, so an object's presence means it is
complete. Nothing expires here (the provider cache keeps each entry's expiry in the entry). What flows publish
lives in :func:`open_store`'s store, under ``store/``; the provider cache's L3 tier (``cache/objectstore.py``)
keeps its entries and media through this layer too, under ``cache/``. Only settings and errors lie below it.

Calls block (file and network I/O); async callers run them in a worker thread.
"""

from __future__ import annotations

from contentmill.settings import Settings
from contentmill.storage.base import ObjectStore, check_key, check_prefix
from contentmill.storage.local import LocalStore
from contentmill.storage.s3 import PRESIGN_EXPIRES_S, S3_TIMEOUT_S, S3Store, s3_client

__all__ = [
    "PRESIGN_EXPIRES_S", "S3_TIMEOUT_S", "LocalStore", "ObjectStore", "S3Store", "check_key", "check_prefix",
    "open_store", "s3_client",
]


def open_store(settings: Settings) -> ObjectStore:
    """S3 when CONTENTMILL_S3_BUCKET is set, else the local directory ``DATA_DIR/store``."""
    if settings.s3_bucket:
        return S3Store(
            settings.s3_bucket, prefix=settings.s3_prefix + "store/", endpoint_url=settings.s3_endpoint_url
        )
    return LocalStore(settings.data_dir / "store")
