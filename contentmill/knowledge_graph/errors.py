"""Errors of the knowledge graph, as they sit in the tree of ``contentmill.errors``::

    ContentmillError
    └── GraphError                   the graph cannot store, read or answer what was asked
        └── GraphUnavailable         its database is unreachable or busy; may succeed later
"""

from __future__ import annotations

from contentmill.errors import ContentmillError


class GraphError(ContentmillError):
    """The knowledge graph cannot store, read or answer what was asked (bad URL, unknown node, bad input)."""


class GraphUnavailable(GraphError):
    """The graph's database could not be reached or was busy; the same call may succeed later."""
