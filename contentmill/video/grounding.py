"""Scripts true to a source: sentences picked from the creator's notes, and a check of a model's scenes against them.

The extractive script takes the source's own sentences, chosen by their MiniLM similarity to the topic (each new
pick penalized by its similarity to those already taken, so two sentences saying the same thing are not both
picked) until the spoken length is reached, and keeps them in the source's order; the only rewriting is markup
removed and a capital letter and full stop added. What it says is therefore true as far as the source is. A chat
model's scene is accepted only when every number and name in it also appears in the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from contentmill.errors import InvalidRequest
from contentmill.gateway import Gateway
from contentmill.media.text import is_cjk
from contentmill.requests import EmbeddingRequest
from contentmill.video.request import Language
from contentmill.video.script import (
    Script,
    ScriptScene,
    caption_from,
    clean_text,
    language_problem,
    sentences,
    similarity,
    terminated,
)

EMBEDDING_MODEL = "local:all-minilm-l6-v2"
REDUNDANCY = 0.3  # how much a candidate's similarity to a sentence already picked counts against it
RELEVANT = 0.4  # a sentence less similar to the topic than this share of the best one's similarity is left out
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_FENCE = re.compile(r"```.*?```", re.S)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_META = re.compile(r"^(see|visit|read|click|watch|check out|learn more|more at|sources?|photos?|images?|credits?)\b",
                   re.I)  # "See the aquarium's page for photos.": about the notes, not the topic
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")


@dataclass(frozen=True, slots=True)
class Notes:
    """A source read for narration: its first heading (a title) and its sentences in order."""

    title: str | None
    sentences: tuple[str, ...]


def read_notes(source: str, language: Language) -> Notes:
    """The narratable sentences of text or markdown notes: headings, bullets, links and code taken apart."""
    title: str | None = None
    paragraphs: list[list[str]] = [[]]
    for line in _FENCE.sub("\n", source.replace("\r\n", "\n")).split("\n"):
        heading = _HEADING.match(line)
        if heading:
            title = title or clean_text(heading.group(1)) or None
            paragraphs.append([])
        elif not line.strip() or _BULLET.match(line):
            paragraphs.append([_BULLET.sub("", line)] if line.strip() else [])
        else:
            paragraphs[-1].append(line)
    found: list[str] = []
    for lines in paragraphs:
        text = clean_text(_LINK.sub(r"\1", " ".join(lines)))
        for sentence in sentences(text):
            spoken = terminated(sentence.strip(), language)
            if _narratable(spoken, language) and spoken not in found:
                found.append(spoken)
    return Notes(title, tuple(found))


def _narratable(sentence: str, language: Language) -> bool:
    size = len(sentence) if language == "zh" else len(sentence.split())
    low, high = (6, 120) if language == "zh" else (4, 60)
    return low <= size <= high and not _META.match(sentence) and language_problem(sentence, language) is None


def spoken_size(text: str, language: Language) -> int:
    """Words, or characters for Chinese: the unit of the spoken budget."""
    return len(re.sub(r"\s", "", text)) if language == "zh" else len(text.split())


def pick(scores: np.ndarray, similar: np.ndarray, sizes: list[int], budget: int) -> list[int]:
    """Indices of the sentences to say, best first by relevance less redundancy, until ``budget`` is filled."""
    chosen: list[int] = []
    used = 0
    floor = RELEVANT * float(scores.max(initial=0.0))
    left = {index for index in range(len(sizes)) if scores[index] >= floor}
    while left and used < budget:
        def gain(index: int) -> float:
            overlap = max((float(similar[index, other]) for other in chosen), default=0.0)
            return float(scores[index]) - REDUNDANCY * overlap

        best = max(sorted(left), key=gain)
        left.discard(best)
        if chosen and used + sizes[best] > budget * 1.1:
            continue  # it would overshoot the length: a shorter one may still fit
        chosen.append(best)
        used += sizes[best]
    return chosen


def scenes_of(picked: list[str], count: int, language: Language) -> tuple[ScriptScene, ...]:
    """The picked sentences in ``count`` scenes (or fewer) of consecutive sentences, near equal in length."""
    count = max(1, min(count, len(picked)))
    sizes = [spoken_size(text, language) for text in picked]
    total = sum(sizes)
    groups: list[list[str]] = [[] for _ in range(count)]
    done = 0
    for text, size in zip(picked, sizes, strict=True):
        groups[min(count - 1, int((done + size / 2) * count / total))].append(text)  # where its middle falls
        done += size
    joiner = "" if language == "zh" else " "
    return tuple(
        ScriptScene(narration=joiner.join(group), on_screen_text=caption_from(group[0], language))
        for group in groups if group
    )


def chinese_relevance(topic: str, found: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For Chinese, which MiniLM does not read: each sentence's share of the topic's characters, and how much two
    sentences share (their character pairs)."""
    chars = {char for char in topic if is_cjk(char)} or set(topic)
    scores = np.array([len(chars & set(text)) / len(chars) for text in found], dtype=np.float32)
    similar = np.array([[similarity(a, b, "zh") for b in found] for a in found], dtype=np.float32)
    return scores, similar


async def extract_script(topic: str, source: str, language: Language, *, budget: int, scenes: int,
                         gateway: Gateway, tags: dict[str, str]) -> Script:
    """A script made of the source's own sentences most about ``topic`` (MiniLM through the gateway; Chinese by
    the topic's characters)."""
    notes = read_notes(source, language)
    if not notes.sentences:
        unit = "characters" if language == "zh" else "words"
        raise InvalidRequest(f"the source has no sentence to narrate (sentences of {'6' if language == 'zh' else '4'}"
                             f" {unit} or more in {'Chinese' if language == 'zh' else 'English'}): check the file")
    if language == "zh":
        scores, similar = chinese_relevance(topic, notes.sentences)
    else:
        found = await gateway.embed(EmbeddingRequest((topic, *notes.sentences)), model=EMBEDDING_MODEL, tags=tags)
        vectors = np.asarray(found.vectors, dtype=np.float32)
        scores, similar = vectors[1:] @ vectors[0], vectors[1:] @ vectors[1:].T
    sizes = [spoken_size(text, language) for text in notes.sentences]
    chosen = sorted(pick(scores, similar, sizes, budget))  # the source's order reads as it was written
    title = notes.title or (topic if language == "zh" else topic[:1].upper() + topic[1:])
    return Script(title=title, language=language, scenes=scenes_of([notes.sentences[i] for i in chosen], scenes,
                                                                     language))


def unsupported(narration: str, source: str) -> list[str]:
    """The numbers and names of ``narration`` the source does not contain (empty when it is grounded)."""
    plain = source.replace(",", "").lower()
    missing = [number for number in _NUMBER.findall(narration) if number.replace(",", "") not in plain]
    for sentence in sentences(narration):
        names = _WORD.findall(sentence)[1:]  # a capital after the first word: a name
        missing += [name for name in names if name[0].isupper() and name.lower() not in plain]
    return missing


def grounding_problem(script: Script, source: str) -> str | None:
    """Why a model's script is not true to the source (numbers or names it does not have), or None."""
    for number, scene in enumerate(script.scenes, 1):
        missing = unsupported(scene.narration, source)
        if missing:
            return (f"scene {number} says {', '.join(sorted(set(missing)))}, which the source does not: use only "
                    "facts, numbers and names from the source")
    return None
