"""A reservation journal for in-process admission: reservations outlive the process that made them.

Before a provider is called, the reservation is appended to a file in the data directory (one ``write`` of one
line, which the kernel keeps even if the process is killed the next instant); settling appends its id. Any process
sharing the data directory later finds reservations that were opened, never settled and are past their deadline:
their worker died mid-call, and they are charged as reserved. Redis admission keeps its reservations in Redis and
needs no journal.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from contentmill.appendfile import append, open_append
from contentmill.gateway.admission import Reservation

COMPACT_AFTER_BYTES = 4 * 1024 * 1024


class ReservationJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = open_append(path)

    def _append(self, line: str) -> None:
        # A shared lock per append lets a compaction (exclusive) rewrite the file in place without losing lines.
        append(self._fd, (line + "\n").encode())

    def opened(self, reservation: Reservation) -> None:
        self._append("O " + reservation.to_json())

    def settled(self, reservation_id: str) -> None:
        self._append("S " + reservation_id)

    def _read(self) -> tuple[dict[str, Reservation], set[str]]:
        opened: dict[str, Reservation] = {}
        settled: set[str] = set()
        with self.path.open("rb") as handle:
            for raw in handle:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith("O "):
                    try:
                        reservation = Reservation.from_json(line[2:])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by a crash mid-write names no reservation
                    opened[reservation.id] = reservation
                elif line.startswith("S "):
                    settled.add(line[2:])
        return opened, settled

    def orphans(self, now: float) -> list[Reservation]:
        """Take unsettled reservations past their deadline, marking them settled so no one takes them twice."""
        with self.path.open("r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                opened, settled = self._read()
                late = [r for rid, r in opened.items() if rid not in settled and r.deadline <= now]
                settled |= {r.id for r in late}
                if self.path.stat().st_size > COMPACT_AFTER_BYTES:
                    keep = [r for rid, r in opened.items() if rid not in settled]
                    handle.truncate(0)  # same file, rewritten in place: other processes keep appending to it
                    handle.write("".join("O " + r.to_json() + "\n" for r in keep).encode())
                else:
                    handle.seek(0, os.SEEK_END)
                    handle.write("".join("S " + r.id + "\n" for r in late).encode())
                handle.flush()
                return late
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
