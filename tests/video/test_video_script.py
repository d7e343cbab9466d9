"""The script step: junk from models is repaired, retried or refused, never passed on to narration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contentmill.errors import MalformedResponse
from contentmill.gateway import Gateway
from contentmill.providers.fake import FakeTextModel
from contentmill.requests import TextRequest
from contentmill.settings import load_settings
from contentmill.video import prompts
from contentmill.video.request import VideoRequest
from contentmill.video.script import UnusableText, caption_from, check_sentence, parse_script
from contentmill.video.writing import FILL, OVERFILL, script_digest, write_script

ZH_SCENES = [
    {"narration": "熊猫每天要花十几个小时吃竹子。", "on_screen_text": "吃个不停"},
    {"narration": "刚出生的熊猫只有一百克左右，比一个苹果还轻。", "on_screen_text": "小小的宝宝"},
    {"narration": "野生大熊猫只生活在中国的山林里。", "on_screen_text": "家在中国"},
]
EN_SCENES = [
    {"narration": "Octopuses have three hearts and blue blood.", "on_screen_text": "Three hearts"},
    {"narration": "Each arm can taste what it touches.", "on_screen_text": "Tasting arms"},
    {"narration": "They change colour in a fraction of a second.", "on_screen_text": "Instant camouflage"},
]


def test_a_clean_json_script_is_read_as_it_is() -> None:
    answer = json.dumps({"title": "Octopuses", "scenes": EN_SCENES})
    script, repairs = parse_script(answer, language="en", topic="octopuses")
    assert script.title == "Octopuses"
    assert [scene.narration for scene in script.scenes] == [scene["narration"] for scene in EN_SCENES]
    assert [scene.on_screen_text for scene in script.scenes] == [
        "Three hearts",
        "Tasting arms",
        "Instant camouflage",
    ]
    assert repairs == []


def test_fences_prose_trailing_commas_and_other_key_names_are_repaired() -> None:
    answer = (
        "Sure! Here is your script:\n```json\n{\n"
        '  "sections": [\n'
        '    {"voiceover": "**Octopuses** have three hearts.", "caption": "Three hearts"},\n'
        '    {"text": "[Upbeat music] Each arm can taste what it touches."},\n'
        '    "Narrator: They change colour in a flash.",\n'
        "  ],\n}\n```\nEnjoy!"
    )
    script, repairs = parse_script(answer, language="en", topic="octopuses")
    assert [scene.narration for scene in script.scenes] == [
        "Octopuses have three hearts.",
        "Each arm can taste what it touches.",
        "They change colour in a flash.",
    ]
    assert script.scenes[0].on_screen_text == "Three hearts"
    assert script.scenes[1].on_screen_text == "Each arm can taste what"  # cut from the narration
    assert script.title == "octopuses"
    assert "title taken from the topic" in repairs and "scenes read from sections" in repairs


def test_more_than_eight_scenes_are_merged_into_the_last() -> None:
    scenes = [{"narration": f"Fact number {n} is here.", "on_screen_text": f"Fact {n}"} for n in range(1, 11)]
    script, repairs = parse_script(json.dumps({"title": "T", "scenes": scenes}), language="en", topic="t")
    assert len(script.scenes) == 8
    assert (
        script.scenes[-1].narration == "Fact number 8 is here. Fact number 9 is here. Fact number 10 is here."
    )
    assert "10 scenes merged into 8" in repairs


@pytest.mark.parametrize(
    ("answer", "language", "reason"),
    [
        ("Sure. clear bright simple useful quiet.", "en", "not a JSON object"),
        ('{"answer": "Sure. clear bright simple useful quiet."}', "en", 'no "scenes" list'),
        (json.dumps({"title": "T", "scenes": EN_SCENES[:2]}), "en", "2 usable scenes"),
        (json.dumps({"title": "T", "scenes": EN_SCENES}), "zh", "not written in Simplified Chinese"),
        (json.dumps({"title": "T", "scenes": ZH_SCENES}), "en", "not written in English"),
    ],
)
def test_unusable_scripts_are_refused_with_the_reason(answer: str, language: str, reason: str) -> None:
    with pytest.raises(UnusableText, match=reason):
        parse_script(answer, language=language, topic="t")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty"),
        ("Octopuses are.", "2 words long"),
        ("Did you know a single octopus can hold 100000000000000000000 cells.", "repeats itself"),
        ("The octopus is is is is a big octopus.", "repeats itself"),
        ("The black hole is a space in which nothing can escape.", "earlier scene"),
        ("Bees visit about two million flowers to make a pound of honey.", "copies an example"),
        ("章鱼有三颗心脏，血液是蓝色的。", "not written in English"),
        ("Octopuses can change the colour of their", "cut off"),
        ("Octopuses live in the ocean, and octopuses live in the ocean.", "twice"),
        ("When big stars collapse at the end of their lives, a black hole is a space where nothing can escape.",
         "twice"),  # a clause of an earlier scene
    ],
)
def test_junk_sentences_are_refused(answer: str, reason: str) -> None:
    examples = list(prompts.ANGLES["en"]["number"].examples)
    earlier = ["A black hole is a space where nothing can escape."]
    with pytest.raises(UnusableText, match=reason):
        check_sentence(answer, "en", earlier=earlier, examples=examples, cut=True)


def test_a_chinese_clause_said_twice_is_refused() -> None:
    with pytest.raises(UnusableText, match="'手冲咖啡起源于德国' twice"):
        check_sentence("手冲咖啡起源于德国，手冲咖啡起源于德国。", "zh", earlier=[], examples=[])
    earlier = ["手冲咖啡需要新鲜的豆子，水温要在九十度左右。"]
    with pytest.raises(UnusableText, match="twice"):
        check_sentence("水温要在九十度左右，然后慢慢注水。", "zh", earlier=earlier, examples=[])
    assert check_sentence("先把滤纸用热水冲湿，再倒入咖啡粉。", "zh", earlier=earlier, examples=[])


def test_a_good_sentence_is_cleaned_capitalised_and_terminated() -> None:
    found = check_sentence(
        'Sentence: "octopuses have three hearts"\nTopic: next', "en", earlier=[], examples=[]
    )
    assert found == "Octopuses have three hearts."
    two = check_sentence(
        "They taste with their arms. They see in colour. They dream.", "en", earlier=[], examples=[]
    )
    assert two == "They taste with their arms. They see in colour."
    assert (
        check_sentence("章鱼有三颗心脏，血液是蓝色的", "zh", earlier=[], examples=[])
        == "章鱼有三颗心脏，血液是蓝色的。"
    )


def _gateway(model: FakeTextModel, tmp_path: Path) -> Gateway:
    return Gateway(load_settings(data_dir=tmp_path), models={model.name: model})


async def test_a_chat_model_gets_the_reason_and_a_second_chance(tmp_path: Path) -> None:
    good = json.dumps({"title": "Octopuses", "scenes": EN_SCENES})
    model = FakeTextModel("fake:text", responses=["Sorry, I cannot help with JSON.", good])
    request = VideoRequest(topic="octopuses", text_model="fake:text", speech_model="fake:speech")
    async with _gateway(model, tmp_path) as gateway:
        written = await write_script(request, gateway)
    assert written.strategy == "json"
    assert len(written.generations) == 2
    retry = model.calls[1]
    assert retry.response_format == "json"
    assert "not a JSON object" in retry.messages[-1].content  # the model is told what was wrong
    assert retry.messages[-2].content == "Sorry, I cannot help with JSON."


FACTS = [
    "Octopuses have three hearts and blue blood.",
    "Each arm can taste whatever it touches.",
    "Camouflage takes them a fraction of a second.",
    "A giant Pacific octopus may weigh fifty kilograms.",
    "Some carry coconut shells around as portable shelters.",
    "Mothers guard their eggs for months without eating.",
    "Their brains wrap around the throat like a doughnut.",
    "Escaping through any gap bigger than the beak is easy.",
]


async def test_a_chat_model_without_usable_json_writes_scene_by_scene(tmp_path: Path) -> None:
    angles = prompts.angles_for(20, "en")
    by_angle = {angle.prompt: fact for angle, fact in zip(angles, FACTS, strict=False)}

    def answer(request: TextRequest) -> str:
        if request.response_format == "json":
            return '{"answer": "I am not going to follow your schema."}'
        return by_angle[request.messages[-1].content.split("Angle: ")[1].split("\n")[0]]

    model = FakeTextModel("fake:text", responses=answer)
    request = VideoRequest(topic="octopuses", seconds=20, text_model="fake:text", speech_model="fake:speech")
    async with _gateway(model, tmp_path) as gateway:
        written = await write_script(request, gateway)
    assert written.strategy == "scenes"
    assert len(written.generations) == 2 + len(angles)
    # each scene's title says what the scene says, not which angle it was written from
    captions = [caption_from(fact, "en") for fact in FACTS[: len(angles)]]
    assert [scene.on_screen_text for scene in written.script.scenes] == captions
    assert written.script.scenes[0].on_screen_text == "Octopuses have three hearts"
    assert [scene.narration for scene in written.script.scenes] == FACTS[: len(angles)]


async def test_a_base_model_is_prompted_scene_by_scene_and_junk_is_sampled_again(tmp_path: Path) -> None:
    facts = iter(FACTS)

    def answer(request: TextRequest) -> str:
        assert request.prompt is not None and request.prompt.endswith("Sentence:")
        assert request.stop == ("\n",)
        if request.seed == 0:
            return " 1111111111111111111111111111"  # greedy decoding degenerated: sampled again
        return f" {next(facts)}\nTopic: more"

    model = FakeTextModel("local:gemma-3-270m", responses=answer)
    request = VideoRequest(topic="octopuses", seconds=15, text_model=model.name, speech_model="fake:speech")
    async with _gateway(model, tmp_path) as gateway:
        written = await write_script(request, gateway)
    assert written.strategy == "scenes"
    assert written.script.title == "Octopuses"
    assert all(call.prompt is not None and not call.messages for call in model.calls)
    assert [call.temperature for call in model.calls if call.seed == 0] == [0.0, 0.0, 0.0]
    assert all(call.temperature > 0 for call in model.calls if call.seed != 0)
    # a sentence for each scene first, then more, shortest scene first, until the words fill the time asked
    assert [scene.narration for scene in written.script.scenes] == [
        f"{FACTS[0]} {FACTS[3]}", f"{FACTS[1]} {FACTS[4]}", FACTS[2]
    ]
    words = sum(len(scene.narration.split()) for scene in written.script.scenes)
    budget = prompts.spoken_budget(15, "en", "fake:speech")
    assert FILL * budget <= words <= OVERFILL * budget
    assert len(model.calls) == 8  # three junk answers, five sentences


async def test_a_base_model_that_writes_only_junk_fails_the_step(tmp_path: Path) -> None:
    model = FakeTextModel("local:gemma-3-270m", responses=["The octopus is is is is is is a big octopus."])
    request = VideoRequest(
        topic="octopuses", seconds=15, text_model="local:gemma-3-270m", speech_model="fake:speech"
    )
    async with _gateway(model, tmp_path) as gateway:
        with pytest.raises(MalformedResponse, match="usable scenes"):
            await write_script(request, gateway)


def test_the_script_address_leaves_out_what_the_script_does_not_depend_on() -> None:
    base = VideoRequest(topic="octopuses", text_model="fake:text", speech_model="fake:speech")
    same = [
        base.model_copy(update={"voice": "nova"}),
        base.model_copy(update={"speech_model": "openai:tts-1"}),
        base.model_copy(
            update={"fps": 10, "resolution": 480, "orientation": "landscape", "tags": {"team": "a"}}
        ),
    ]
    different = [
        base.model_copy(update={"topic": "squid"}),
        base.model_copy(update={"language": "zh"}),
        base.model_copy(update={"seconds": 60}),
        base.model_copy(update={"style": "playful"}),
        base.model_copy(update={"text_model": "openai:gpt-4o-mini"}),
    ]
    assert {script_digest(request) for request in same} == {script_digest(base)}
    assert len({script_digest(request) for request in different} | {script_digest(base)}) == 6


async def test_a_base_model_sentence_off_the_topic_or_repeated_is_asked_again_and_the_script_is_a_draft(
    tmp_path: Path,
) -> None:
    off_topic = "Bees dance in a figure eight to show their sisters where the flowers are."
    repeated = "Octopuses have three blue hearts and their blood is blue."
    answers = iter([FACTS[0], off_topic, FACTS[3], repeated, FACTS[6]])

    def answer(request: TextRequest) -> str:
        return f" {next(answers)}"

    model = FakeTextModel("local:gemma-3-270m", responses=answer)
    request = VideoRequest(topic="octopuses", seconds=10, text_model=model.name, speech_model="fake:speech")
    async with _gateway(model, tmp_path) as gateway:
        written = await write_script(request, gateway)
    assert [scene.narration for scene in written.script.scenes] == [FACTS[0], FACTS[3], FACTS[6]]
    assert len(model.calls) == 5  # the bees and the second three hearts were each asked again once
    assert written.script.draft  # a small local model wrote it from the topic alone
    assert [scene.on_screen_text for scene in written.script.scenes] == [
        "Octopuses have three hearts", "A giant Pacific octopus", "Their brains wrap around the throat"
    ]


async def test_a_chinese_base_model_sentence_about_an_examples_topic_is_asked_again(tmp_path: Path) -> None:
    answers = iter(["互联网起源于二十世纪六十年代末的一个科研网络。", "手冲咖啡要用九十度左右的热水慢慢注入。",
                    "咖啡豆最好在冲泡前现磨，香气更足。", "滤纸先用热水冲湿，可以去掉纸味。"])

    def answer(request: TextRequest) -> str:
        return next(answers)

    model = FakeTextModel("local:gemma-3-270m", responses=answer)
    request = VideoRequest(topic="手冲咖啡", language="zh", seconds=10, text_model=model.name,
                           speech_model="fake:speech")
    async with _gateway(model, tmp_path) as gateway:
        written = await write_script(request, gateway)
    narrations = [scene.narration for scene in written.script.scenes]
    assert not any("互联网" in narration for narration in narrations) and len(model.calls) == 4
    assert narrations[0] == "手冲咖啡要用九十度左右的热水慢慢注入。"


async def test_a_chat_models_script_far_from_the_length_asked_is_sent_back_once(tmp_path: Path) -> None:
    short = json.dumps({"title": "Octopuses", "scenes": EN_SCENES})  # 23 words, where 30 s take 75
    longer = json.dumps({"title": "Octopuses", "scenes": [
        {"narration": " ".join([scene["narration"]] * 3), "on_screen_text": scene["on_screen_text"]}
        for scene in EN_SCENES
    ]})  # 69 words: the second answer is taken as it is
    model = FakeTextModel("fake:text", responses=[short, longer])
    request = VideoRequest(topic="octopuses", seconds=30, text_model="fake:text", speech_model="fake:speech")
    async with _gateway(model, tmp_path) as gateway:
        written = await write_script(request, gateway)
    assert "23 words long; 30 seconds take about 75 words: make it longer" in model.calls[1].messages[-1].content
    assert written.strategy == "json" and written.script.scenes[0].narration.startswith(EN_SCENES[0]["narration"])
