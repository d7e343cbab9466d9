"""Admission shared by every process on one machine, with no service: a SQLite file in the data directory.

The embedded profile's default. Each admission is one ``BEGIN IMMEDIATE`` transaction: it loads the rows of the
buckets and counters its claims name, applies the same arithmetic as ``MemoryAdmission`` (``Books``), and writes
them back with the reservation. SQLite lets one writer in at a time across every process that opens the file, so
two CLI runs, a Prefect worker and ``contentmill serve`` on one machine never together pass a hard budget, a quota
or a vendor's RPM/TPM. Reservations live in the file too: those of a process killed mid-call are found and
charged as reserved by the next sweep in any process (no journal is needed): at once when that process ran on
this machine and is gone, else when its deadline passes. Committed transactions survive the
death of the process that made them (WAL, ``synchronous=NORMAL``).

Invariants (as for the other backends, property-tested over all three in tests/test_admission.py): a counter's
``used`` never passes its limit through admission; a bucket never goes below zero; a reservation is settled or
swept at most once.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from contentmill.gateway.admission import Admission, Books, Claim, Refusal, Reservation, _Bucket, _Counter
from contentmill.sqlstore import enter_wal

T = TypeVar("T")
BUSY_TIMEOUT_S = 60.0
IDLE_BUCKET_S = 3600.0  # a bucket untouched this long is full again (limits are per minute): its row can go

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL NOT NULL, stamp REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, used REAL NOT NULL, reserved REAL NOT NULL, "
    "expires REAL)",  # NULL: a counter without a window
    "CREATE TABLE IF NOT EXISTS reservations (id TEXT PRIMARY KEY, body TEXT NOT NULL, deadline REAL NOT NULL, "
    "owner TEXT NOT NULL DEFAULT '')",  # host:pid:start of the process that made it
    "CREATE INDEX IF NOT EXISTS reservations_by_deadline ON reservations (deadline)",
)


def _started(pid: int) -> str:
    """When the process started, in clock ticks since boot (Linux), so a reused pid is told apart; '' elsewhere,
    and 'Z' for a process that has exited and waits to be reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "Z" if fields[0] == "Z" else fields[19]  # state, and field 22: counted after the command's name


OWNER = f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}"


def dead(owner: str) -> bool:
    """Whether the process that made a reservation is known to be gone: it ran on this machine and its pid is
    free or now names another process. Unknown (another machine, no /proc): not dead; its deadline decides."""
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or not started:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return _started(pid) not in (started, "")


