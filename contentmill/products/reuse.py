"""What the knowledge graph knows about earlier descriptions: each product's current output, the output of each
variant (the same fields under any id), which fields changed since an output was made, and recording new
outputs with the field values they were made from, superseding the versions they replace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contentmill.knowledge_graph import KnowledgeGraph, OutputSpec
from contentmill.knowledge_graph.constraints import canonical_value
from contentmill.knowledge_graph.records import OUTPUT, USES_FIELD
from contentmill.products.prompts import TEMPLATE_VERSION


@dataclass(frozen=True, slots=True)
class Priors:
    by_product: dict[str, str]  # product id -> its current output
    by_variant: dict[str, str]  # variant key -> a current output with those fields (an original before a reuse)


@dataclass(frozen=True, slots=True)
class NewOutput:
    """A description to record: the product, what it was made from, and the output it replaces."""

    product: str
    text: str
    language: str
    model: str | None
    cost_usd: float
    fields: Mapping[str, str]
    attrs: Mapping[str, Any]
    replaces: str | None = None


def priors(graph: KnowledgeGraph) -> Priors:
    """Current outputs of this template, caught up with every worker's writes."""
    graph.catch_up()
    by_product: dict[str, tuple[str, str]] = {}
    by_variant: dict[str, tuple[bool, str]] = {}
    for node, attrs in graph.graph.nodes(data=True):
        if (attrs.get("type") != OUTPUT or attrs.get("template") != TEMPLATE_VERSION
                or attrs.get("superseded_by") or not attrs.get("variant")):
            continue
        made, product = str(attrs.get("created_at", "")), str(attrs.get("entity"))
        if product not in by_product or by_product[product][0] < made:
            by_product[product] = (made, node)
        original = attrs.get("reused_from") is None
        known = by_variant.get(attrs["variant"])
        if known is None or (original and not known[0]):
            by_variant[attrs["variant"]] = (original, node)
    return Priors({p: n for p, (_, n) in by_product.items()}, {v: n for v, (_, n) in by_variant.items()})


def changed_fields(graph: KnowledgeGraph, output: str, fields: Mapping[str, str]) -> list[str]:
    """The fields whose value differs from the one ``output`` was made from (added and removed ones too)."""
    used = {data["field"]: data.get("value")
            for _s, _d, kind, data in graph.graph.out_edges(output, keys=True, data=True) if kind == USES_FIELD}
    return sorted(n for n in set(used) | set(fields) if canonical_value(used.get(n)) != canonical_value(fields.get(n)))


def record(graph: KnowledgeGraph, outputs: Sequence[NewOutput]) -> list[str]:
    """Write the outputs in one transaction (embedded once, together), then link each to the one it replaces."""
    if not outputs:
        return []
    specs = [OutputSpec(kind="text", text=o.text, language=o.language, model=o.model, cost_usd=o.cost_usd,
                        template=TEMPLATE_VERSION, entity=o.product, fields_used=dict(o.fields), attrs=dict(o.attrs))
             for o in outputs]
    ids = list(graph.record(None, specs).outputs)
    for output, new in zip(outputs, ids, strict=True):
        if output.replaces is not None:
            graph.supersede(output.replaces, new)
    return ids
