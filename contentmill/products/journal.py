"""The run's results journal: one JSON line per finished product, appended and fsynced after each job.

A run killed at any point and started again with the same catalog and config reads the journal and skips
every product in it, so nothing finished is paid for twice (the gateway's cache covers a job that was paid
but not yet journaled). The journal is also where a run keeps its rows: it holds only each row's offset in
memory and reads a row back when the output is written, so a run's memory does not grow with its catalog.
A finished run removes its journal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class RunJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._offsets: dict[str, int] = {}  # product id -> where its row starts
        if path.exists():
            with path.open("rb") as handle:
                offset = 0
                for line in handle:
                    product = _product_id(line)
                    if product is not None:  # a line cut off by a crash is ignored
                        self._offsets[product] = offset
                    offset += len(line)

    def __contains__(self, product: str) -> bool:
        return product in self._offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def row(self, product: str) -> dict[str, Any] | None:
        """The journaled row of ``product``, or None."""
        offset = self._offsets.get(product)
        if offset is None:
            return None
        with self.path.open("rb") as handle:
            handle.seek(offset)
            found: dict[str, Any] = json.loads(handle.readline())
        return found

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        lines = [(str(row["id"]), (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")) for row in rows]
        if not lines:
            return
        with self.path.open("a+b") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end and (handle.seek(-1, os.SEEK_END), handle.read(1))[1] != b"\n":
                handle.write(b"\n")  # a line cut off by a crash ends here, and stays unreadable on its own
                end += 1
            handle.write(b"".join(data for _, data in lines))
            handle.flush()
            os.fsync(handle.fileno())
        for product, data in lines:
            self._offsets[product] = end
            end += len(data)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class FinishedCount:
    """How many rows a journal holds, read from outside the run (a progress bar): its complete lines. Each look
    reads only what was appended since the last one; a journal that is gone (the finished run removed it) keeps
    the count last seen, and one shorter than what was read (written anew) is counted again from the start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read = 0
        self._lines = 0

    def __call__(self) -> int:
        try:
            with self.path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size < self._read:
                    self._read = self._lines = 0
                handle.seek(self._read)
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    self._lines += chunk.count(b"\n")
                    self._read += len(chunk)
        except FileNotFoundError:
            pass
        return self._lines


def _product_id(line: bytes) -> str | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return str(row["id"]) if isinstance(row, dict) and "id" in row else None
