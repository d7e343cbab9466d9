"""Changed product fields mark exactly the outputs made from them, on a catalog of 100 products."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from contentmill.knowledge_graph import KnowledgeGraph, OutputSpec

Made = dict[str, tuple[str, str]]  # output id -> (product, role)
Catalog = tuple[KnowledgeGraph, Made]
# Which fields each kind of output is made from.
USES = {
    "description": ("name", "capacity", "colour"),
    "title": ("name",),
    "specs": ("material", "capacity", "price"),
}
# Three fields changed across ten products.
CHANGES: dict[str, dict[str, object]] = {
    "P000": {"colour": "blue"},
    "P007": {"price": 21.5},
    "P013": {"capacity": "750 ml"},
    "P021": {"colour": "black", "price": 9.99},
    "P034": {"capacity": "1 l", "colour": "white"},
    "P042": {"price": 30},
    "P055": {"colour": "green"},
    "P068": {"capacity": "350 ml", "price": 12},
    "P079": {"colour": "pink", "capacity": "600 ml", "price": 15},
    "P099": {"price": 44},
}


def product_fields(number: int) -> dict[str, object]:
    return {
        "name": f"Bottle {number}",
        "capacity": "500 ml",
        "colour": "red",
        "material": "steel",
        "price": 19.99 + number,
    }


@pytest.fixture
def catalog(
    open_graph: Callable[..., KnowledgeGraph], sqlite_url: str
) -> tuple[KnowledgeGraph, Made]:
    """100 products, each with a description, a title and a spec sheet; narration from every description."""
    graph = open_graph(sqlite_url)
    made: Made = {}
    for number in range(100):
        product, fields = f"P{number:03d}", product_fields(number)
        graph.add_entity(product, fields=fields)
        outputs = [
            OutputSpec("text", entity=product, fields_used={f: fields[f] for f in uses}, attrs={"role": role})
            for role, uses in USES.items()
        ]
        outputs.append(OutputSpec("audio", entity=product, fields_used={}, derived_from=[0]))
        for output_id, role in zip(graph.record(None, outputs).outputs, [*USES, "narration"], strict=True):
            made[output_id] = (product, role)
    return graph, made


def expected(made: Made) -> set[tuple[str, tuple[str, ...]]]:
    """Worked out from the catalog, not from the graph."""
    found: set[tuple[str, tuple[str, ...]]] = set()
    for output_id, (product, role) in made.items():
        used = set(USES.get(role, ())) & set(CHANGES.get(product, {}))
        if used:
            found.add((output_id, tuple(sorted(used))))
    return found


def test_changed_fields_mark_exactly_the_outputs_that_used_them(catalog: Catalog) -> None:
    graph, made = catalog
    found = set()
    for product, changes in CHANGES.items():
        for stale in graph.stale_outputs(product, list(changes)):
            assert stale.entity == product and stale.kind == "text" and stale.via is None
            found.add((stale.id, stale.fields))
    assert found == expected(made)
    assert len(found) == 15  # 7 descriptions and 8 spec sheets
    assert graph.stale_outputs("P050", ["colour", "price"]) != []  # an unchanged product has users too
    assert graph.stale_outputs("P050", ["weight"]) == [] and graph.stale_outputs("NOPE", ["colour"]) == []


def test_new_values_already_used_are_not_stale(catalog: Catalog) -> None:
    graph, _made = catalog
    assert graph.stale_outputs("P000", {"colour": "red", "capacity": "0.5 l"}) == []
    assert [s.fields for s in graph.stale_outputs("P000", {"colour": "blue", "capacity": "500ml"})] == [
        ("colour",)
    ]


def test_narration_from_a_stale_description_is_stale_too(catalog: Catalog) -> None:
    graph, made = catalog
    found = graph.stale_outputs("P000", ["colour"], include_derived=True)
    roles = {made[s.id][1]: s for s in found}
    assert set(roles) == {"description", "narration"}
    assert roles["narration"].via == roles["description"].id and roles["narration"].fields == ()
    assert (
        graph.stale_outputs("P000", ["material"], include_derived=True)[0].id in made
    )  # specs: no narration
    assert len(graph.stale_outputs("P000", ["material"], include_derived=True)) == 1


def test_a_superseded_output_is_not_stale_again(catalog: Catalog) -> None:
    graph, _made = catalog
    (old,) = graph.stale_outputs("P055", ["colour"])
    (new,) = graph.record(None, [OutputSpec("text", entity="P055", fields_used={"colour": "green"})]).outputs
    graph.supersede(old.id, new)
    assert graph.stale_outputs("P055", {"colour": "green"}) == []
    assert [s.id for s in graph.stale_outputs("P055", {"colour": "orange"})] == [new]
