"""The in-memory graph over the store: recording lineage, searching, superseding, and catching up."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from contentmill.knowledge_graph import GraphError, KnowledgeGraph, OutputSpec, RequestFacts
from contentmill.knowledge_graph.records import Node

SCRIPT = (
    "Octopuses have three hearts and blue blood. Two hearts pump blood through the gills, and the third "
    "pumps it to the rest of the body. "
) * 4
Opener = Callable[..., KnowledgeGraph]


def record_video(graph: KnowledgeGraph, topic: str, script: str, language: str = "en") -> tuple[str, ...]:
    request = RequestFacts("video", topic, language=language, template="creator_video@1")
    return graph.record(
        request,
        [
            OutputSpec(
                "text", script, model="openai:gpt-4o-mini", cost_usd=0.002, location="s3://bucket/script.txt"
            ),
            OutputSpec(
                "audio",
                script,
                model="openai:tts-1",
                cost_usd=0.015,
                derived_from=[0],
                scene=0,
                location="s3://bucket/narration.wav",
            ),
            OutputSpec("subtitle", script, derived_from=[1], location="s3://bucket/video.srt"),
            OutputSpec(
                "video",
                f"{topic}: a narrated short",
                derived_from=[1, 2],
                cost_usd=0.03,
                location="s3://bucket/video.mp4",
            ),
        ],
    ).outputs


def test_search_hits_carry_lineage_cost_and_location(open_graph: Opener, store_url: str) -> None:
    graph = open_graph(store_url)
    script, audio, subtitle, video = record_video(graph, "Why octopuses have three hearts", SCRIPT)
    record_video(graph, "How bees make honey", "Bees turn nectar into honey by fanning it with their wings.")
    hits = graph.search("the hearts and blood of an octopus", k=3, kind="text")
    top = hits[0]
    assert top.id == script and top.kind == "text" and len(hits) == 2
    assert top.text == SCRIPT and len(top.text) > 300  # the full text, not the preview the graph keeps
    assert top.cost_usd == pytest.approx(0.002) and top.location == "s3://bucket/script.txt"
    assert top.model == "openai:gpt-4o-mini" and top.language == "en" and top.template == "creator_video@1"
    assert [(link.id, link.kind) for link in top.chain] == [
        (script, "text"),
        (audio, "audio"),
        (subtitle, "subtitle"),
        (video, "video"),
    ]
    assert top.score > hits[1].score
    every_kind = graph.search("octopus hearts", k=10)
    assert {hit.id for hit in every_kind} >= {script, audio, subtitle, video}
    assert graph.search("octopus hearts", k=5, language="zh") == []


def test_edges_of_a_recorded_product_output(open_graph: Opener, sqlite_url: str) -> None:
    graph = open_graph(sqlite_url)
    graph.add_entity("SKU-1", name="Steel bottle", fields={"capacity": "500 ml", "colour": "red"})
    request = RequestFacts(
        "text",
        "Write a product description",
        template="product_description@2",
        entity="SKU-1",
        fields={"capacity": "500 ml", "colour": "red"},
    )
    done = graph.record(request, [OutputSpec("text", "A red 500 ml bottle.", model="local:gemma-3-270m")])
    (output,) = done.outputs
    edges = {(s, d, k) for s, d, k in graph.graph.edges(keys=True)}
    assert {
        (done.request, output, "produced"),
        (output, "entity:SKU-1", "describes"),
        (output, "field:SKU-1:capacity", "uses_field"),
        (output, "field:SKU-1:colour", "uses_field"),
        ("field:SKU-1:colour", "entity:SKU-1", "field_of"),
        (output, "template:product_description@2", "uses_template"),
        (output, "model:local:gemma-3-270m", "made_by"),
        (done.request, "template:product_description@2", "uses_template"),
    } <= edges
    assert graph.graph.edges[output, "field:SKU-1:colour", "uses_field"]["value"] == "red"
    assert graph.graph.nodes["entity:SKU-1"]["kind"] == "product"  # the output did not overwrite the entity
    assert graph.graph.nodes[done.request]["constraints"] == ["field=capacity:0.5l", "field=colour:red"]


def test_similar_outputs_are_linked_both_ways(open_graph: Opener, sqlite_url: str) -> None:
    graph = open_graph(sqlite_url)
    (first,) = graph.record(
        None, [OutputSpec("text", "Honey bees visit two million flowers for a pound.")]
    ).outputs
    (second,) = graph.record(
        None, [OutputSpec("text", "Honey bees visit two million flowers for one pound.")]
    ).outputs
    (other,) = graph.record(None, [OutputSpec("text", "Volcanoes erupt when magma rises.")]).outputs
    score = graph.graph.edges[second, first, "similar_to"]["score"]
    assert score > 0.85 and graph.graph.edges[first, second, "similar_to"]["score"] == score
    assert not graph.graph.has_edge(other, first) and not graph.graph.has_edge(other, second)


def test_a_superseded_output_leaves_search_and_reuse(open_graph: Opener, sqlite_url: str) -> None:
    graph = open_graph(sqlite_url)
    request = RequestFacts("text", "Describe a ceramic mug", template="product_description@2", entity="MUG")
    (old,) = graph.record(request, [OutputSpec("text", "A ceramic mug for coffee.", cost_usd=0.01)]).outputs
    assert graph.find_duplicate(request) is not None
    (new,) = graph.record(None, [OutputSpec("text", "A ceramic mug for tea and coffee.")]).outputs
    graph.supersede(old, new)
    assert graph.graph.has_edge(new, old, "supersedes") and graph.graph.nodes[old]["superseded_by"] == new
    assert old not in {hit.id for hit in graph.search("ceramic mug", k=10)}
    decision = graph.decide(request)
    assert decision.match is None and decision.reason == "the prior outputs were superseded"
    with pytest.raises(GraphError, match="no output 'nope'"):
        graph.supersede("nope", new)


def test_other_instances_catch_up_incrementally(open_graph: Opener, store_url: str) -> None:
    writer, reader = open_graph(store_url), open_graph(store_url)
    record_video(writer, "Why octopuses have three hearts", SCRIPT)
    assert reader.catch_up() > 0 and reader.catch_up() == 0
    seq = reader.seq
    writer.record(None, [OutputSpec("text", f"Fact {i} about the moon and its craters.") for i in range(5)])
    assert reader.catch_up() == 5 and reader.seq == seq + 1  # the five new outputs, nothing already seen
    assert len(reader.search("craters on the moon", k=10, kind="text")) == 6
    assert set(reader.graph.nodes) == set(writer.graph.nodes)


def test_vectors_of_another_model_are_left_out(open_graph: Opener, sqlite_url: str) -> None:
    graph = open_graph(sqlite_url)
    alien = np.ones(384, dtype=np.float32) / np.sqrt(384)
    graph.store.write(
        [Node("alien", "output", "text", text="moon", vector=alien, vector_model="other-model")]
    )
    graph.record(None, [OutputSpec("text", "The moon has craters.")])
    assert "alien" in graph.graph and "alien" not in graph.index
    assert [hit.text for hit in graph.search("moon", k=5)] == ["The moon has craters."]
