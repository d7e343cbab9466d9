"""The published videos' files over HTTP: ``GET /media/videos/<folder>/<file>`` for the team that made them.

A local store's files are streamed by this server with range requests (``206`` and ``Content-Range`` for
``Range: bytes=a-b``, ``416`` for a range past the end), a strong ``ETag`` (``304`` on ``If-None-Match``) and
``If-Range``: what a ``<video>`` element needs to seek. An S3 store's files are a ``302`` to a presigned URL that
lives a few minutes; S3 answers the range requests itself. Only published folders (``videos/``) are served, and
only to a key of the team that made the video (the studio's run, or the tags in the folder's manifest); any other
key gets the same ``404`` as a file that does not exist, so nobody learns which videos exist.
"""

from __future__ import annotations

import asyncio
import email.utils
import mimetypes
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contentmill.server.errors import ApiError
from contentmill.server.http import Answer, Request
from contentmill.storage import LocalStore, ObjectStore, S3Store, check_key
from contentmill.video.summary import MEDIA_ROUTE

PUBLISHED = "videos/"
PRESIGN_S = 300  # how long a presigned S3 URL handed to a browser lives
CHUNK = 256 * 1024
OWNER_CACHE_S = 60.0  # how long a team's right to see a folder is remembered
TYPES = {".mp4": "video/mp4", ".srt": "application/x-subrip", ".json": "application/json", ".wav": "audio/wav"}


_RANGE = re.compile(r"bytes=(?P<first>[0-9]*)-(?P<last>[0-9]*)", re.IGNORECASE)


class Unsatisfiable(Exception):
    """A range that starts past the end of the file."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte (inclusive) of ``Range: bytes=...``; None serves the whole file: no header, a header
    that does not parse or several ranges (RFC 9110 lets a server ignore those). Raises Unsatisfiable."""
    found = _RANGE.fullmatch(header.strip()) if header else None
    if found is None or not (found["first"] or found["last"]):
        return None
    if not found["first"]:  # bytes=-N: the last N bytes
        if int(found["last"]) == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - int(found["last"])), size - 1
    start = int(found["first"])
    if found["last"] and int(found["last"]) < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return start, min(int(found["last"]), size - 1) if found["last"] else size - 1


def media_type(key: str) -> str:
    return TYPES.get(Path(key).suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def folder_of(key: str) -> str:
    """``videos/<name>/`` of a published key."""
    return "/".join(key.split("/")[:2]) + "/"


def not_found(path: str) -> ApiError:
    return ApiError(404, f"{path} is not a file of your team's videos", "invalid_request_error", "not_found")


@dataclass(frozen=True, slots=True)
class FileFacts:
    path: Path
    size: int
    etag: str
    modified: str


class Media:
    """Serves published files to the teams that own them; ``may_see(folder, team)`` says whether ``team`` (None:
    the admin) may see a folder (blocking: it may read the database or the store)."""

    def __init__(self, store: ObjectStore, may_see: Callable[[str, str | None], bool]) -> None:
        self.store = store
        self._may_see = may_see
        self._seen: dict[tuple[str, str | None], float] = {}

    def may_see(self, folder: str, team: str | None) -> bool:
        seen = self._seen.get((folder, team))
        if seen is not None and time.monotonic() - seen < OWNER_CACHE_S:
            return True
        allowed = self._may_see(folder, team)
        if allowed:  # only a yes is remembered: a video finished a moment ago is seen at once
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[(folder, team)] = time.monotonic()
        return allowed

    def key_of(self, request: Request) -> str:
        """The object key of the request's path, or a 404 for anything but a published file."""
        path = str(request.scope["path"])
        key = path[len(MEDIA_ROUTE):]
        try:
            check_key(key)
        except ValueError:
            raise not_found(path) from None
        if not key.startswith(PUBLISHED) or key.count("/") < 2:
            raise not_found(path)
        return key

    async def serve(self, request: Request, team: str | None) -> Answer | None:
        """The file to a key of ``team`` (None: the admin, who may see every team's); streams a local file itself
        and answers None, or answers a redirect to S3."""
        key = self.key_of(request)
        path = str(request.scope["path"])
        if not await asyncio.to_thread(self.may_see, folder_of(key), team):
            raise not_found(path)
        download = "download=1" in request.scope.get("query_string", b"").decode("latin-1").split("&")
        if isinstance(self.store, S3Store):
            return await asyncio.to_thread(self._presigned, key, download)
        if not isinstance(self.store, LocalStore):
            raise not_found(path)
        facts = await asyncio.to_thread(_facts, self.store, key)
        if facts is None:
            raise not_found(path)
        await _send_file(request, facts, media_type(key), _attachment(key) if download else None)
        return None

    def _presigned(self, key: str, download: bool) -> Answer:
        assert isinstance(self.store, S3Store)
        url = self.store.presign(key, expires_s=PRESIGN_S, media_type=media_type(key),
                                 disposition=_attachment(key) if download else None)
        return Answer(302, b"", b"text/plain", ((b"location", url.encode()), (b"cache-control", b"no-store")))


def _facts(store: LocalStore, key: str) -> FileFacts | None:
    path = store.path(key)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if not path.is_file():
        return None
    etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"'
    return FileFacts(path, st.st_size, etag, email.utils.formatdate(st.st_mtime, usegmt=True))


def _attachment(key: str) -> str:
    parts = key.split("/")
    return f'attachment; filename="{parts[1]}-{parts[-1]}"'


async def _send_file(request: Request, facts: FileFacts, content_type: str, disposition: str | None) -> None:
    """Answer with the file, a range of it, a 304 or a 416, reading it in chunks off the event loop."""
    send = request.scope["contentmill.send"]
    headers = [(b"accept-ranges", b"bytes"), (b"etag", facts.etag.encode()),
               (b"last-modified", facts.modified.encode()), (b"cache-control", b"private, max-age=3600"),
               (b"x-contentmill-request-id", request.id.encode())]
    if disposition is not None:
        headers.append((b"content-disposition", disposition.encode()))
    if facts.etag in (request.header(b"if-none-match") or "").replace(" ", "").split(","):
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    asked = request.header(b"range")
    if_range = request.header(b"if-range")
    if if_range is not None and if_range.strip() != facts.etag:
        asked = None  # the file changed since the client's first part: send it whole
    try:
        span = byte_range(asked, facts.size)
    except Unsatisfiable:
        headers += [(b"content-range", f"bytes */{facts.size}".encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 416, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    start, end = span if span is not None else (0, facts.size - 1)
    length = end - start + 1 if facts.size else 0
    status = 206 if span is not None else 200
    headers += [(b"content-type", content_type.encode()), (b"content-length", str(length).encode())]
    if span is not None:
        headers.append((b"content-range", f"bytes {start}-{end}/{facts.size}".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if request.scope["method"] == "HEAD" or length == 0:
        await send({"type": "http.response.body", "body": b""})
        return
    handle = await asyncio.to_thread(open, facts.path, "rb")
    try:
        await asyncio.to_thread(handle.seek, start, os.SEEK_SET)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        if left > 0:  # the file shrank under us: end the body (the client sees a short read)
            await send({"type": "http.response.body", "body": b""})
    finally:
        handle.close()
