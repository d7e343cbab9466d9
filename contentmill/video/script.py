"""The script of a creator video, and turning what a model wrote into one or saying why it cannot be used.

Models return junk now and then: JSON inside prose or code fences, trailing commas, their own key names,
a missing caption, stage directions, the wrong language, a sentence repeated. :func:`parse_script` repairs
what can be repaired (and lists each repair), and raises :class:`UnusableText` with the reason for the rest,
so the writer can retry with that reason; :func:`check_sentence` does the same for one scene's narration.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contentmill.media.text import is_cjk
from contentmill.video.request import Language

MIN_SCENES, MAX_SCENES = 3, 8  # what a model is asked for
MAX_OWN_SCENES = 20  # a creator's own script or a script from a source may be shorter or longer
CAPTION_WORDS, CAPTION_CHARS_ZH = 6, 12
SIMILAR = 0.6  # content-word (or character-pair) overlap above which two sentences say the same thing
SAME_CLAUSE = 0.8  # ... and above which two clauses do

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_STAGE = re.compile(r"\[[^\]]*\]|\*\([^)]*\)\*|（[^）]*音乐[^）]*）")
_MARKUP = re.compile(r"[*_#`]+")
_LABEL = re.compile(
    r"^\s*(narrat(or|ion)|voice[- ]?over|scene \d+|sentence|旁白|句子|场景\s*\d*)\s*[:：]\s*", re.I
)
_SENTENCE_BREAK = re.compile(
    r"(?<=[.!?])\s+|(?<=[.!?][\"'”’)])\s+|(?<=[。！？])(?![”’」』）])|(?<=[。！？][”’」』）])"
)
_ENDS = tuple(".!?。！？\"'”’」』）)")
_CLAUSE = re.compile(r"[,.;:!?—–，。；：！？、]")
_DIGITS = re.compile(r"\d{9,}")
_REPEAT = re.compile(r"(.)\1{5,}|\b(\w+)(\s+\2\b){3,}", re.I)
_STOPWORDS = frozenset(
    "a an the is are was were be been of in on at to for from by with and or but it its this that these "
    "those as into than then there their they them can could will would has have had do does did not no "
    "so very".split()
)
_CLAUSE_WORDS = frozenset("and or but which that who whose because while when where whereas so to with can may "
                          "might must will".split())
_TITLE_KEYS = ("title", "headline", "name", "video_title")
_SCENE_KEYS = ("scenes", "sections", "parts", "slides", "segments", "script", "beats")
_NARRATION_KEYS = (
    "narration",
    "voiceover",
    "voice_over",
    "spoken",
    "speech",
    "text",
    "line",
    "script",
    "content",
)
_CAPTION_KEYS = (
    "on_screen_text",
    "onscreen_text",
    "on_screen",
    "screen_text",
    "caption",
    "text_on_screen",
    "overlay",
    "headline",
    "title",
    "heading",
)


class UnusableText(ValueError):
    """What a model wrote cannot be used; the message says why (and goes back to the model on a retry)."""


class ScriptScene(BaseModel):
    model_config = ConfigDict(frozen=True)

    narration: str = Field(min_length=1, description="What the voice says.")
    on_screen_text: str = Field(description="The short text shown on the slide.")


class Script(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str = Field(min_length=1)
    language: Language
    scenes: tuple[ScriptScene, ...] = Field(min_length=1, max_length=MAX_OWN_SCENES)
    draft: bool = Field(default=False, description="Written by the small local model from the topic alone: "
                        "check its facts before publishing.")

    @property
    def narration(self) -> str:
        return " ".join(scene.narration for scene in self.scenes)


# -- language and text shape ----------------------------------------------------------------------------


def cjk_share(text: str) -> float:
    """Share of the letters of ``text`` that are CJK (0 when it has no letters)."""
    letters = [char for char in text if unicodedata.category(char).startswith("L")]
    return sum(is_cjk(char) for char in letters) / len(letters) if letters else 0.0


def language_problem(text: str, language: Language) -> str | None:
    share = cjk_share(text)
    if language == "zh" and share < 0.5:
        return "it is not written in Simplified Chinese"
    if language == "en" and (share > 0.1 or not re.search(r"[A-Za-z]", text)):
        return "it is not written in English"
    return None


def clean_text(text: str) -> str:
    """One line of plain text: no markup, stage directions, speaker labels or wrapping quotes."""
    cleaned = _MARKUP.sub("", _STAGE.sub(" ", text))
    cleaned = " ".join(cleaned.split())
    cleaned = _LABEL.sub("", cleaned)
    return cleaned.strip().strip("\"'“”‘’「」").strip()


def sentences(text: str) -> list[str]:
    """The sentences of one line of text; "3.5" and "example.com" stay whole."""
    return [part.strip() for part in _SENTENCE_BREAK.split(text) if part and part.strip()]


def terminated(sentence: str, language: Language) -> str:
    """The sentence with a capital first letter and a full stop if it has no closing punctuation."""
    if language == "en":
        sentence = sentence[:1].upper() + sentence[1:]
    return sentence if sentence.endswith(_ENDS) else sentence + ("。" if language == "zh" else ".")


def caption_from(narration: str, language: Language) -> str:
    """A short caption cut from the narration's first clause, for a scene the model gave none."""
    first = _CLAUSE.split(narration, maxsplit=1)[0].strip()
    if language == "zh":
        return first[:CAPTION_CHARS_ZH]
    words = first.split()[:CAPTION_WORDS]
    for index in range(3, len(words)):  # a headline ends before the clause goes on: "Octopuses have three hearts"
        if words[index].lower() in _CLAUSE_WORDS:
            words = words[:index]
            break
    while len(words) > 1 and (words[-1].lower() in _STOPWORDS or words[-1].lower() in _CLAUSE_WORDS):
        words.pop()  # "Each arm can taste what", not "... what it"
    return " ".join(words)


