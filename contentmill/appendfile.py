"""Append-only files in the data directory that several processes share: each append is one ``write`` under a
shared ``flock``, so a reader that takes the exclusive lock (to read, compact or empty the file in place) never
sees half of one; ``sync`` makes an append durable (fsync) before it returns.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def open_append(path: Path, *, sync: bool = False) -> int:
    """A descriptor that appends to ``path``, created (with its folder) when missing; with ``sync`` a new file's
    directory entry is made durable too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if sync and created:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return fd


def append(fd: int, data: bytes, *, sync: bool = False) -> None:
    """Add ``data`` at the end of the file in one write; with ``sync`` it is on disk when this returns."""
    fcntl.flock(fd, fcntl.LOCK_SH)  # shared between appenders; exclusive for whoever rewrites the file
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def append_to(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Open ``path``, append ``data`` and close it: for files written now and then."""
    fd = open_append(path, sync=sync)
    try:
        append(fd, data, sync=sync)
    finally:
        os.close(fd)


@contextmanager
def exclusive(path: Path, *, wait: bool = True) -> Iterator[BinaryIO | None]:
    """The file open for reading and rewriting in place, with no append in progress or to come until the block
    ends; None when the file does not exist, or (without ``wait``) when another process holds it."""
    try:
        handle = path.open("r+b")
    except FileNotFoundError:
        yield None
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
