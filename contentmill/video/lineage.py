"""A finished video's outputs in the knowledge graph: script scenes -> narration clips -> the video.

A video made from the request as asked (no scene edits) is recorded with the request's facts, so a later topic
that means the same under the same settings can be served from it (``find_similar``, the graph's dedupe:
hard constraints equal, similarity above the threshold, the decision recorded). The video is an entity named by
its base script's address (topic, language, length, style, text model), so
a version with edited scenes describes the same entity. Output ids are content addresses: recording the same
video again adds nothing, and after an edit only the changed scenes, their clips and the new render are new
nodes, each linked to the version it replaces by a ``supersedes`` edge. Search then finds the current
version and its chain; ``contentmill search`` shows where each file is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from contentmill.errors import ContentmillError
from contentmill.knowledge_graph import KnowledgeGraph, OutputSpec, RequestFacts
from contentmill.knowledge_graph.records import DESCRIBES, entity_node
from contentmill.providers.minilm import NumpyMiniLM
from contentmill.settings import Settings
from contentmill.video import prompts
from contentmill.video.narration import NarrationResult
from contentmill.video.publish import Published
from contentmill.video.records import digest
from contentmill.video.render import RenderResult
from contentmill.video.request import VideoRequest
from contentmill.video.writing import ScriptResult, script_digest

log = logging.getLogger("contentmill.video")
LINEAGE_VERSION = 1


@dataclass(frozen=True, slots=True)
class VideoLineage:
    """The ids of the video's outputs in the graph, what this call added, and what it superseded."""

    entity: str
    scenes: tuple[str, ...]
    clips: tuple[str, ...]
    video: str
    added: tuple[str, ...]
    superseded: tuple[tuple[str, str], ...]  # (old, new)


@dataclass(frozen=True, slots=True)
class SimilarVideo:
    """An earlier video that serves the request: its topic, and how close the two topics are."""

    topic: str
    score: float
    video: str  # its output id in the graph


def video_facts(request: VideoRequest) -> RequestFacts:
    """What dedupe compares: the topic's text, and as hard constraints every setting the video depends on."""
    fields = request.model_dump(include={"seconds", "style", "voice", "text_model", "speech_model", "orientation",
                                          "resolution", "fps", "image_model", "footage"})
    fields.update(request.finish)
    return RequestFacts("video", request.topic, language=request.language,
                        template=f"creator_video@{prompts.PROMPT_VERSION}", fields=fields)


def find_similar(settings: Settings, request: VideoRequest, *, record: bool = True) -> SimilarVideo | None:
    """An earlier, current video whose topic means the same as this one under the same settings, or None; the
    decision is kept in the graph when ``record``. A graph that cannot be read is a warning: the video is then
    made as asked. The topic is embedded by the numpy MiniLM (the same vectors without importing torch, which
    would take longer than the rest of a rerun)."""
    try:
        with KnowledgeGraph.open(settings, embedder=NumpyMiniLM()) as graph:
            decision = graph.decide(video_facts(request), record=record)
            match = decision.match
            if match is None:
                return None
            topic = graph.text(match.request) or ""
    except ContentmillError as exc:
        log.warning("the knowledge graph could not be asked for a similar video; making it as asked: %s", exc)
        return None
    return SimilarVideo(topic, round(match.score, 4), match.output) if topic else None


def resolve_similar(settings: Settings, request: VideoRequest, *, record: bool = True
                    ) -> tuple[VideoRequest, dict[str, Any] | None]:
    """The request to run: the earlier topic's when one means the same (every stored step is then reused and
    nothing is paid), with a note of what was asked; else the request as it is. Edits, a script of the creator's
    own or from a source, and ``reuse_similar=False`` keep the request as asked. ``record``: as in find_similar."""
    if not request.reuse_similar or not request.as_asked:
        return request, None
    similar = find_similar(settings, request, record=record)
    if similar is None or similar.topic == request.topic:
        return request, None
    note = {"asked": request.topic, "topic": similar.topic, "score": similar.score, "video": similar.video}
    log.info("%r means the same as the earlier %r (similarity %.3f): reusing its video", request.topic,
             similar.topic, similar.score)
    return request.model_copy(update={"topic": similar.topic}), note


def video_entity(request: VideoRequest) -> str:
    return f"video:{script_digest(request)[:24]}"


def _address(location: str, key: str) -> str:
    return f"{location.rstrip('/')}/{key}"


def _id(kind: str, entity: str, content: object) -> str:
    return f"{kind}-{digest(kind, LINEAGE_VERSION, {'entity': entity, 'content': content})[:24]}"


