"""``contentmill search`` and ``contentmill graph stats|export`` run as their own processes against a real
store, configured the way a user configures it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from contentmill.knowledge_graph import KnowledgeGraph, OutputSpec, RequestFacts, read_export


def cli(store_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONTENTMILL_")}
    env["HF_HUB_OFFLINE"] = "1"
    if store_url.startswith("sqlite:///"):
        env["CONTENTMILL_DATA_DIR"] = str(Path(store_url.removeprefix("sqlite:///")).parent)
    else:
        env["CONTENTMILL_DATABASE_URL"] = store_url
    command = [sys.executable, "-m", "contentmill.commands.graph", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def one_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    data: dict[str, Any] = json.loads(lines[0])
    return data


def fill(graph: KnowledgeGraph) -> tuple[str, ...]:
    """A video's chain, a text about another topic, and one reuse decision."""
    outputs = graph.record(
        RequestFacts("video", "Why octopuses have three hearts"),
        [
            OutputSpec(
                "text",
                "Octopuses have three hearts: two for the gills, one for the body.",
                cost_usd=0.002,
                location="s3://bucket/octopus.txt",
            ),
            OutputSpec(
                "audio",
                "Octopuses have three hearts: two for the gills, one for the body.",
                cost_usd=0.01,
                derived_from=[0],
                location="s3://bucket/octopus.wav",
            ),
            OutputSpec(
                "video", "Three hearts: a narrated short", derived_from=[1], location="s3://bucket/o.mp4"
            ),
        ],
    ).outputs
    graph.record(None, [OutputSpec("text", "Bees make honey from nectar.", entity="topic:bees")])
    graph.decide(RequestFacts("video", "Why do octopuses have three hearts?"))
    return outputs


@pytest.fixture
def filled(open_graph: Callable[..., KnowledgeGraph], store_url: str) -> tuple[str, tuple[str, ...]]:
    return store_url, fill(open_graph(store_url))


@pytest.fixture
def filled_sqlite(open_graph: Callable[..., KnowledgeGraph], sqlite_url: str) -> tuple[str, tuple[str, ...]]:
    return sqlite_url, fill(open_graph(sqlite_url))


def test_search_prints_hits_as_one_json_object(filled: tuple[str, tuple[str, ...]], tmp_path: Path) -> None:
    store_url, (script, audio, video) = filled
    data = one_json(
        cli(
            store_url,
            tmp_path,
            "search",
            "how many hearts does an octopus have",
            "-k",
            "2",
            "--kind",
            "text",
            "--json",
        )
    )
    assert (
        data["query"] == "how many hearts does an octopus have" and data["k"] == 2 and data["kind"] == "text"
    )
    top = data["results"][0]
    assert {"id", "score", "kind", "text", "entity", "chain", "cost_usd", "location"} <= set(top)
    assert top["id"] == script and top["kind"] == "text" and top["cost_usd"] == pytest.approx(0.002)
    assert top["location"] == "s3://bucket/octopus.txt" and top["text"].startswith(
        "Octopuses have three hearts"
    )
    assert [link["id"] for link in top["chain"]] == [script, audio, video]
    assert data["results"][1]["entity"] == "topic:bees" and data["results"][1]["score"] < top["score"]


def test_search_as_a_table(filled_sqlite: tuple[str, tuple[str, ...]], tmp_path: Path) -> None:
    store_url, _outputs = filled_sqlite
    done = cli(store_url, tmp_path, "search", "octopus hearts", "--kind", "video")
    assert done.returncode == 0, done.stderr
    assert "prior output like 'octopus hearts'" in done.stdout and "Three hearts" in done.stdout


def test_stats_as_json(filled: tuple[str, tuple[str, ...]], tmp_path: Path) -> None:
    store_url, _outputs = filled
    data = one_json(cli(store_url, tmp_path, "graph", "stats", "--json"))
    assert data["nodes"]["output"] == {"total": 4, "by_kind": {"audio": 1, "text": 2, "video": 1}}
    assert data["edges"]["derived_from"] == 2 and data["outputs"]["cost_usd"] == pytest.approx(0.012)
    assert data["decisions"]["total"] == 1 and data["decisions"]["reused"] == 1
    assert "password" not in json.dumps(data)


def test_export_to_a_file_and_to_stdout(filled: tuple[str, tuple[str, ...]], tmp_path: Path) -> None:
    store_url, (script, audio, _video) = filled
    out = tmp_path / "out" / "graph.graphml"
    summary = one_json(
        cli(store_url, tmp_path, "graph", "export", "--format", "graphml", "--out", str(out), "--json")
    )
    back = read_export(out, "graphml")
    assert summary["nodes"] == back.number_of_nodes() and summary["edges"] == back.number_of_edges()
    assert back.has_edge(audio, script, "derived_from")
    printed = cli(store_url, tmp_path, "graph", "export", "--format", "json")
    assert printed.returncode == 0, printed.stderr
    graph = nx.node_link_graph(json.loads(printed.stdout), directed=True, multigraph=True, edges="edges")
    assert set(graph.nodes) == set(back.nodes)


def test_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    done = cli(
        f"sqlite:///{tmp_path / 'graph.sqlite3'}", tmp_path, "graph", "export", "--format", "json", "--json"
    )
    assert (
        done.returncode == 1 and done.stderr.count("\n") == 1 and "--json reports on an export" in done.stderr
    )
    done = cli("mysql://db/x", tmp_path, "graph", "stats", "--json")
    assert done.returncode == 1 and done.stdout == "" and "runs on SQLite or PostgreSQL" in done.stderr
