"""The knowledge graph of prior outputs: what was made, from what, by which model, at what cost, and where
its bytes are; near-duplicate reuse before paying again, search, and what went stale when inputs changed.

``KnowledgeGraph.open()`` gives the graph in the configured store, caught up with every worker's writes.
"""

from contentmill.errors import GraphError, GraphUnavailable
from contentmill.knowledge_graph.dedupe import REUSE_THRESHOLD, Decision, Match, RequestFacts
from contentmill.knowledge_graph.embeddings import SentenceEmbedder, TextEmbedder
from contentmill.knowledge_graph.export import read_export, write_export
from contentmill.knowledge_graph.graph import KnowledgeGraph, OutputSpec, Recorded
from contentmill.knowledge_graph.index import VectorIndex
from contentmill.knowledge_graph.lineage import Stale
from contentmill.knowledge_graph.search import ChainLink, Hit
from contentmill.knowledge_graph.store import GraphStore, graph_url

__all__ = [
    "REUSE_THRESHOLD", "ChainLink", "Decision", "GraphError", "GraphStore", "GraphUnavailable", "Hit",
    "KnowledgeGraph", "Match", "OutputSpec", "Recorded", "RequestFacts", "SentenceEmbedder", "Stale",
    "TextEmbedder", "VectorIndex", "graph_url", "read_export", "write_export",
]
