"""Two OS processes write outputs to one SQLite store at the same time; each finds the other's in search after
catching up. (On PostgreSQL the same ordering is tested with concurrent writers in test_graph_store.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contentmill.knowledge_graph import GraphStore

WORKER = Path(__file__).with_name("graph_worker.py")
COUNT = 12
pytestmark = pytest.mark.slow  # each process loads the embedding model


def test_each_process_sees_the_others_outputs(sqlite_url: str, tmp_path: Path) -> None:
    store_url = sqlite_url
    GraphStore(store_url).close()  # the schema exists before either worker starts
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    workers = {
        name: subprocess.Popen(
            [sys.executable, str(WORKER), store_url, name, other, str(COUNT), "120"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for name, other in (("a", "b"), ("b", "a"))
    }
    results = {}
    for name, process in workers.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results[name] = json.loads(out)
    assert results["a"]["saw"] == sorted(results["b"]["wrote"])
    assert results["b"]["saw"] == sorted(results["a"]["wrote"])
    assert len(set(results["a"]["wrote"])) == COUNT
    with GraphStore(store_url) as store:
        assert store.high() == 2 * COUNT and store.stats()["outputs"]["count"] == 2 * COUNT
