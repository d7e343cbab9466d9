"""The vector index: exact while small, HNSW past its limit, always filtered by partition and re-scored."""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import numpy as np
import pytest

from contentmill.knowledge_graph import GraphError, VectorIndex

DIM = 64


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 40, 1), DIM)).astype(np.float32)
    matrix = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, DIM)).astype(
        np.float32
    )
    normalized: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return normalized


def kind_of(partition: Hashable) -> str:
    assert isinstance(partition, tuple)
    return str(partition[0])


def brute(matrix: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    return [ids[i] for i in np.argsort(-(matrix @ query), kind="stable")[:k]]


@pytest.fixture
def filled() -> Iterator[tuple[VectorIndex, np.ndarray, list[str]]]:
    """3,000 vectors in three partitions, past an exact limit of 500, the HNSW graph built in this thread."""
    matrix = vectors(3000, 1)
    ids = [f"v{i}" for i in range(3000)]
    index = VectorIndex(DIM, exact_limit=500, background=False)
    for part, language in enumerate(("en", "zh", "de")):
        rows = slice(part * 1000, (part + 1) * 1000)
        index.add(ids[rows], matrix[rows], ("text", language))
    yield index, matrix, ids
    index.close()


def test_small_indexes_search_exactly() -> None:
    matrix = vectors(300, 2)
    ids = [f"v{i}" for i in range(300)]
    index = VectorIndex(DIM)
    index.add(ids, matrix, "all")
    query = vectors(1, 3)[0]
    found = index.search(query, 10)
    assert not index.approximate
    assert [n.id for n in found] == brute(matrix, ids, query, 10)
    assert [n.score for n in found] == pytest.approx(
        sorted((matrix @ query).tolist(), reverse=True)[:10], abs=1e-6
    )


def test_large_indexes_search_approximately_with_exact_scores(
    filled: tuple[VectorIndex, np.ndarray, list[str]],
) -> None:
    """HNSW may miss any one neighbour, so this asserts recall@10 against exact search over 300 seeded queries,
    not a query's top hit; every score it returns is the exact inner product, best first."""
    index, matrix, ids = filled
    assert index.approximate and index.unmerged() == 0 and len(index) == 3000
    rows = np.random.default_rng(11).choice(3000, size=300, replace=False)
    found_total = 0
    for row in rows:
        found = index.search(matrix[row], 10)
        assert len(found) == 10
        exact = [float(matrix[int(n.id[1:])] @ matrix[row]) for n in found]
        scores = [n.score for n in found]
        assert scores == pytest.approx(exact, abs=1e-6) and scores == sorted(scores, reverse=True)
        found_total += len({n.id for n in found} & set(brute(matrix, ids, matrix[row], 10)))
    assert found_total / (10 * len(rows)) >= 0.9


def test_filters_return_only_their_partitions(filled: tuple[VectorIndex, np.ndarray, list[str]]) -> None:
    index, matrix, ids = filled
    found = index.search(matrix[10], 20, where=lambda key: key == ("text", "zh"))
    assert len(found) == 20 and all(1000 <= int(n.id[1:]) < 2000 for n in found)
    assert [n.id for n in found] == brute(matrix[1000:2000], ids[1000:2000], matrix[10], 20)
    tiny = vectors(5, 9)
    index.add([f"t{i}" for i in range(5)], tiny, ("audio", "en"))
    assert {n.id for n in index.search(matrix[0], 10, where=lambda key: kind_of(key) == "audio")} == {
        f"t{i}" for i in range(5)
    }
    assert index.search(matrix[0], 10, where=lambda key: kind_of(key) == "video") == []


def test_rows_not_yet_in_the_hnsw_graph_are_found(filled: tuple[VectorIndex, np.ndarray, list[str]]) -> None:
    index, _matrix, _ids = filled
    index.background = True  # new rows wait for a builder; until then they are searched exactly
    extra = vectors(50, 4)
    index.add([f"x{i}" for i in range(50)], extra, ("text", "en"))
    assert index.search(extra[7], 1)[0].id == "x7"
    assert index.wait_merged(timeout=60) and index.unmerged() == 0
    assert index.search(extra[7], 1)[0].id == "x7"


def test_removed_and_replaced_vectors(filled: tuple[VectorIndex, np.ndarray, list[str]]) -> None:
    index, matrix, _ids = filled
    assert index.remove("v5") and not index.remove("v5") and "v5" not in index
    assert "v5" not in {n.id for n in index.search(matrix[5], 50)}
    index.add(["v6"], matrix[2500:2501], ("text", "de"))
    found = index.search(matrix[2500], 2)
    assert {n.id for n in found} == {"v6", "v2500"}
    assert "v6" not in {n.id for n in index.search(matrix[6], 5, where=lambda key: key == ("text", "en"))}
    assert len(index) == 2999


def test_background_build_keeps_answers_right() -> None:
    matrix = vectors(2000, 5)
    ids = [f"v{i}" for i in range(2000)]
    index = VectorIndex(DIM, exact_limit=200, chunk=64)
    try:
        index.add(ids, matrix, "all")
        for row in range(0, 2000, 100):  # while the builder runs
            assert index.search(matrix[row], 1)[0].id == ids[row]
        assert index.wait_merged(timeout=120) and index.builder_error is None
        assert index.memory_bytes() > matrix.nbytes
    finally:
        index.close()


def test_wrong_dimensions_are_refused() -> None:
    with pytest.raises(GraphError, match="have 3 dimensions; this index holds 64"):
        VectorIndex(DIM).add(["a"], np.ones((1, 3), dtype=np.float32), "p")
