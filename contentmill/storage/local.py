"""Objects as files under a directory: the embedded profile's store. Writes go through ``contentmill.files``, so
a reader sees the old file or the whole new one; the partial files a write uses are never objects."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from contentmill.files import PARTIAL_PREFIX, atomic_target, write_atomic
from contentmill.storage.base import KEY_PATTERN, ObjectStore, check_key, check_prefix


class LocalStore(ObjectStore):
    """Objects as files under ``root``; writes go to a temporary name and are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, media_type: str = "application/octet-stream") -> None:
        write_atomic(self.path(key), data)

    def put_file(self, key: str, path: Path, media_type: str = "application/octet-stream") -> None:
        with atomic_target(self.path(key)) as partial:
            shutil.copyfile(path, partial)

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def _walk(self, prefix: str, *, partials: bool = False) -> Iterator[tuple[Path, str]]:
        """``(file, key)`` of every file whose key starts with ``prefix``, deepest folders first; partial files
        (a write under way, or one a crash left) only when asked."""
        top = self.root / check_prefix(prefix).rpartition("/")[0]
        for folder, _dirs, files in os.walk(top, topdown=False):
            base = Path(folder).relative_to(self.root).as_posix()
            for file in files:
                key = file if base == "." else f"{base}/{file}"
                if key.startswith(prefix) and (partials or not file.startswith(PARTIAL_PREFIX)):
                    yield Path(folder, file), key

    def keys(self, prefix: str = "") -> Iterator[str]:
        for _path, key in self._walk(prefix):
            if KEY_PATTERN.match(key):
                yield key

    def clear(self, prefix: str = "") -> int:
        """Also removes partial files and the folders left empty under ``prefix``."""
        removed = 0
        for path, _key in self._walk(prefix, partials=True):
            path.unlink(missing_ok=True)
            if not path.name.startswith(PARTIAL_PREFIX):
                removed += 1
            folder = path.parent
            while folder != self.root and (folder.relative_to(self.root).as_posix() + "/").startswith(prefix):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent
        return removed

    def remove_partials(self, prefix: str = "", older_than_s: float = 3600.0) -> int:
        """Delete partial files a crashed writer left under ``prefix`` (older than ``older_than_s``)."""
        removed, before = 0, time.time() - older_than_s
        for path, _key in self._walk(prefix, partials=True):
            if path.name.startswith(PARTIAL_PREFIX):
                with suppress(FileNotFoundError):
                    if path.stat().st_mtime < before:
                        path.unlink()
                        removed += 1
        return removed

    def url(self, key: str) -> str:
        return str(self.path(key))

    def copy(self, source: str, target: str) -> None:
        """A hard link where the file system allows it (published copies then cost no space), else a copy."""
        origin, destination = self.path(source), self.path(target)
        if not origin.is_file():
            raise self.missing(source)
        with atomic_target(destination) as partial:
            partial.unlink()
            try:
                os.link(origin, partial)
            except OSError:
                shutil.copyfile(origin, partial)

    def fetch(self, key: str, folder: Path) -> Path:
        found = self.path(key)
        if not found.is_file():
            raise self.missing(key)
        return found

    def save_as(self, key: str, target: Path) -> Path:
        with atomic_target(target) as partial:
            shutil.copyfile(self.fetch(key, target.parent), partial)
        return target
