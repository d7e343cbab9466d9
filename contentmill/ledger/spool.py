"""The ledger's spool: call records the ledger database could not take wait in ``ledger.spool`` in the data
directory until a process that reaches the database writes them.

Each record is one JSON line (its ledger row), appended and fsynced before the writer lets go of it, under a
shared ``flock`` as the reservation journal appends. A drain takes the exclusive lock, writes every line into the
ledger (a row already there, same id, is skipped) and only then empties the file in place: two processes never
drain the same lines, and a drain cut short is done again without any row counted twice. A line that cannot be read
(cut short by a crash mid-append) is moved to ``ledger.spool.rejected`` for a person to look at.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import orjson

from contentmill.appendfile import append_to, exclusive
from contentmill.errors import ContentmillError, LedgerError
from contentmill.ledger.records import CallRecord
from contentmill.ledger.store import LedgerStore, call_row, record_from_mapping
from contentmill.settings import Settings, get_settings

log = logging.getLogger("contentmill.ledger")

SPOOL_FILE = "ledger.spool"
DRAIN_BATCH = 500


def spool_line(record: CallRecord) -> bytes:
    return orjson.dumps(call_row(record)) + b"\n"


def spooled_record(line: bytes) -> CallRecord:
    row = orjson.loads(line)
    row["ts"] = datetime.fromisoformat(row["ts"])
    return record_from_mapping(row)


def _parse(data: bytes) -> tuple[list[CallRecord], list[bytes]]:
    """The records of the spool's lines, and the lines that hold none."""
    records: list[CallRecord] = []
    unreadable: list[bytes] = []
    for line in data.splitlines(keepends=True):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("a line cut short")
            records.append(spooled_record(line))
        except (ValueError, KeyError, TypeError, ContentmillError):
            unreadable.append(line if line.endswith(b"\n") else line + b"\n")
    return records, unreadable


def plural(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"


class LedgerSpool:
    """The file of call records waiting for the ledger database. A data directory serves one ledger: whichever
    process drains the spool writes its rows into the ledger it has open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rejected = path.with_name(path.name + ".rejected")

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> LedgerSpool:
        return cls(data_dir.expanduser() / SPOOL_FILE)

    @classmethod
    def for_settings(cls, settings: Settings | None = None) -> LedgerSpool:
        """The spool of the settings' data directory (default: the current settings, else the default folder)."""
        if settings is None:
            try:
                settings = get_settings()
            except ContentmillError:
                return cls.in_data_dir(Settings.model_fields["data_dir"].default)
        return cls.in_data_dir(settings.data_dir)

    def append(self, records: Sequence[CallRecord]) -> None:
        """Keep ``records`` on disk (fsynced when this returns); raises LedgerError when it cannot."""
        try:
            append_to(self.path, b"".join(spool_line(record) for record in records), sync=True)
        except (OSError, TypeError) as exc:  # TypeError: orjson's, for a value it cannot write
            raise LedgerError(f"spool {self.path}: could not keep {plural(len(records), 'call record')}: {_reason(exc)}"
                              ) from exc

    def has_rows(self) -> bool:
        """Whether anything waits (one ``stat``)."""
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def waiting(self) -> int:
        """How many records wait."""
        try:
            return self.path.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise LedgerError(f"spool {self.path}: could not be read: {_reason(exc)}") from exc

    def drain(self, store: LedgerStore, *, wait: bool = True) -> int:
        """Write the waiting records into ``store`` and empty the spool; returns how many were written (0 when none
        wait or, without ``wait``, another process is draining). When the store refuses, LedgerError is raised and
        the records keep waiting."""
        if not self.has_rows():
            return 0
        try:
            with exclusive(self.path, wait=wait) as handle:
                if handle is None:
                    return 0
                records, unreadable = _parse(handle.read())
                for start in range(0, len(records), DRAIN_BATCH):
                    store.write_calls(records[start:start + DRAIN_BATCH])
                if unreadable:
                    append_to(self.rejected, b"".join(unreadable), sync=True)
                    log.warning("%d unreadable lines of the ledger spool moved to %s", len(unreadable), self.rejected)
                handle.truncate(0)
                os.fsync(handle.fileno())
        except OSError as exc:
            raise LedgerError(f"spool {self.path}: could not be drained: {_reason(exc)}") from exc
        if records:
            log.info("%s written from the spool %s into the ledger", plural(len(records), "call record"), self.path)
        return len(records)
