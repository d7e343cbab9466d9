"""A script as a text file a person writes or edits: an optional ``# Title`` line, then one paragraph per scene.

Scenes are split by blank lines; the lines of a paragraph are joined. The same format is what ``--script-only``
writes, so a script written by a model can be edited and narrated as it stands (``--script FILE``).
"""

from __future__ import annotations

import re

from contentmill.errors import InvalidRequest
from contentmill.video.request import Language
from contentmill.video.script import MAX_OWN_SCENES, Script, ScriptScene, caption_from, clean_text, language_problem

_PARAGRAPHS = re.compile(r"\n[ \t]*\n")
_OTHER_LANGUAGE = {"en": "zh", "zh": "en"}


def parse_own_script(text: str, language: Language, title: str) -> Script:
    """The scenes of ``text`` (``title`` unless its first line is ``# Title``); InvalidRequest says what to fix."""
    body = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").strip()
    paragraphs = [part for part in _PARAGRAPHS.split(body) if part.strip()]
    if paragraphs and paragraphs[0].lstrip().startswith("# "):
        first, _, rest = paragraphs[0].lstrip().partition("\n")
        title = clean_text(first[2:]) or title
        paragraphs = [rest, *paragraphs[1:]] if rest.strip() else paragraphs[1:]
    narrations = [narration for part in paragraphs if (narration := clean_text(part))]
    if not narrations:
        raise InvalidRequest("the script has no scenes: write each scene's narration as a paragraph, "
                             "with a blank line between scenes")
    if len(narrations) > MAX_OWN_SCENES:
        raise InvalidRequest(f"the script has {len(narrations)} scenes; at most {MAX_OWN_SCENES} are made "
                             "(join paragraphs: scenes are split by blank lines)")
    for number, narration in enumerate(narrations, 1):
        problem = language_problem(narration, language)
        if problem:
            raise InvalidRequest(f"scene {number} of the script: {problem} (--lang {_OTHER_LANGUAGE[language]} "
                                 "if that is the language you wrote in)")
    scenes = tuple(ScriptScene(narration=text, on_screen_text=caption_from(text, language)) for text in narrations)
    return Script(title=title, language=language, scenes=scenes)


def script_as_text(script: Script) -> str:
    """The script in the format :func:`parse_own_script` reads, ready to edit."""
    return "\n\n".join([f"# {script.title}", *(scene.narration for scene in script.scenes)]) + "\n"