def shorten_caption(caption: str, language: Language) -> str:
    if language == "zh":
        return caption if len(caption) <= 2 * CAPTION_CHARS_ZH else caption[: 2 * CAPTION_CHARS_ZH] + "…"
    words = caption.split()
    return caption if len(words) <= 2 * CAPTION_WORDS else " ".join(words[: 2 * CAPTION_WORDS]) + "…"


def _features(text: str, language: Language) -> set[str]:
    """What two sentences share when they say the same thing: content words, or CJK character pairs."""
    if language == "zh":
        chars = [char for char in text if is_cjk(char)]
        return {a + b for a, b in zip(chars, chars[1:], strict=False)}
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {word.rstrip("s") for word in words if word not in _STOPWORDS}


def similarity(first: str, second: str, language: Language) -> float:
    a, b = _features(first, language), _features(second, language)
    return len(a & b) / len(a | b) if a and b else float(first.strip().lower() == second.strip().lower())


def _clauses(text: str, language: Language) -> list[str]:
    """The clauses of ``text`` long enough to be worth comparing (three content words, or four CJK characters)."""
    return [part.strip() for part in _CLAUSE.split(text) if len(_features(part, language)) >= 3]


def repeated_clause(sentence: str, earlier: list[str], language: Language) -> str | None:
    """A clause of ``sentence`` said (nearly word for word) twice in it, or once already in an earlier sentence."""
    said = [clause for other in earlier for clause in _clauses(other, language)]
    for clause in _clauses(sentence, language):
        if any(similarity(clause, other, language) >= SAME_CLAUSE for other in said):
            return clause
        said.append(clause)
    return None


# -- one scene's sentence (the base-model path) ---------------------------------------------------------


