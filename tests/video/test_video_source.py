"""Scripts from the creator's notes (``--source``): the local model's script is the notes' own sentences, picked by
meaning; a chat model's scene is accepted only when its numbers and names are the notes'."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contentmill.errors import InvalidRequest
from contentmill.gateway import Gateway
from contentmill.providers.fake import FakeTextModel
from contentmill.requests import TextRequest
from contentmill.settings import load_settings
from contentmill.video import VideoRequest, prompts
from contentmill.video.grounding import read_notes, spoken_size, unsupported
from contentmill.video.writing import script_digest, write_script

NOTES = """# Octopus notes

Octopuses have three hearts: two pump blood through the gills and one through the body.
Their blood is blue because it carries oxygen with copper instead of iron.

## Arms
- Each of the eight arms holds about two thirds of the animal's neurons.
- An arm can taste what it touches with the chemical receptors in its suckers.
- See [the aquarium's page](https://example.org/octopus) for photos.

The giant Pacific octopus can weigh 50 kilograms and live for about 5 years.
Volcanoes are openings where melted rock escapes from deep inside the Earth.
Most octopuses live for only one or two years, and females die after their eggs hatch.
```
print("not a sentence")
```
Honey bees turn flower nectar into honey and dance to show where food is.
"""


def _plain(text: str) -> str:
    """Text to match sentences in: links as their text, lower case, letters, digits and single spaces."""
    unlinked = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^a-z0-9 ]", "", " ".join(unlinked.lower().split()))


def test_notes_are_read_as_sentences_without_markup() -> None:
    notes = read_notes(NOTES, "en")
    assert notes.title == "Octopus notes"
    assert "An arm can taste what it touches with the chemical receptors in its suckers." in notes.sentences
    assert "Each of the eight arms holds about two thirds of the animal's neurons." in notes.sentences  # a bullet
    assert not any("aquarium" in sentence for sentence in notes.sentences)  # about the notes, not the topic
    assert not any("print" in sentence or "#" in sentence for sentence in notes.sentences)


def test_numbers_and_names_the_source_lacks_are_found() -> None:
    assert unsupported("The giant Pacific octopus can weigh 50 kilograms.", NOTES) == []
    assert unsupported("A giant Pacific octopus weighs 70 kilograms, says Jacques Cousteau.", NOTES) == [
        "70", "Jacques", "Cousteau"
    ]


async def test_a_local_model_script_is_the_sources_own_sentences_about_the_topic(tmp_path: Path) -> None:
    request = VideoRequest(topic="octopuses", seconds=20, source=NOTES, text_model="local:gemma-3-270m",
                           speech_model="fake:speech")
    async with Gateway(load_settings(data_dir=tmp_path)) as gateway:  # the embedded Gemma is never called
        written = await write_script(request, gateway)
    assert written.strategy == "source" and written.generations == [] and not written.script.draft
    assert written.script.title == "Octopus notes"
    said = [sentence for scene in written.script.scenes for sentence in re.split(r"(?<=\.) ", scene.narration)]
    source = _plain(NOTES)
    assert all(_plain(sentence) in source for sentence in said)  # every sentence can be matched to the source
    assert not any("Volcanoes" in sentence or "bees" in sentence for sentence in said)  # off the topic: left out
    order = [_plain(NOTES).index(_plain(sentence)) for sentence in said]
    assert order == sorted(order)  # in the order the notes tell it
    budget = prompts.spoken_budget(20, "en")
    assert budget * 0.6 <= sum(spoken_size(sentence, "en") for sentence in said) <= budget * 1.1


async def test_a_chat_model_scene_with_a_number_not_in_the_source_is_sent_back(tmp_path: Path) -> None:
    def script(weight: str) -> str:
        scenes = [
            {"narration": "Octopuses have three hearts.", "on_screen_text": "Three hearts"},
            {"narration": f"The giant Pacific octopus can weigh {weight} kilograms.", "on_screen_text": "Heavy"},
            {"narration": "Their blood is blue.", "on_screen_text": "Blue blood"},
        ]
        return json.dumps({"title": "Octopuses", "scenes": scenes})

    model = FakeTextModel("fake:text", responses=[script("70"), script("50")])
    request = VideoRequest(topic="octopuses", source=NOTES, text_model="fake:text", speech_model="fake:speech")
    async with Gateway(load_settings(data_dir=tmp_path), models={"fake:text": model}) as gateway:
        written = await write_script(request, gateway)
    first: TextRequest = model.calls[0]
    assert "Take every fact from the source" in first.messages[0].content and NOTES.strip() in first.messages[1].content
    assert "scene 2 says 70, which the source does not" in model.calls[1].messages[-1].content
    assert written.strategy == "json" and "50 kilograms" in written.script.scenes[1].narration


def test_the_source_is_part_of_the_scripts_address_and_must_have_sentences() -> None:
    base = VideoRequest(topic="octopuses", text_model="fake:text", speech_model="fake:speech")
    assert script_digest(base) != script_digest(base.model_copy(update={"source": NOTES}))
    assert script_digest(base.model_copy(update={"source": NOTES})) != script_digest(
        base.model_copy(update={"source": NOTES + "\nOne more line about octopus arms."}))
    with pytest.raises(InvalidRequest, match="the source notes is empty"):
        VideoRequest.checked(topic="octopuses", source="  \n")


ZH_NOTES = """# 手冲咖啡笔记

手冲咖啡要用九十二度左右的热水，慢慢注入研磨好的咖啡粉。
先用热水把滤纸冲湿，可以去掉纸的味道，也能预热滤杯。
蜜蜂用跳舞的方式告诉同伴花在哪里，再一起飞过去采蜜。
咖啡豆最好在冲泡前现磨，研磨度像细砂糖一样。
第一次注水后等三十秒，让咖啡粉充分闷蒸，释放二氧化碳。
"""


async def test_a_chinese_source_gives_its_own_sentences_about_the_topic(tmp_path: Path) -> None:
    request = VideoRequest(topic="手冲咖啡", language="zh", seconds=15, source=ZH_NOTES,
                           text_model="local:gemma-3-270m", speech_model="local:espeak-ng")
    async with Gateway(load_settings(data_dir=tmp_path)) as gateway:
        written = await write_script(request, gateway)
    said = [part + "。" for scene in written.script.scenes for part in scene.narration.split("。") if part]
    assert said and all(sentence in ZH_NOTES for sentence in said)  # each sentence is the notes' own
    assert not any("蜜蜂" in sentence for sentence in said)  # not about the topic: left out
    assert written.script.title == "手冲咖啡笔记"