class SQLiteAdmission(Admission):
    def __init__(self, path: Path, clock: Callable[[], float] | None = None,
                 timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock or time.time
        self._lock = threading.RLock()  # one transaction at a time; reentrant for the inline path
        # Two connections: one that waits for the file (used from a worker thread), one that never waits (used
        # inline on the event loop when the file is free, which saves the thread hop on almost every call).
        self._conn = self._connect(timeout_s)
        self._fast = self._connect(0.0)
        self._active = self._conn
        with self._transaction() as conn:
            for statement in SCHEMA:
                conn.execute(statement)

    def _connect(self, timeout_s: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        cursor = conn.cursor()
        enter_wal(cursor, max(timeout_s, BUSY_TIMEOUT_S))
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        return conn

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        """Run one transaction: at once on the event loop when the file is free, else in a worker thread that
        waits for it, so a busy file never blocks the loop."""
        if self._lock.acquire(blocking=False):
            try:
                self._active = self._fast
                return work(*args)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            finally:
                self._active = self._conn
                self._lock.release()
        return await asyncio.to_thread(work, *args)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._active
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _load(conn: sqlite3.Connection, claims: Iterable[Claim]) -> Books:
        books = Books()
        buckets = sorted({c.key for c in claims if c.kind == "bucket"})
        counters = sorted({c.key for c in claims if c.kind == "counter"})
        if buckets:
            marks = ",".join("?" * len(buckets))
            for key, tokens, stamp in conn.execute(f"SELECT key, tokens, stamp FROM buckets WHERE key IN ({marks})",
                                                   buckets):
                books.buckets[key] = _Bucket(tokens, stamp)
        if counters:
            marks = ",".join("?" * len(counters))
            for key, used, reserved, expires in conn.execute(
                    f"SELECT key, used, reserved, expires FROM counters WHERE key IN ({marks})", counters):
                books.counters[key] = _Counter(used, reserved, math.inf if expires is None else expires)
        return books

    @staticmethod
    def _store(conn: sqlite3.Connection, books: Books) -> None:
        conn.executemany(
            "INSERT INTO buckets (key, tokens, stamp) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, stamp = excluded.stamp",
            [(key, b.tokens, b.stamp) for key, b in books.buckets.items()])
        conn.executemany(
            "INSERT INTO counters (key, used, reserved, expires) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET used = excluded.used, reserved = excluded.reserved, expires = excluded.expires",
            [(key, c.used, c.reserved, None if math.isinf(c.expires) else c.expires)
             for key, c in books.counters.items()])

    # -- the interface, each call one transaction (``_run``) -----------------------------------------------

    async def acquire(self, claims: Sequence[Claim], *, ttl_s: float, payload: str = "") -> Reservation | Refusal:
        return await self._run(self._acquire, claims, ttl_s, payload)

    def _acquire(self, claims: Sequence[Claim], ttl_s: float, payload: str) -> Reservation | Refusal:
        with self._transaction() as conn:
            books = self._load(conn, claims)
            outcome = books.acquire(claims, self._clock(), ttl_s, payload)
            if isinstance(outcome, Reservation):
                self._store(conn, books)
                conn.execute("INSERT INTO reservations (id, body, deadline, owner) VALUES (?, ?, ?, ?)",
                             (outcome.id, outcome.to_json(), outcome.deadline, OWNER))
            return outcome

    async def reconcile(self, reservation: Reservation, actual: Sequence[float]) -> bool:
        return await self._run(self._reconcile, reservation, actual)

    def _reconcile(self, reservation: Reservation, actual: Sequence[float]) -> bool:
        with self._transaction() as conn:
            if not conn.execute("DELETE FROM reservations WHERE id = ?", (reservation.id,)).rowcount:
                return False  # already settled or swept: never charge twice
            books = self._load(conn, reservation.claims)
            books.settle(reservation, actual, self._clock())
            self._store(conn, books)
            return True

    async def extend(self, reservation: Reservation, ttl_s: float) -> bool:
        return await self._run(self._extend, reservation, ttl_s)

    def _extend(self, reservation: Reservation, ttl_s: float) -> bool:
        deadline = self._clock() + ttl_s
        with self._transaction() as conn:
            found = conn.execute("SELECT body FROM reservations WHERE id = ?", (reservation.id,)).fetchone()
            if found is None:
                return False
            held = Reservation.from_json(found[0])
            held.deadline = deadline
            conn.execute("UPDATE reservations SET deadline = ?, body = ? WHERE id = ?",
                         (deadline, held.to_json(), reservation.id))
        reservation.deadline = deadline
        return True

    async def levels(self, claims: Sequence[Claim]) -> list[tuple[float, float]]:
        return await self._run(self._levels, claims)

    def _levels(self, claims: Sequence[Claim]) -> list[tuple[float, float]]:
        with self._transaction() as conn:
            return self._load(conn, claims).levels(claims, self._clock())

    async def seed(self, claim: Claim, used: float) -> None:
        await self._run(self._seed, claim, used)

    def _seed(self, claim: Claim, used: float) -> None:
        with self._transaction() as conn:
            books = self._load(conn, [claim])
            books.seed(claim, used, self._clock())
            self._store(conn, books)

    async def orphans(self, now: float | None = None) -> list[Reservation]:
        """Reservations past their deadline, and at once those of a process of this machine that has died."""
        return await self._run(self._orphans, self._clock() if now is None else now)

    def _orphans(self, now: float) -> list[Reservation]:
        with self._transaction() as conn:
            rows = conn.execute("SELECT body, deadline, owner FROM reservations").fetchall()
            late = [Reservation.from_json(body) for body, deadline, owner in rows if deadline <= now or dead(owner)]
            if late:
                books = self._load(conn, [claim for reservation in late for claim in reservation.claims])
                for reservation in late:
                    reservation.deadline = min(reservation.deadline, now)  # its process is gone: late now
                    books.open[reservation.id] = reservation
                books.take_late(now)
                self._store(conn, books)
                conn.executemany("DELETE FROM reservations WHERE id = ?", [(r.id,) for r in late])
            # Housekeeping by the clock (``now`` may be a sweep's look ahead): counters of windows that have ended,
            # buckets idle long enough to be full again.
            wall = self._clock()
            conn.execute("DELETE FROM counters WHERE expires IS NOT NULL AND expires < ?", (wall,))
            conn.execute("DELETE FROM buckets WHERE stamp < ?", (wall - IDLE_BUCKET_S,))
            return late

    async def aclose(self) -> None:
        with self._lock:
            self._conn.close()
            self._fast.close()
