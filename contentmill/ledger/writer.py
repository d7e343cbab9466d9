"""Write ledger rows off the hot path: ``put`` appends to a queue, a thread writes batches.

A batch is written every ``interval_s`` or as soon as ``batch_size`` records wait, whichever comes first.
A failed write keeps its records at the head of the queue and is retried with backoff; nothing is dropped.
``close()`` (also run at interpreter exit) writes what is left; what still cannot be written is logged
with its count and stays readable in ``pending()``.
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

from contentmill.errors import LedgerError
from contentmill.ledger.records import CallRecord
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
    ) -> None:
        if batch_size < 1 or interval_s <= 0:
            raise ValueError("batch_size must be at least 1 and interval_s positive")
        self._write = write
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
        atexit.register(self.close)

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

    def _write_batch(self) -> int:
        """Write up to one batch from the head of the queue; on failure put it back in order and raise."""
        batch: list[R] = []
        while self._queue and len(batch) < self.batch_size:
            batch.append(self._queue.popleft())
        if not batch:
            return 0
        try:
            self._write(batch)
        except BaseException:
            self._queue.extendleft(reversed(batch))
            raise
        self.written += len(batch)
        return len(batch)

    def flush(self) -> int:
        """Write everything queued now, in this thread; raises LedgerError if the store refuses."""
        total = 0
        with self._flush_lock:
            while self._queue:
                total += self._write_batch()
        return total

    def _run(self) -> None:
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
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure
                self.failures += 1
                delay = min(self.max_backoff_s, max(self.interval_s, delay * 2))
                kept = len(self._queue)
                detail = exc if isinstance(exc, LedgerError) else repr(exc)
                log.warning("ledger write failed, %d records kept, retry in %.1f s: %s", kept, delay, detail)
            else:
                delay = 0.0

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> int:
        """Stop the thread and write what is queued, retrying up to ``timeout_s``; returns records left."""
        if self._closed:
            return len(self._queue)
        self._closed = True
        atexit.unregister(self.close)
        self._stop.set()
        self._wake.set()
        self._thread.join()
        deadline = time.monotonic() + timeout_s
        delay = self.interval_s
        while True:
            try:
                self.flush()
                return 0
            except LedgerError as exc:
                if time.monotonic() + delay > deadline:
                    log.error("ledger writer closed with %d records not written: %s", len(self._queue), exc)
                    return len(self._queue)
                time.sleep(delay)
                delay = min(self.max_backoff_s, delay * 2)

    def __enter__(self) -> BatchWriter[R]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class LedgerWriter(BatchWriter[CallRecord]):
    """Batches call records into ``store``."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        batch_size: int = BATCH_SIZE,
        interval_s: float = INTERVAL_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.store = store
        super().__init__(store.write_calls, batch_size=batch_size, interval_s=interval_s, max_backoff_s=max_backoff_s)

    def __enter__(self) -> LedgerWriter:
        return self
