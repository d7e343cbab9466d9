"""``contentmill search`` and ``contentmill graph stats|export``: prior outputs found by meaning, and the
knowledge graph counted or written out.

The graph is CONTENTMILL_DATABASE_URL when set, else ``graph.sqlite3`` in CONTENTMILL_DATA_DIR. Mount with
``app.command("search")(search)`` and ``app.add_typer(graph_app, name="graph")``;
``python -m contentmill.commands.graph`` runs them alone.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from contentmill.commands import JsonOption, emit_json, fail, settings_or_fail
from contentmill.errors import ContentmillError
from contentmill.knowledge_graph import GraphStore, Hit, KnowledgeGraph, graph_url, write_export

graph_app = typer.Typer(help="The knowledge graph of prior outputs: counts and exports.",
                        add_completion=False)
console = Console()


class OutputKind(StrEnum):
    text = "text"
    audio = "audio"
    video = "video"
    subtitle = "subtitle"
    image = "image"


class ExportFormat(StrEnum):
    graphml = "graphml"
    json = "json"


def _store() -> GraphStore:
    try:
        return GraphStore(graph_url(settings_or_fail()))
    except ContentmillError as exc:
        fail(str(exc))


def _hit_json(hit: Hit) -> dict[str, Any]:
    data = hit.as_dict()
    data["chain"] = [dict(link) for link in data["chain"]]
    return data


def _hits_table(query: str, found: list[Hit]) -> Table:
    table = Table(title=f"{len(found)} prior output{'' if len(found) == 1 else 's'} like {query!r}")
    with_entity = any(hit.entity for hit in found)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("id", no_wrap=True)
    if with_entity:
        table.add_column("entity", max_width=16, overflow="fold")
    table.add_column("text", ratio=1, min_width=20)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("location", max_width=28, overflow="fold")
    table.add_column("chain", min_width=10, max_width=20, overflow="fold")
    for hit in found:
        preview = hit.text if len(hit.text) <= 160 else hit.text[:157] + "..."
        chain = ">".join(link.kind for link in hit.chain) if len(hit.chain) > 1 else ""
        entity = [Text(hit.entity or "")] if with_entity else []
        cost = f"${hit.cost_usd:,.4f}"
        table.add_row(f"{hit.score:.3f}", hit.kind, hit.id[:8], *entity, Text(preview), cost,
                      Text(hit.location or ""), chain)
    return table


def search(
    query: Annotated[str, typer.Argument(help="What to look for, in any words.")],
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="How many results.")] = 10,
    kind: Annotated[OutputKind | None, typer.Option(help="Only outputs of this kind.")] = None,
    language: Annotated[str | None, typer.Option(help="Only outputs in this language: en, zh, ...")] = None,
    json_out: JsonOption = False,
) -> None:
    """Prior outputs closest in meaning to QUERY, with their chain, cost and location."""
    store = _store()
    try:
        with KnowledgeGraph(store) as graph:
            graph.catch_up()
            found = graph.search(query, k=k, kind=kind.value if kind else None, language=language)
    except ContentmillError as exc:
        fail(str(exc))
    if json_out:
        emit_json({"query": query, "k": k, "kind": kind.value if kind else None,
                   "results": [_hit_json(hit) for hit in found]})
        return
    console.print(_hits_table(query, found))


@graph_app.command()
def stats(json_out: JsonOption = False) -> None:
    """Nodes by type and kind, edges by kind, output spend, and reuse decisions with what they saved."""
    store = _store()
    try:
        data = store.stats()
    except ContentmillError as exc:
        fail(str(exc))
    finally:
        store.close()
    if json_out:
        emit_json(data)
        return
    table = Table(title=f"knowledge graph at {data['store']} (change {data['seq']})")
    table.add_column("what")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for type_, counts in data["nodes"].items():
        for kind, count in counts["by_kind"].items():
            table.add_row(f"{type_} nodes", kind, f"{count:,}")
    for kind, count in data["edges"].items():
        table.add_row("edges", kind, f"{count:,}")
    table.add_section()
    outputs, decisions = data["outputs"], data["decisions"]
    table.add_row("outputs", f"spent ${outputs['cost_usd']:,.6f}", f"{outputs['count']:,}")
    table.add_row("reuse decisions", f"reused {decisions['reused']:,}, saved ${decisions['saved_usd']:,.6f}",
                  f"{decisions['total']:,}")
    console.print(table)


@graph_app.command()
def export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="graphml (Gephi, yEd) or node-link json.")],
    out: Annotated[Path | None, typer.Option(help="File to write (default: standard output).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Write the whole graph (without embeddings) as GraphML or node-link JSON."""
    if json_out and out is None:
        fail("--json reports on an export written with --out; without --out the export itself is printed")
    store = _store()
    try:
        with KnowledgeGraph(store, vectors=False) as graph:
            graph.catch_up()
            if out is None:
                write_export(graph.graph, sys.stdout.buffer, fmt.value)
                sys.stdout.flush()
                return
            out.parent.mkdir(parents=True, exist_ok=True)
            write_export(graph.graph, out, fmt.value)
            summary = {"path": str(out), "format": fmt.value, "nodes": graph.graph.number_of_nodes(),
                       "edges": graph.graph.number_of_edges(), "seq": graph.seq}
    except ContentmillError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    if json_out:
        emit_json(summary)
        return
    wrote = f"wrote {summary['nodes']:,} nodes and {summary['edges']:,} edges to {out}"
    console.print(wrote, highlight=False)


if __name__ == "__main__":
    main_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    main_app.command("search")(search)
    main_app.add_typer(graph_app, name="graph")
    main_app()
