"""The reuse flow: past outputs closest in meaning to a query, to use again instead of paying for new ones.

Each hit carries its score, kind, entity, the chain it belongs to (script -> narration -> video), what was
paid for it and where its bytes are. The run records a table artifact of the hits and a markdown summary;
``contentmill search`` answers the same question from the command line without Prefect.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from contentmill.knowledge_graph import KnowledgeGraph
from contentmill.settings import load_settings

ARTIFACT_KEY = "reuse"
PREVIEW_CHARS = 160

Query = Annotated[str, Field(min_length=1, max_length=2000, description="What to look for, in any words.")]
TopK = Annotated[int, Field(ge=1, le=1000, description="How many past outputs to return.")]
Kind = Literal["text", "audio", "video", "subtitle", "image"]


def find(query: str, k: int, kind: str | None, language: str | None) -> list[dict[str, Any]]:
    """The top-k current outputs for the query from the configured graph, as JSON-ready dicts."""
    with KnowledgeGraph.open(load_settings()) as graph:
        return [hit.as_dict() for hit in graph.search(query, k=k, kind=kind, language=language)]


@task(name="search-graph", cache_policy=NO_CACHE, persist_result=False)
async def search_task(query: str, k: int, kind: str | None, language: str | None) -> list[dict[str, Any]]:
    return await asyncio.to_thread(find, query, k, kind, language)


def hit_rows(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row a hit: the text cut to a preview, the chain as kinds joined by arrows."""
    rows = []
    for hit in hits:
        text = hit["text"] if len(hit["text"]) <= PREVIEW_CHARS else hit["text"][: PREVIEW_CHARS - 3] + "..."
        rows.append({
            "score": round(hit["score"], 4), "kind": hit["kind"], "id": hit["id"], "entity": hit["entity"] or "",
            "text": text, "cost_usd": round(hit["cost_usd"], 6), "location": hit["location"] or "",
            "chain": " -> ".join(link["kind"] for link in hit["chain"]),
        })
    return rows


def summary_markdown(query: str, hits: list[dict[str, Any]]) -> str:
    if not hits:
        return f"# Reuse: {query}\n\nNo past output matches yet; nothing to reuse."
    paid = sum(hit["cost_usd"] for hit in hits)
    best = hits[0]
    return (
        f"# Reuse: {query}\n\n{len(hits)} past outputs found; making them cost {paid:.6f} USD.\n\n"
        f"Best match ({best['score']:.3f}): a {best['kind']} output `{best['id']}`"
        + (f" at `{best['location']}`" if best["location"] else "") + "."
    )


@flow(name="reuse", persist_result=False, log_prints=False)
async def reuse(query: Query, k: TopK = 10, kind: Kind | None = None, language: str | None = None
                ) -> list[dict[str, Any]]:
    """Past outputs closest in meaning to a query, with where they are and what they cost.

    Args:
        query: What to look for, in any words.
        k: How many past outputs to return.
        kind: Only outputs of this kind (text, audio, video, subtitle, image); empty: any.
        language: Only outputs in this language (e.g. en, zh); empty: any.
    """
    hits = await search_task(query, k, kind, language)
    get_run_logger().info("%d past outputs like %r", len(hits), query)
    await acreate_table_artifact(hit_rows(hits), key=ARTIFACT_KEY, description=f"Past outputs like {query!r}.")
    await acreate_markdown_artifact(summary_markdown(query, hits), key=ARTIFACT_KEY + "-summary")
    return hits
