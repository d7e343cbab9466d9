"""Recording finished rows: new descriptions into the knowledge graph (a new version supersedes the output it
replaces), then every row into the run's journal (fsynced). After ``record`` returns, a crash loses nothing.

Only the flow's process records: jobs running elsewhere hand their rows back, and the graph and the
journal keep one writer (one thread at a time: the scheduler records off the event loop while planning may
record rows it serves without a model).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from contentmill.knowledge_graph import KnowledgeGraph
from contentmill.products.journal import RunJournal
from contentmill.products.output import Row
from contentmill.products.reuse import NewOutput, record
from contentmill.products.work import Work


class Recorder:
    def __init__(self, journal: RunJournal, graph: KnowledgeGraph | None) -> None:
        self.journal, self.graph = journal, graph
        self._lock = threading.Lock()

    def record(self, rows: Sequence[Row], works: Mapping[str, Work] | None) -> None:
        """Journal ``rows``; those with a description and their product's ``works`` entry are new outputs, recorded
        in the graph first (None: nothing new, such as rows kept from the graph)."""
        if not rows:
            return
        with self._lock:
            self._record(rows, works)

    def _record(self, rows: Sequence[Row], works: Mapping[str, Work] | None) -> None:
        if self.graph is not None and works is not None:
            outputs = []
            for row in rows:
                work = works.get(row.id)
                if work is not None and row.error is None and row.description:
                    attrs = {"variant": work.variant, "tier": row.tier, "checks": row.checks,
                             "reused_from": row.reused_from}
                    outputs.append(NewOutput(row.id, row.description, work.language, row.model, row.cost_usd,
                                             work.fields, attrs, work.old_output))
            record(self.graph, outputs)
        self.journal.append(r.as_dict() for r in rows)
