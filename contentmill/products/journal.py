"""The run's results journal: one JSON line per finished product, appended and fsynced after each batch.

A run killed at any point and started again with the same catalog and config reads the journal and skips
every product in it, so nothing finished is paid for twice (the gateway's cache covers a batch that was paid
but not yet journaled). A finished run removes its journal.
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

    def finished(self) -> dict[str, dict[str, Any]]:
        """Rows already journaled, by product id; a line cut off by a crash is ignored."""
        if not self.path.exists():
            return {}
        rows: dict[str, dict[str, Any]] = {}
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and "id" in row:
                    rows[str(row["id"])] = row
        return rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if not data:
            return
        with self.path.open("a+b") as handle:
            if handle.tell() and (handle.seek(-1, os.SEEK_END), handle.read(1))[1] != b"\n":
                data = "\n" + data  # a line cut off by a crash ends here, and stays unreadable on its own
            handle.write(data.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