def check_sentence(
    text: str,
    language: Language,
    *,
    earlier: list[str],
    examples: list[str],
    cut: bool = False,
    max_words: int = 45,
) -> str:
    """One or two clean sentences from a model's answer, or UnusableText saying what is wrong with it.

    ``cut`` says the model stopped at its token limit: an unfinished last sentence is dropped then.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    found = sentences(clean_text(lines[0])) if lines else []
    if cut and found and not found[-1].endswith(_ENDS):
        found.pop()
    if not found:
        raise UnusableText("the answer is empty or cut off")
    found = [terminated(part, language) for part in found[:2]]
    sentence = "".join(found) if language == "zh" else " ".join(found)
    problem = language_problem(sentence, language)
    if problem:
        raise UnusableText(problem)
    size = len([char for char in sentence if is_cjk(char)]) if language == "zh" else len(sentence.split())
    low, high = (6, 2 * max_words) if language == "zh" else (4, max_words)
    if not low <= size <= high:
        raise UnusableText(f"it is {size} {'characters' if language == 'zh' else 'words'} long")
    if _DIGITS.search(sentence) or _REPEAT.search(sentence):
        raise UnusableText("it repeats itself")
    for other in earlier:
        if similarity(sentence, other, language) >= SIMILAR:
            raise UnusableText("it says what an earlier scene already says")
    repeated = repeated_clause(sentence, earlier, language)
    if repeated:
        raise UnusableText(f"it says {repeated!r} twice")
    for example in examples:
        if similarity(sentence, example, language) >= SIMILAR:
            raise UnusableText("it copies an example")
    return sentence


# -- a whole script as JSON (the chat-model path) -------------------------------------------------------


def _load_json(text: str) -> Any:
    """The JSON value in ``text``: bare, fenced, inside prose, or with trailing commas."""
    body = _FENCE.sub("", text.strip())
    candidates = [body]
    start, end = body.find("{"), body.rfind("}")
    if 0 <= start < end:
        candidates.append(body[start : end + 1])
    for candidate in candidates:
        for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
            try:
                return json.loads(attempt)
            except ValueError:
                continue
    raise UnusableText("the answer is not a JSON object")


def _first_text(
    item: dict[str, Any], keys: tuple[str, ...], skip: str | None = None
) -> tuple[str | None, str]:
    for key in keys:
        value = item.get(key)
        if key != skip and isinstance(value, str) and value.strip():
            return key, value
    return None, ""


def _scene(raw: Any, language: Language, repairs: list[str], number: int) -> ScriptScene | None:
    if isinstance(raw, str):
        raw = {"narration": raw}
    if not isinstance(raw, dict):
        return None
    used, narration = _first_text(raw, _NARRATION_KEYS)
    narration = clean_text(narration)
    if not narration:
        return None
    if used != "narration":
        repairs.append(f"scene {number}: narration read from {used!r}")
    _, caption = _first_text(raw, _CAPTION_KEYS, skip=used)
    caption = clean_text(caption)
    if not caption:
        caption = caption_from(narration, language)
        repairs.append(f"scene {number}: caption cut from the narration")
    return ScriptScene(narration=narration, on_screen_text=shorten_caption(caption, language))


def _raw_scenes(value: Any) -> tuple[list[Any], str]:
    if isinstance(value, list):
        return value, "a bare list"
    if isinstance(value, dict):
        for key in _SCENE_KEYS:
            if isinstance(value.get(key), list):
                return value[key], key
    raise UnusableText('the JSON object has no "scenes" list')


def _fit_count(scenes: list[ScriptScene], repairs: list[str]) -> list[ScriptScene]:
    if len(scenes) < MIN_SCENES:
        raise UnusableText(
            f"the script has {len(scenes)} usable scenes; {MIN_SCENES} to {MAX_SCENES} are needed"
        )
    if len(scenes) <= MAX_SCENES:
        return scenes
    repairs.append(f"{len(scenes)} scenes merged into {MAX_SCENES}")
    tail = scenes[MAX_SCENES - 1 :]
    merged = ScriptScene(
        narration=" ".join(scene.narration for scene in tail), on_screen_text=tail[0].on_screen_text
    )
    return [*scenes[: MAX_SCENES - 1], merged]


def parse_script(text: str, *, language: Language, topic: str) -> tuple[Script, list[str]]:
    """A script from a model's JSON answer, repaired where possible; returns it with the repairs made."""
    repairs: list[str] = []
    value = _load_json(text)
    raw, found_in = _raw_scenes(value)
    if found_in != "scenes":
        repairs.append(f"scenes read from {found_in}")
    scenes = [s for n, item in enumerate(raw, 1) if (s := _scene(item, language, repairs, n)) is not None]
    scenes = _fit_count(scenes, repairs)
    title = ""
    if isinstance(value, dict):
        title = clean_text(_first_text(value, _TITLE_KEYS)[1])
    if not title:
        title = topic
        repairs.append("title taken from the topic")
    for number, scene in enumerate(scenes, 1):
        problem = language_problem(scene.narration, language)
        if problem:
            raise UnusableText(f"scene {number}: {problem}")
    return Script(title=title, language=language, scenes=tuple(scenes)), repairs