def _specs(request: VideoRequest, script: ScriptResult, narration: NarrationResult, render: RenderResult,
           published: Published, entity: str) -> tuple[list[OutputSpec], list[str], list[str], str]:
    scenes = script.script.scenes
    share = script.report.made_cost_usd / len(scenes) if scenes else 0.0
    scene_ids = [_id("scene", entity, [number, scene.narration, scene.on_screen_text])
                 for number, scene in enumerate(scenes, 1)]
    clip_ids = [_id("narration", entity, [number, clip.digest]) for number, clip in enumerate(narration.clips, 1)]
    video_id = _id("video", entity, render.digest)
    common: dict[str, Any] = {"entity": entity, "language": request.language, "fields_used": {}}
    specs = [
        OutputSpec(kind="text", text=scene.narration, model=request.text, cost_usd=share, id=scene_id, **common,
                   location=_address(published.location, script.key), scene=number,
                   attrs={"scene": number, "caption": scene.on_screen_text, "title": script.script.title})
        for number, (scene, scene_id) in enumerate(zip(scenes, scene_ids, strict=True), 1)
    ]
    specs += [
        OutputSpec(kind="audio", text=clip.narration, model=request.speech, cost_usd=clip.cost_usd, id=clip_id,
                   **common, location=_address(published.location, clip.key), derived_from=(scene_id,), scene=number,
                   attrs={"scene": number, "duration_s": clip.duration_s})
        for number, (clip, clip_id, scene_id) in enumerate(zip(narration.clips, clip_ids, scene_ids, strict=True), 1)
    ]
    specs.append(OutputSpec(
        kind="video", text=f"{script.script.title}. {script.script.narration}", cost_usd=render.report.cost_usd,
        id=video_id, location=_address(published.location, f"{published.folder}video.mp4"), **common,
        derived_from=tuple(clip_ids), attrs={"title": script.script.title, "duration_s": render.duration_s},
    ))
    return specs, scene_ids, clip_ids, video_id


def _outputs_of(graph: KnowledgeGraph, entity: str) -> list[tuple[str, dict[str, Any]]]:
    """The entity's current outputs (found through their ``describes`` edges) with their attributes."""
    node = entity_node(entity)
    if node not in graph.graph:
        return []
    found = []
    for source, _target, kind in graph.graph.in_edges(node, keys=True):
        attrs = graph.graph.nodes[source]
        if kind == DESCRIBES and not attrs.get("superseded_by"):
            found.append((str(source), attrs))
    return found


def _replaced(current: list[tuple[str, dict[str, Any]]], new: OutputSpec) -> list[str]:
    """Current outputs that ``new`` replaces: the same kind, and for scenes and clips the same scene."""
    return [node_id for node_id, attrs in current
            if node_id != new.id and attrs.get("kind") == new.kind and attrs.get("scene") == new.attrs.get("scene")]


def record_video(graph: KnowledgeGraph, request: VideoRequest, script: ScriptResult, narration: NarrationResult,
                 render: RenderResult, published: Published) -> VideoLineage:
    """Record the video's new outputs with their lineage and mark the versions they replace as superseded."""
    entity = video_entity(request)
    specs, scene_ids, clip_ids, video_id = _specs(request, script, narration, render, published, entity)
    graph.refresh()
    new = [spec for spec in specs if spec.id not in graph.graph]  # content addresses: known means unchanged
    current = _outputs_of(graph, entity)
    replaced = [(old, spec.id) for spec in new if spec.id for old in _replaced(current, spec)]
    if new:
        graph.add_entity(entity, kind="video", name=request.topic,
                         fields={"topic": request.topic, "language": request.language})
        graph.record(video_facts(request) if request.as_asked else None, new)
    for old, replacement in replaced:
        graph.supersede(old, replacement)
    return VideoLineage(entity, tuple(scene_ids), tuple(clip_ids), video_id,
                        tuple(spec.id for spec in new if spec.id), tuple(replaced))


def current_outputs(graph: KnowledgeGraph, entity: str) -> list[str]:
    """The ids of the entity's outputs that no newer version supersedes."""
    graph.refresh()
    return sorted(node_id for node_id, _attrs in _outputs_of(graph, entity))


def record_lineage(settings: Settings, request: VideoRequest, script: ScriptResult, narration: NarrationResult,
                   render: RenderResult, published: Published) -> VideoLineage | None:
    """``record_video`` in the configured graph. The video is made and stored by then, so a graph that cannot
    be written is a warning, not a failed run: the next run of the same video records it."""
    try:
        with KnowledgeGraph.open(settings) as graph:
            return record_video(graph, request, script, narration, render, published)
    except ContentmillError as exc:
        log.warning("the video is made, but its outputs could not be recorded in the knowledge graph: %s", exc)
        return None
