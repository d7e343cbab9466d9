"""Knowledge-graph figures, each next to a baseline measured in the same run.

Figures (one JSON line each):
- embedding: throughput of SentenceEmbedder.encode vs sentence-transformers' own encode (its defaults, and
  at our batch size) on the same texts (300 product texts from ../shared/data when present), in rotating
  rounds; ratio = ours / theirs (target >= 1.0, no loss). Also the latency of embedding one query.
- crossover: the vector index's exact path (numpy over partition matrices) vs its HNSW path (usearch) vs a
  brute-force numpy product over one contiguous matrix, at growing sizes; where HNSW wins sets EXACT_LIMIT.
- search at 10k and 100k outputs: index p50/p99 as configured (exact at 10k, HNSW at 100k), unfiltered and
  filtered by kind, vs brute-force numpy on the same queries; recall@10 against brute force. Query embedding
  time is the embedding figure's; these are index times only. Target: p50 under 5 ms at 100k.
- memory per 100k outputs: the index (float32 rows + HNSW graph with float16 vectors) and the networkx graph
  (output nodes with their attributes and a 300-character preview, two edges each), by tracemalloc.
- catch-up: a reader caught up with 10,000 outputs applies 1,000 new ones written by another connection
  (SQLite, and PostgreSQL when reachable) vs loading the whole graph again. Target: under 1 s.

Vectors in the index and catch-up figures are synthetic (clustered, normalized, 384 dimensions).

    .venv/bin/python bench/graph.py [QUERIES]
"""

from __future__ import annotations

import csv
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import sqlalchemy as sa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from contentmill.knowledge_graph import GraphStore, KnowledgeGraph, SentenceEmbedder, VectorIndex  # noqa: E402
from contentmill.knowledge_graph.embeddings import MODEL_NAME  # noqa: E402
from contentmill.knowledge_graph.graph import node_attrs  # noqa: E402
from contentmill.knowledge_graph.index import EXACT_LIMIT  # noqa: E402
from contentmill.knowledge_graph.records import Edge, Node  # noqa: E402

DIM = 384
CATALOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-products-1k.csv"
PG_ADMIN = os.environ.get(
    "CONTENTMILL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PARTITIONS = [(kind, lang) for kind in ("text", "audio", "video") for lang in ("en", "zh")]
SHARES = [0.4, 0.1, 0.2, 0.05, 0.2, 0.05]  # most outputs are English text, then audio and video


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "graph", **fields}), flush=True)


def ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(seconds) * 1e3, q)), 4)


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def per_query(call: Callable[[np.ndarray], object], queries: np.ndarray) -> list[float]:
    """The time of one call per query."""
    times = []
    for query in queries:
        start = time.perf_counter()
        call(query)
        times.append(time.perf_counter() - start)
    return times


def synthetic(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 50, 1), DIM)).astype(np.float32)
    rows = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    normalized: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return normalized


