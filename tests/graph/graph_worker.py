"""One worker process of the two-process test: it writes outputs about its own topic to a shared store, then
catches up until search finds every output the other worker wrote, and prints what it saw as JSON."""

from __future__ import annotations

import json
import sys
import time

from contentmill.knowledge_graph import GraphStore, KnowledgeGraph, OutputSpec

TOPICS = {"a": "volcanoes erupting with red-hot lava", "b": "penguins swimming under antarctic ice"}


def main(url: str, name: str, other: str, count: int, timeout: float) -> None:
    with KnowledgeGraph(GraphStore(url), poll_interval_s=0.0) as graph:
        graph.catch_up()
        written: list[str] = []
        for i in range(count):  # one transaction each, interleaving with the other worker's
            output = OutputSpec(
                "text", f"Fact {i} from worker {name}: {TOPICS[name]}.", attrs={"worker": name}
            )
            written.extend(graph.record(None, [output]).outputs)
        deadline, polls, theirs = time.monotonic() + timeout, 0, []
        while time.monotonic() < deadline:
            polls += 1
            hits = graph.search(TOPICS[other], k=2 * count, kind="text")
            theirs = [hit.id for hit in hits if graph.graph.nodes[hit.id].get("worker") == other]
            if len(theirs) == count:
                break
            time.sleep(0.1)
        print(json.dumps({"wrote": written, "saw": sorted(theirs), "polls": polls, "seq": graph.seq}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
