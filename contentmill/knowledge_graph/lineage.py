"""Where outputs come from and what goes stale when their inputs change.

``uses_field`` edges record the value of each entity field an output was made from, so a changed field marks
exactly the outputs that used it; ``derived_from`` edges carry that on to narration and video made from a
stale script, and give every output its chain (script -> narration -> video).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from contentmill.knowledge_graph.constraints import canonical_value
from contentmill.knowledge_graph.records import DERIVED_FROM, OUTPUT, USES_FIELD, field_node


@dataclass(frozen=True, slots=True)
class Stale:
    """An output to make again: it used a changed field, or derives from an output that did (``via``)."""

    id: str
    kind: str
    entity: str | None
    fields: tuple[str, ...]  # the changed fields it was made from (empty when stale through ``via``)
    request: str | None  # the request that produced it, to run again
    via: str | None = None


def is_current(graph: nx.MultiDiGraph, node_id: str) -> bool:
    """An output no newer version supersedes."""
    return not graph.nodes[node_id].get("superseded_by")


def producing_request(graph: nx.MultiDiGraph, output_id: str) -> str | None:
    for src, _dst, kind in graph.in_edges(output_id, keys=True):
        if kind == "produced":
            return str(src)
    return None


def _changed_names(changed: Iterable[str] | Mapping[str, Any]) -> dict[str, str | None]:
    """Field name -> canonical new value (None: changed to a value not given)."""
    if isinstance(changed, Mapping):
        return {name: canonical_value(value) for name, value in changed.items()}
    return dict.fromkeys(changed)


def stale_outputs(
    graph: nx.MultiDiGraph,
    entity_id: str,
    changed: Iterable[str] | Mapping[str, Any],
    *,
    include_derived: bool = False,
) -> list[Stale]:
    """Current outputs made from a changed field of the entity. With a mapping of new values, an output that
    already used the new value is not stale. ``include_derived`` adds outputs derived from stale ones."""
    used: dict[str, list[str]] = {}
    for name, new_value in _changed_names(changed).items():
        node = field_node(entity_id, name)
        if node not in graph:
            continue
        for src, _dst, kind, data in graph.in_edges(node, keys=True, data=True):
            if kind != USES_FIELD or not is_current(graph, src):
                continue
            if new_value is not None and canonical_value(data.get("value")) == new_value:
                continue
            used.setdefault(src, []).append(name)
    found = [_stale(graph, output, tuple(sorted(names))) for output, names in sorted(used.items())]
    if include_derived:
        found.extend(_derived(graph, [s.id for s in found]))
    return found


def _stale(graph: nx.MultiDiGraph, output: str, fields: tuple[str, ...], via: str | None = None) -> Stale:
    attrs = graph.nodes[output]
    request = producing_request(graph, output)
    return Stale(output, attrs.get("kind", ""), attrs.get("entity"), fields, request, via)


def _derived(graph: nx.MultiDiGraph, roots: list[str]) -> list[Stale]:
    """Outputs made (transitively) from the roots through ``derived_from``, nearest first."""
    seen, found = set(roots), []
    queue = deque(roots)
    while queue:
        source = queue.popleft()
        for derived, _dst, kind in graph.in_edges(source, keys=True):
            if kind != DERIVED_FROM or derived in seen or not is_current(graph, derived):
                continue
            seen.add(derived)
            found.append(_stale(graph, derived, (), via=source))
            queue.append(derived)
    return found


def chain(graph: nx.MultiDiGraph, node_id: str) -> list[str]:
    """The outputs linked to this one by ``derived_from``, sources first (script, narration, video). From a
    current output, versions superseded since are left out; from a superseded one, its own versions stay."""
    members, queue = {node_id}, deque([node_id])
    current_only = is_current(graph, node_id)
    while queue:
        current = queue.popleft()
        neighbours = [dst for _s, dst, k in graph.out_edges(current, keys=True) if k == DERIVED_FROM]
        neighbours += [src for src, _d, k in graph.in_edges(current, keys=True) if k == DERIVED_FROM]
        for other in neighbours:
            if other in members or graph.nodes[other].get("type") != OUTPUT:
                continue
            if not current_only or is_current(graph, other):
                members.add(other)
                queue.append(other)
    flow = nx.DiGraph()
    flow.add_nodes_from(members)
    for member in members:
        for _src, source, kind in graph.out_edges(member, keys=True):
            if kind == DERIVED_FROM and source in members:
                flow.add_edge(source, member)

    def when(node: str) -> str:
        return f"{graph.nodes[node].get('created_at', '')}|{node}"

    try:
        return list(nx.lexicographical_topological_sort(flow, key=when))
    except nx.NetworkXUnfeasible:  # a cycle someone wrote: keep time order rather than fail a search
        return sorted(members, key=when)