def queries_near(matrix: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = matrix[rng.integers(0, len(matrix), count)] + 0.1 * rng.standard_normal((count, DIM)).astype(
        np.float32
    )
    normalized: np.ndarray = picked / np.linalg.norm(picked, axis=1, keepdims=True)
    return normalized


# embedding --------------------------------------------------------------------------------------------


def catalog_texts() -> list[str]:
    if CATALOG.is_file():
        with CATALOG.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return [f"{r['Product Name']}. {r['About Product']}"[:1000] for r in rows]
    rng = np.random.default_rng(0)
    words = "steel bottle red lid mug ceramic coffee warm cold travel light durable gift kitchen".split()
    return [" ".join(rng.choice(words, 40)) for _ in range(1000)]


def bench_embedding(rounds: int = 6, count: int = 300) -> None:
    """SentenceEmbedder.encode vs SentenceTransformer.encode with its defaults, and at our batch size."""
    texts = catalog_texts()[:count]
    ours = SentenceEmbedder()
    model = ours.model
    ours.encode(texts[:64])
    calls: dict[str, Callable[[], object]] = {
        "ours": lambda: ours.encode(texts),
        "st_default": lambda: model.encode(texts, normalize_embeddings=True, show_progress_bar=False),
        "st_same_batch": lambda: model.encode(texts, batch_size=ours.batch_size, normalize_embeddings=True,
                                              show_progress_bar=False),
    }
    rates: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_ in range(rounds):  # the order rotates so that none always runs first
        for name in names[round_ % 3:] + names[: round_ % 3]:
            rates[name].append(len(texts) / timed(calls[name], 1)[0])

    def ratio(baseline: str) -> float:
        return round(statistics.median(o / t for o, t in zip(rates["ours"], rates[baseline], strict=True)), 3)

    single = timed(lambda: ours.encode(["a red steel water bottle with lid"]), 50)
    source = "amazon-products-1k" if CATALOG.is_file() else "synthetic"
    emit(figure="embedding", texts=len(texts), source=source, batch_size=ours.batch_size,
         ours_texts_per_s=round(statistics.median(rates["ours"]), 1),
         sentence_transformers_default_texts_per_s=round(statistics.median(rates["st_default"]), 1),
         ratio=ratio("st_default"), ratio_same_batch_size=ratio("st_same_batch"), target="ratio >= 1.0",
         query_embedding_p50_ms=ms(single, 50), query_embedding_p99_ms=ms(single, 99))


# index ------------------------------------------------------------------------------------------------


def brute(matrix: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = matrix @ query
    best = np.argpartition(-scores, k)[:k]
    return best[np.argsort(-scores[best])]


def search_times(index: VectorIndex, queries: np.ndarray, where: Callable[[Any], bool] | None) -> list[float]:
    return per_query(lambda q: index.search(q, 10, where), queries)


def bench_index(matrix: np.ndarray, query_count: int) -> VectorIndex:
    """Grow one index to 100k in steps; at each size time its exact path, its HNSW path and brute force."""
    ids = [f"o{i}" for i in range(len(matrix))]
    rng = np.random.default_rng(3)
    part_of = rng.choice(len(PARTITIONS), size=len(matrix), p=SHARES)
    index = VectorIndex(DIM, exact_limit=0, background=False)  # HNSW kept up to date at every step
    done = 0
    for size in (5_000, 10_000, 20_000, 50_000, 100_000):
        start = time.perf_counter()
        for code, partition in enumerate(PARTITIONS):
            rows = np.flatnonzero(part_of[done:size] == code) + done
            index.add([ids[r] for r in rows], matrix[rows], partition)
        build_s = time.perf_counter() - start
        done = size
        queries = queries_near(matrix[:size], query_count, seed=size)
        prefix = np.ascontiguousarray(matrix[:size])
        numpy_t = per_query(partial(brute, prefix, k=10), queries)
        hnsw_t = search_times(index, queries, None)
        index.exact_limit = 10**9
        exact_t = search_times(index, queries, None)
        index.exact_limit = 0
        recall = np.mean(
            [
                len({n.id for n in index.search(q, 10)} & {ids[i] for i in brute(prefix, q, 10)}) / 10
                for q in queries
            ]
        )
        emit(
            figure="crossover",
            outputs=size,
            hnsw_p50_ms=ms(hnsw_t, 50),
            exact_p50_ms=ms(exact_t, 50),
            numpy_brute_force_p50_ms=ms(numpy_t, 50),
            hnsw_recall_at_10=round(float(recall), 4),
            hnsw_added_s=round(build_s, 2),
            exact_limit=EXACT_LIMIT,
        )
        if size in (10_000, 100_000):
            index.exact_limit = EXACT_LIMIT  # as the graph configures it
            search_figure(index, prefix, ids, part_of[:size], queries)
            index.exact_limit = 0
    return index


def search_figure(
    index: VectorIndex, prefix: np.ndarray, ids: list[str], part_of: np.ndarray, queries: np.ndarray
) -> None:
    mode = "hnsw" if len(prefix) > index.exact_limit else "exact"
    unfiltered = search_times(index, queries, None)
    text_only = search_times(index, queries, lambda key: key[0] == "text")
    numpy_t = per_query(partial(brute, prefix, k=10), queries)
    text_rows = np.flatnonzero(np.isin(part_of, [0, 1]))
    text_matrix = np.ascontiguousarray(prefix[text_rows])
    numpy_text = per_query(partial(brute, text_matrix, k=10), queries)
    recall = np.mean(
        [
            len({n.id for n in index.search(q, 10)} & {ids[i] for i in brute(prefix, q, 10)}) / 10
            for q in queries
        ]
    )
    emit(
        figure="search",
        outputs=len(prefix),
        mode=mode,
        queries=len(queries),
        index_p50_ms=ms(unfiltered, 50),
        index_p99_ms=ms(unfiltered, 99),
        numpy_p50_ms=ms(numpy_t, 50),
        numpy_p99_ms=ms(numpy_t, 99),
        ratio_p50=round(ms(unfiltered, 50) / ms(numpy_t, 50), 3),
        filtered_text_p50_ms=ms(text_only, 50),
        filtered_text_p99_ms=ms(text_only, 99),
        numpy_text_rows_p50_ms=ms(numpy_text, 50),
        recall_at_10=round(float(recall), 4),
        target="index p50 < 5 ms at 100k" if len(prefix) == 100_000 else None,
    )


def bench_memory(index: VectorIndex, outputs: int) -> None:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    graph = nx.MultiDiGraph()
    preview = "A hand-thrown stoneware mug that keeps coffee warm, with a glaze that " * 5
    for i in range(outputs):
        node = Node(
            f"{i:032x}",
            "output",
            "text",
            language="en",
            entity=f"SKU-{i % 5000}",
            model="openai:gpt-4o-mini",
            template="product_description@2",
            cost_usd=0.0004,
            location=f"s3://bucket/outputs/{i:032x}.txt",
            text=preview[:300],
        )
        graph.add_node(node.id, **node_attrs(node))
        graph.add_edge(f"r{i:031x}", node.id, key="produced", kind="produced")
        graph.add_edge(node.id, "model:openai:gpt-4o-mini", key="made_by", kind="made_by")
    graph_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    index_bytes = index.memory_bytes()
    emit(
        figure="memory",
        outputs=outputs,
        index_mb=round(index_bytes / 2**20, 1),
        graph_mb=round(graph_bytes / 2**20, 1),
        total_mb=round((index_bytes + graph_bytes) / 2**20, 1),
        bytes_per_output=round((index_bytes + graph_bytes) / outputs),
    )


# catch-up ---------------------------------------------------------------------------------------------


def outputs_batch(start: int, count: int, vectors: np.ndarray) -> tuple[list[Node], list[Edge]]:
    nodes, edges = [], []
    for i in range(start, start + count):
        kind, language = PARTITIONS[i % len(PARTITIONS)]
        node_id = f"{i:032x}"
        nodes.append(
            Node(
                node_id,
                "output",
                kind,
                language=language,
                entity=f"SKU-{i % 500}",
                model="openai:gpt-4o-mini",
                cost_usd=0.0004,
                location=f"s3://bucket/{node_id}",
                text=f"Output {i}: a description of product {i % 500}. " * 4,
                vector=vectors[i],
                vector_model=MODEL_NAME,
            )
        )
        edges.append(Edge(node_id, "model:openai:gpt-4o-mini", "made_by"))
    return nodes, edges


def fill(store: GraphStore, start: int, count: int, vectors: np.ndarray, per_write: int) -> None:
    for first in range(start, start + count, per_write):
        nodes, edges = outputs_batch(first, min(per_write, start + count - first), vectors)
        store.write(
            nodes, edges, ensure=[Node("model:openai:gpt-4o-mini", "model", model="openai:gpt-4o-mini")]
        )


def bench_catch_up(url: str, backend: str, base: int = 10_000, new: int = 1_000) -> None:
    vectors = synthetic(base + new, seed=7)
    with GraphStore(url) as writer:
        fill(writer, 0, base, vectors, per_write=1000)
        reader = KnowledgeGraph(GraphStore(url), SentenceEmbedder())
        reader.catch_up()
        fill(writer, base, new, vectors, per_write=100)  # ten transactions, as workers write them
        start = time.perf_counter()
        applied = reader.catch_up()
        catch_up_s = time.perf_counter() - start
        reader.close()
        fresh = KnowledgeGraph(GraphStore(url), SentenceEmbedder())
        start = time.perf_counter()
        fresh.catch_up()
        reload_s = time.perf_counter() - start
        fresh.close()
    emit(
        figure="catch_up",
        store=backend,
        base_outputs=base,
        new_outputs=new,
        rows_applied=applied,
        catch_up_s=round(catch_up_s, 4),
        full_reload_s=round(reload_s, 4),
        ratio=round(catch_up_s / reload_s, 4),
        target="catch_up_s < 1",
    )


def postgres_url() -> tuple[str, Callable[[], None]] | None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"cm_graph_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        admin.dispose()
        return None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    query_count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    bench_embedding()
    matrix = synthetic(100_000, seed=1)
    index = bench_index(matrix, query_count)
    bench_memory(index, 100_000)
    index.close()
    with tempfile.TemporaryDirectory() as folder:
        bench_catch_up(f"sqlite:///{folder}/graph.sqlite3", "sqlite")
    pg = postgres_url()
    if pg is None:
        emit(figure="catch_up", store="postgresql", skipped=f"no server at {PG_ADMIN}")
        return
    url, drop = pg
    try:
        bench_catch_up(url, "postgresql")
    finally:
        drop()


if __name__ == "__main__":
    main()
