"""Nearest neighbours over embeddings: exact (a numpy matrix product) while small, HNSW when large.

Vectors live in partitions (the graph uses one per output kind and language), each a contiguous float32
matrix, so a filtered search reads only the rows it may return, exactly. Once more than ``exact_limit``
vectors are searched at once, an approximate index answers instead: one HNSW graph over every partition,
its hits filtered by partition and re-scored against the float32 rows (the index stores float16). Rows
added since the HNSW graph last caught up are searched exactly, and a background thread adds them to it
in small chunks, so a process that catches up on a thousand new outputs never waits for the graph to build.

Why usearch for HNSW: it installs from wheels (hnswlib publishes only a source distribution, so every
machine would need a C++ compiler), it removes vectors by key, which superseded outputs need (faiss' HNSW
index cannot remove), and it stores vectors as float16, half of faiss' flat float32 copy, with the same
recall@10 as float32 when we compared them at 10k and 100k vectors. Its calls hold the GIL, so the builder
adds at most ``chunk`` vectors per call to bound how long a search can wait. With M=16, ef_add=64 and
ef_search=256 it answers a query over 100k vectors in about 2 ms at recall@10 0.99 (``bench/graph.py``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from usearch.index import Index

from contentmill.errors import GraphError
from contentmill.knowledge_graph.records import Vector

# Above this many vectors in one search, HNSW beats the matrix product; bench/graph.py measures the crossover.
EXACT_LIMIT = 20_000
Labels = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Neighbour:
    id: str
    score: float  # cosine similarity (vectors are normalized)


class _Partition:
    """One contiguous, growable float32 matrix; rows [0, merged) are also in the HNSW graph."""

    def __init__(self, key: Hashable, code: int, dimensions: int) -> None:
        self.key, self.code = key, code
        self.matrix = np.empty((64, dimensions), dtype=np.float32)
        self.labels: Labels = np.empty(64, dtype=np.int64)
        self.alive = np.zeros(64, dtype=bool)
        self.size = 0
        self.live = 0
        self.merged = 0

    def append(self, labels: Labels, vectors: Vector) -> npt.NDArray[np.int64]:
        need = self.size + len(labels)
        if need > len(self.matrix):
            capacity = max(need, int(len(self.matrix) * 1.5) + 64)
            self.matrix = _grow(self.matrix, capacity)
            self.labels = _grow(self.labels, capacity)
            self.alive = _grow(self.alive, capacity)
        rows = np.arange(self.size, need, dtype=np.int64)
        self.matrix[rows] = vectors
        self.labels[rows] = labels
        self.alive[rows] = True
        self.size, self.live = need, self.live + len(labels)
        return rows

    def top(self, query: Vector, k: int, start: int = 0) -> tuple[npt.NDArray[np.float32], Labels]:
        """The best ``k`` live rows from ``start`` on, by exact dot product."""
        end = self.size
        if end <= start:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        scores = self.matrix[start:end] @ query
        scores[~self.alive[start:end]] = -np.inf
        if k < len(scores):
            best = np.argpartition(-scores, k)[:k]
            scores, labels = scores[best], self.labels[start:end][best]
        else:
            labels = self.labels[start:end]
        keep = np.isfinite(scores)
        return scores[keep], labels[keep]

    def nbytes(self) -> int:
        return self.matrix.nbytes + self.labels.nbytes + self.alive.nbytes


def _grow(array: Any, capacity: int) -> Any:
    grown = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class VectorIndex:
    """Partitioned nearest-neighbour search by cosine similarity; ids are strings, vectors normalized."""

    def __init__(
        self,
        dimensions: int,
        *,
        exact_limit: int = EXACT_LIMIT,
        connectivity: int = 16,
        expansion_add: int = 64,
        expansion_search: int = 256,
        chunk: int = 256,
        background: bool = True,
    ) -> None:
        self.dimensions = dimensions
        self.exact_limit = exact_limit
        self.chunk = chunk
        self.background = background
        self._hnsw = (connectivity, expansion_add, expansion_search)
        self._parts: list[_Partition] = []
        self._part_of_key: dict[Hashable, _Partition] = {}
        self._label_of: dict[str, int] = {}  # id -> label of its live vector
        self._label_part = np.empty(0, dtype=np.int32)
        self._label_row = np.empty(0, dtype=np.int64)
        self._ids: list[str] = []  # by label
        self._ann: Index | None = None
        self._lock = threading.RLock()  # HNSW calls and the bookkeeping that must agree with them
        self._pending = threading.Event()
        self._stop = threading.Event()
        self._builder: threading.Thread | None = None
        self.builder_error: BaseException | None = None

    def __len__(self) -> int:
        return sum(p.live for p in self._parts)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._label_of

    @property
    def approximate(self) -> bool:
        """Whether an HNSW graph exists (searches of more than ``exact_limit`` rows use it)."""
        return self._ann is not None

    def unmerged(self) -> int:
        """Rows not yet in the HNSW graph (searched exactly until the builder adds them)."""
        return sum(p.size - p.merged for p in self._parts) if self._ann is not None else len(self)

    # adding and removing -----------------------------------------------------------------------------

    def add(self, ids: Sequence[str], vectors: Vector, partition: Hashable) -> None:
        """Add (or replace) vectors under ``partition``; rows must be L2-normalized float32."""
        matrix = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if matrix.shape[1] != self.dimensions:
            raise GraphError(f"vectors have {matrix.shape[1]} dimensions; this index holds {self.dimensions}")
        with self._lock:
            for node_id in ids:
                self.remove(node_id)
            part = self._partition(partition)
            first = len(self._ids)
            labels = np.arange(first, first + len(ids), dtype=np.int64)
            rows = part.append(labels, matrix)
            self._ids.extend(ids)
            self._label_part = np.concatenate([self._label_part, np.full(len(ids), part.code, np.int32)])
            self._label_row = np.concatenate([self._label_row, rows])
            self._label_of.update(zip(ids, labels.tolist(), strict=True))
        self._maybe_build()

    def remove(self, node_id: str) -> bool:
        """Forget a vector (a superseded output); False when it was not indexed."""
        with self._lock:
            label = self._label_of.pop(node_id, None)
            if label is None:
                return False
            part, row = self._parts[self._label_part[label]], int(self._label_row[label])
            part.alive[row] = False
            part.live -= 1
            if self._ann is not None and row < part.merged:
                self._ann.remove(label)
            return True

    def _partition(self, key: Hashable) -> _Partition:
        part = self._part_of_key.get(key)
        if part is None:
            part = _Partition(key, len(self._parts), self.dimensions)
            self._parts.append(part)
            self._part_of_key[key] = part
        return part

    # searching -------------------------------------------------------------------------------------

    def search(self, query: Vector, k: int = 10,
               where: Callable[[Hashable], bool] | None = None) -> list[Neighbour]:
        """The ``k`` nearest live vectors whose partition passes ``where``, best first."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        parts = [p for p in self._parts if p.live and (where is None or where(p.key))]
        live = sum(p.live for p in parts)
        if k <= 0 or not live:
            return []
        if self._ann is None or live <= self.exact_limit:
            return self._rank(*self._exact(q, k, parts, suffix=False), k)
        scores, labels = self._approximate(q, k, parts, live)
        found = self._rank(scores, labels, k)
        if len(found) < min(k, live):  # a narrow filter left too few HNSW hits: read its rows exactly
            return self._rank(*self._exact(q, k, parts, suffix=False), k)
        return found

    def _exact(self, q: Vector, k: int, parts: list[_Partition], *, suffix: bool) -> tuple[Vector, Labels]:
        pairs = [p.top(q, k, p.merged if suffix else 0) for p in parts]
        if not pairs:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        return np.concatenate([s for s, _ in pairs]), np.concatenate([labels for _, labels in pairs])

    def _approximate(self, q: Vector, k: int, parts: list[_Partition], live: int) -> tuple[Vector, Labels]:
        """HNSW hits in the chosen partitions, re-scored exactly, plus an exact pass over unmerged rows."""
        assert self._ann is not None
        share = live / max(len(self), 1)
        wanted = k if share >= 1 else min(len(self._ann), math.ceil(2 * k / share) + k)
        codes = np.fromiter((p.code for p in parts), dtype=np.int32)
        with self._lock:
            matches = self._ann.search(q, wanted)
            hits = np.asarray(matches.keys, dtype=np.int64).reshape(-1)
            hits = hits[np.isin(self._label_part[hits], codes)]
            tail_scores, tail_labels = self._exact(q, k, parts, suffix=True)
        rows = self._label_row[hits]
        vectors = np.empty((0, self.dimensions), dtype=np.float32)
        if len(hits):
            codes = self._label_part[hits]
            vectors = np.stack([self._parts[c].matrix[r] for c, r in zip(codes, rows, strict=True)])
        return np.concatenate([vectors @ q, tail_scores]), np.concatenate([hits, tail_labels])

    def _rank(self, scores: Vector, labels: Labels, k: int) -> list[Neighbour]:
        order = np.argsort(-scores, kind="stable")
        found: list[Neighbour] = []
        seen: set[int] = set()
        for i in order.tolist():
            label = int(labels[i])
            node_id = self._ids[label]
            if label in seen or self._label_of.get(node_id) != label:
                continue  # found twice (merged while searching), or replaced since
            seen.add(label)
            found.append(Neighbour(node_id, float(scores[i])))
            if len(found) == k:
                break
        return found

    # the HNSW graph ----------------------------------------------------------------------------------

    def _maybe_build(self) -> None:
        if len(self) <= self.exact_limit and self._ann is None:
            return
        with self._lock:
            if self._ann is None:
                connectivity, expansion_add, expansion_search = self._hnsw
                self._ann = Index(ndim=self.dimensions, metric="ip", dtype="f16", connectivity=connectivity,
                                  expansion_add=expansion_add, expansion_search=expansion_search)
        if not self.background:
            self.merge()
            return
        self._pending.set()
        if self._builder is None:
            self._builder = threading.Thread(target=self._build_loop, name="contentmill-hnsw", daemon=True)
            self._builder.start()

    def _build_loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._pending.wait()
                self._pending.clear()
                while not self._stop.is_set() and self._merge_chunk():
                    pass
        except BaseException as exc:  # noqa: BLE001 - kept for the owner; searches stay exact meanwhile
            self.builder_error = exc

    def _merge_chunk(self) -> bool:
        """Add up to ``chunk`` unmerged rows of one partition to the HNSW graph; False when none are left."""
        with self._lock:
            assert self._ann is not None
            part = next((p for p in self._parts if p.merged < p.size), None)
            if part is None:
                return False
            start, end = part.merged, min(part.size, part.merged + self.chunk)
            live = part.alive[start:end]
            labels, vectors = part.labels[start:end][live], part.matrix[start:end][live]
            if len(labels):
                self._ann.add(labels, vectors, threads=0)  # all cores: the GIL is held for less time
            part.merged = end
            return True

    def merge(self) -> None:
        """Bring the HNSW graph up to date in this thread (what the background builder does bit by bit)."""
        if self._ann is None:
            return
        while self._merge_chunk():
            pass

    def wait_merged(self, timeout: float = 600.0) -> bool:
        """Wait until the background builder has added every row; for benchmarks and tests."""
        deadline = time.monotonic() + timeout
        while self.unmerged() and time.monotonic() < deadline and self.builder_error is None:
            time.sleep(0.05)
        return not self.unmerged()

    def close(self) -> None:
        """Stop the background builder (it finishes the chunk it is adding)."""
        self._stop.set()
        self._pending.set()
        if self._builder is not None:
            self._builder.join()
            self._builder = None

    def memory_bytes(self) -> int:
        """Matrices, labels and the HNSW graph (its float16 copy of each vector and its links)."""
        ann = int(self._ann.memory_usage) if self._ann is not None else 0
        bookkeeping = self._label_part.nbytes + self._label_row.nbytes
        return sum(p.nbytes() for p in self._parts) + ann + bookkeeping
