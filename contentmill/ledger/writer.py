"""Write ledger rows off the hot path: ``put`` appends to a queue, a thread writes batches.

A batch is written every ``interval_s`` or as soon as ``batch_size`` records wait, whichever comes first.
A failed write keeps its records at the head of the queue and is retried with backoff; nothing is dropped.
``close()`` (also run at interpreter exit) writes what is left; what still cannot be written is logged
with its count and stays readable in ``pending()``.

``LedgerWriter`` never keeps call records in memory through an outage: a batch the ledger database refuses goes
to the data directory's spool (``spool.py``, fsynced) and the writer goes on; after each later write that
succeeds it drains the spool, whoever filled it. A healthy write touches the spool with one ``stat`` and no
fsync. When neither the database nor the spool takes a record, ``close()`` raises ``CostNotRecorded``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

from contentmill.errors import ContentmillError, CostNotRecorded, LedgerError
from contentmill.ledger.records import CallRecord
from contentmill.ledger.spool import LedgerSpool, plural
from contentmill.ledger.store import LedgerStore

log = logging.getLogger("contentmill.ledger")

BATCH_SIZE = 500
INTERVAL_S = 0.2
MAX_BACKOFF_S = 5.0
CLOSE_TIMEOUT_S = 10.0
R = TypeVar("R")


class BatchWriter(Generic[R]):
    """Batches rows into ``write`` (one transaction a batch) from one background thread. Safe to ``put`` from any
    thread. ``LedgerWriter`` writes call records; routing decisions use the same machinery."""

    def __init__(
        self,
        write: Callable[[list[R]], object],
        *,
        batch_size: int = BATCH_SIZE,
        interval_s: float = INTERVAL_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        name: str = "contentmill-ledger-writer",
        on_written: Callable[[list[R]], object] | None = None,
    ) -> None:
        """``on_written`` is called, in the thread that wrote them, with each batch once it is kept for good (in
        the store, or in a subclass's spool); it must be quick and must not raise."""
        if batch_size < 1 or interval_s <= 0:
            raise ValueError("batch_size must be at least 1 and interval_s positive")
        self._write = write
        self._on_written = on_written
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.written = 0
        self.failures = 0
        self._queue: deque[R] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._thread.start()
        atexit.register(self._close_at_exit)

    def put(self, record: R) -> None:
        """Queue one record; costs a deque append, and wakes the writer when a batch is full."""
        if self._closed:
            raise LedgerError("this ledger writer is closed; records put after close() would be lost")
        self._queue.append(record)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def pending(self) -> list[R]:
        """Records queued and not yet written, oldest first."""
        return list(self._queue)

    def _write_batch(self, most: int | None = None) -> int:
        """Write up to one batch (at most ``most`` records) from the head of the queue; on failure put it back in
        order and raise."""
        batch: list[R] = []
        most = self.batch_size if most is None else min(most, self.batch_size)
        while self._queue and len(batch) < most:
            batch.append(self._queue.popleft())
        if not batch:
            return 0
        try:
            self._write(batch)
        except BaseException:
            self._queue.extendleft(reversed(batch))
            raise
        self.written += len(batch)
        self._kept(batch)
        return len(batch)

    def _kept(self, batch: list[R]) -> None:
        """Tell ``on_written`` that ``batch`` is kept for good."""
        if self._on_written is None:
            return
        try:
            self._on_written(batch)
        except Exception:  # noqa: BLE001 - the batch is written; a failing listener must not write it again
            log.exception("a listener for written ledger rows failed")

    def flush(self) -> int:
        """Write everything queued now, in this thread; raises LedgerError if the store refuses."""
        return self._flush(round_only=False)

    def _flush(self, *, round_only: bool) -> int:
        """Write what is queued in batches. ``round_only`` (the writer thread's round): only the records queued
        when it begins; those that arrive while it writes wait for the next round, so a busy writer commits once
        a round, not once more for the few that came meanwhile (each commit is an fsync and CPU the serving
        threads share)."""
        total = 0
        with self._flush_lock:
            left = len(self._queue) if round_only else None
            while self._queue and (left is None or left > 0):
                wrote = self._write_batch(left)
                total += wrote
                if left is not None:
                    left -= wrote
        return total

    # What a subclass may do when a write succeeds or fails (LedgerWriter: drain or fill its spool).

    def _started(self) -> None:
        """Run first in the writer's thread."""

    def _wrote(self, count: int) -> None:
        """After a flush that wrote ``count`` records; must not raise."""

    def _set_aside(self, error: Exception, retry_s: float | None) -> bool:
        """Records the store refused (``error``): True when they were kept elsewhere and left the queue. Without
        that they wait in the queue, retried in ``retry_s`` (None: at close, given up)."""
        if retry_s is not None:
            detail = error if isinstance(error, LedgerError) else repr(error)
            log.warning("ledger write failed, %d records kept, retry in %.1f s: %s", len(self._queue), retry_s,
                        detail)
        return False

    def _given_up(self, error: LedgerError) -> int:
        """At close, records neither written nor set aside: said, and their count returned."""
        log.error("ledger writer closed with %d records not written: %s", len(self._queue), error)
        return len(self._queue)

    def _run(self) -> None:
        self._started()
        delay = 0.0  # after a failure, wait this long (ignoring full batches) before trying again
        while not self._stop.is_set():
            if delay:
                self._stop.wait(delay)
            else:
                self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return  # close() writes what is left
            try:
                wrote = self._flush(round_only=True)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure
                self.failures += 1
                delay = min(self.max_backoff_s, max(self.interval_s, delay * 2))
                self._set_aside(exc, delay)
            else:
                delay = 0.0
                self._wrote(wrote)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> int:
        """Stop the thread and write what is queued, retrying up to ``timeout_s``; returns records left."""
        if self._closed:
            return len(self._queue)
        self._closed = True
        atexit.unregister(self._close_at_exit)
        self._stop.set()
        self._wake.set()
        self._thread.join()
        deadline = time.monotonic() + timeout_s
        delay = self.interval_s
        while True:
            try:
                self._wrote(self.flush())
                return 0
            except LedgerError as exc:
                if self._set_aside(exc, None):
                    return 0
                if time.monotonic() + delay > deadline:
                    return self._given_up(exc)
                time.sleep(delay)
                delay = min(self.max_backoff_s, delay * 2)

    def _close_at_exit(self) -> None:
        """``close()`` for a writer nobody closed, at interpreter exit: what it cannot keep is logged."""
        try:
            self.close()
        except ContentmillError as exc:
            log.error("%s", exc)

    def __enter__(self) -> BatchWriter[R]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class LedgerWriter(BatchWriter[CallRecord]):
    """Batches call records into ``store``; what the store refuses goes to ``spool`` (default: the one in the
    current settings' data directory) and is drained into the store after the next write that succeeds."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        spool: LedgerSpool | None = None,
        batch_size: int = BATCH_SIZE,
        interval_s: float = INTERVAL_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        on_written: Callable[[list[CallRecord]], object] | None = None,
    ) -> None:
        self.store = store
        self.spool = spool or LedgerSpool.for_settings()
        self.spooled = 0  # records this writer put in the spool
        self.drained = 0  # records it took from the spool into the store, whoever spooled them
        self._outage = False  # the store refused a write and none has succeeded since
        self._spool_error: LedgerError | None = None
        super().__init__(store.write_calls, batch_size=batch_size, interval_s=interval_s, max_backoff_s=max_backoff_s,
                         on_written=on_written)

    def _started(self) -> None:
        self._drain()

    def _wrote(self, count: int) -> None:
        if count:
            self._outage = False
            self._drain()

    def _drain(self) -> None:
        if not self.spool.has_rows():
            return
        try:
            self.drained += self.spool.drain(self.store, wait=False)
        except LedgerError as exc:
            log.warning("the ledger spool was not drained this time: %s", exc)

    def _set_aside(self, error: Exception, retry_s: float | None) -> bool:
        """Move the whole queue to the spool: said once at ERROR when an outage begins, then as warnings."""
        with self._flush_lock:
            batch = list(self._queue)
            if not batch:
                return True
            try:
                self.spool.append(batch)
            except LedgerError as spool_error:
                self._spool_error = spool_error
                if retry_s is not None:
                    log.warning("ledger write failed and %s; %d records kept in memory, retry in %.1f s: %s",
                                spool_error, len(batch), retry_s, error)
                return False
            for _ in batch:
                self._queue.popleft()
        self.spooled += len(batch)
        self._kept(batch)
        level = logging.WARNING if self._outage else logging.ERROR
        self._outage = True
        log.log(level, "ledger write failed: %s kept in the spool %s and written to the ledger at its next "
                "chance: %s", plural(len(batch), "call record"), self.spool.path, error)
        return True

    def _given_up(self, error: LedgerError) -> int:
        lost = plural(len(self._queue), "call")
        raise CostNotRecorded(f"the cost of {lost} could not be recorded: {error}; nor kept: {self._spool_error}")

    def __enter__(self) -> LedgerWriter:
        return self
