"""Prompts of the script step: one JSON request for chat models, and scene-by-scene prompts for base models.

A base model (the embedded Gemma 3 270M) continues text rather than following instructions, and cannot be
trusted to keep a JSON shape, so the code fixes the structure: each scene looks at the topic from one angle
(what it is, a number, how it works...), shown as the slide's caption, and the model only writes that scene's
sentence, prompted with worked examples of the same angle. A chat model is asked the same per scene when its
JSON cannot be used.
"""

from __future__ import annotations

from dataclasses import dataclass

from contentmill.requests import TextRequest
from contentmill.video.request import Language
from contentmill.video.script import MAX_SCENES, MIN_SCENES

PROMPT_VERSION = 1  # part of the script's address: bump it when a prompt changes what gets written
WORDS_PER_SECOND = {"en": 2.5, "zh": 4.0}  # spoken pace of speech APIs (Chinese counted in characters)
# Engines whose pace is known, measured from their audio with the pauses between sentences: espeak-ng at its
# default rate says 3.2 of Gemma's words and 4.2 Chinese characters a second.
ENGINE_PACE = {"local:espeak-ng": {"en": 3.2, "zh": 4.2}}
WORDS_PER_SENTENCE = {"en": 10, "zh": 16}  # about what a base model's one sentence holds
SECONDS_PER_SCENE = 5.0  # one or two sentences a slide
EXAMPLE_TOPICS = {"en": ("honey bees", "volcanoes", "the internet"), "zh": ("蜜蜂", "火山", "互联网")}


@dataclass(frozen=True, slots=True)
class Angle:
    """One way to look at a topic: how the prompt names it, the slide's caption, three worked examples."""

    prompt: str
    caption: str
    examples: tuple[str, str, str]  # one per EXAMPLE_TOPICS entry of the language


ANGLES: dict[Language, dict[str, Angle]] = {
    "en": {
        "intro": Angle(
            "what it is",
            "What it is",
            (
                "Honey bees are small insects that turn flower nectar into honey.",
                "A volcano is an opening where melted rock escapes from deep inside the Earth.",
                "The internet is a huge network that links billions of computers.",
            ),
        ),
        "number": Angle(
            "a number to remember",
            "By the numbers",
            (
                "Bees visit about two million flowers to make a single pound of honey.",
                "Fresh lava can be hotter than one thousand degrees Celsius.",
                "More than five billion people use the internet every day.",
            ),
        ),
        "how": Angle(
            "how it works",
            "How it works",
            (
                "A bee shows its sisters where food is by dancing in a figure eight.",
                "Gas trapped in melted rock pushes upward until the mountain bursts open.",
                "Your message is cut into small packets that travel separately and meet again at the end.",
            ),
        ),
        "surprise": Angle(
            "a surprising fact",
            "Surprising but true",
            (
                "A queen bee can lay up to two thousand eggs in a single day.",
                "Some volcanoes erupt under the sea and build new islands.",
                "The first message ever sent over the internet crashed the network after two letters.",
            ),
        ),
        "history": Angle(
            "its history",
            "A bit of history",
            (
                "People have kept bees for honey for at least nine thousand years.",
                "In the year 79, Mount Vesuvius buried the Roman city of Pompeii in ash.",
                "The internet grew from a small research network built in the late nineteen sixties.",
            ),
        ),
        "everyday": Angle(
            "where we meet it every day",
            "In everyday life",
            (
                "Apples, almonds and coffee all need bees to carry their pollen.",
                "Volcanic rock is crushed into the gravel of many roads and paths.",
                "Every video call, map and online payment travels over the internet.",
            ),
        ),
        "tip": Angle(
            "one thing to try",
            "Try this",
            (
                "Plant a few flowers on your balcony and bees will come to visit.",
                "Look up the nearest volcano on a map and read when it last erupted.",
                "Turn off your phone's wifi for an hour and notice how often you reach for it.",
            ),
        ),
        "matters": Angle(
            "why it matters",
            "Why it matters",
            (
                "About a third of the food we eat depends on pollinators like bees.",
                "Volcanoes build new islands and leave behind rich, fertile soil.",
                "The internet lets anyone learn, work and talk with people across the world.",
            ),
        ),
    },
    "zh": {
        "intro": Angle(
            "是什么",
            "认识一下",
            (
                "蜜蜂是一种把花蜜变成蜂蜜的小昆虫。",
                "火山是地下熔岩冲出地面的出口。",
                "互联网是连接几十亿台电脑的巨大网络。",
            ),
        ),
        "number": Angle(
            "一个数字",
            "数字说话",
            (
                "蜜蜂要采大约两百万朵花，才能酿出一斤蜂蜜。",
                "刚喷出的岩浆温度可以超过一千摄氏度。",
                "每天有五十多亿人使用互联网。",
            ),
        ),
        "how": Angle(
            "怎么运作",
            "原理",
            (
                "蜜蜂用跳舞的方式告诉同伴花在哪里。",
                "岩浆里的气体不断向上推，最后冲破山顶。",
                "你发出的消息被切成小数据包，分头出发，在终点重新拼好。",
            ),
        ),
        "surprise": Angle(
            "一个惊人的事实",
            "没想到吧",
            (
                "一只蜂王一天最多能产两千个卵。",
                "有些火山在海底喷发，慢慢堆出新的岛屿。",
                "互联网上发出的第一条消息，只传了两个字母网络就崩溃了。",
            ),
        ),
        "history": Angle(
            "它的历史",
            "历史",
            (
                "人类养蜂取蜜已经有至少九千年的历史。",
                "公元七十九年，维苏威火山的火山灰掩埋了庞贝城。",
                "互联网起源于二十世纪六十年代末的一个小型科研网络。",
            ),
        ),
        "everyday": Angle(
            "日常生活中",
            "身边的它",
            (
                "苹果、杏仁和咖啡都要靠蜜蜂传粉。",
                "很多道路里的碎石，就是压碎的火山岩。",
                "每一次视频通话、地图导航和网上支付都离不开互联网。",
            ),
        ),
        "tip": Angle(
            "试一试",
            "试一试",
            (
                "在阳台上种几盆花，蜜蜂就会来做客。",
                "在地图上找找离你最近的火山，看看它上次是什么时候喷发的。",
                "关掉手机网络一个小时，看看自己会多少次想去拿手机。",
            ),
        ),
        "matters": Angle(
            "为什么重要",
            "为什么重要",
            (
                "我们吃的食物大约有三分之一依靠蜜蜂等传粉昆虫。",
                "火山造出新的岛屿，也留下肥沃的土壤。",
                "互联网让每个人都能学习、工作，并和世界各地的人交流。",
            ),
        ),
    },
}
_LABELS = {
    "en": (
        "Facts for short narrated videos, one clear spoken sentence each.",
        "Topic: ",
        "Angle: ",
        "Sentence: ",
    ),
    "zh": ("短视频的知识点，每条一句清楚的口语。", "主题：", "角度：", "句子："),
}
_MIDDLE = ("number", "how", "surprise", "history", "everyday", "tip")
_LANGUAGE_NAME = {"en": "English", "zh": "Simplified Chinese"}


def scene_count(seconds: int) -> int:
    return max(MIN_SCENES, min(MAX_SCENES, round(seconds / SECONDS_PER_SCENE)))


def angles_for(seconds: int, language: Language) -> list[Angle]:
    """The scenes' angles for a video of ``seconds``: an introduction, middle angles, why it matters."""
    count = scene_count(seconds)
    table = ANGLES[language]
    return [table["intro"], *(table[key] for key in _MIDDLE[: count - 2]), table["matters"]]


def spoken_budget(seconds: int, language: Language, speech_model: str | None = None) -> int:
    """Words (characters for Chinese) that take about ``seconds`` to say with ``speech_model``."""
    return round(seconds * ENGINE_PACE.get(speech_model or "", WORDS_PER_SECOND)[language])


def script_title(topic: str, language: Language) -> str:
    return topic if language == "zh" else topic[:1].upper() + topic[1:]


# -- chat models: the whole script as JSON --------------------------------------------------------------

CAPTION_LIMIT = {"en": "six words", "zh": "twelve characters"}
_JSON_SHAPE = '{"title": "...", "scenes": [{"narration": "...", "on_screen_text": "..."}]}'


def json_script_request(topic: str, language: Language, seconds: int, style: str, source: str | None = None,
                        speech_model: str | None = None) -> TextRequest:
    """Ask a chat model for the whole script as one JSON object (from ``source`` alone, when given)."""
    budget = spoken_budget(seconds, language, speech_model)
    unit = "characters" if language == "zh" else "words"
    system = (
        "You write scripts for short narrated videos. Answer with one JSON object and nothing else, shaped "
        f"like {_JSON_SHAPE}. Write {MIN_SCENES} to {MAX_SCENES} scenes (about {scene_count(seconds)}). "
        "'narration' is what the voice says: one or two plain spoken sentences per scene, no stage "
        "directions, no emoji, no markdown. 'on_screen_text' is a caption of at most "
        f"{CAPTION_LIMIT[language]} shown on the slide. Write everything in {_LANGUAGE_NAME[language]}; "
        f"the narration of all scenes together is about {budget} {unit}."
    )
    user = f"Topic: {topic}\nStyle: {style}\nLength: about {seconds} seconds"
    if source is not None:
        system += (" Take every fact from the source the user gives and nothing else: each number and name you "
                   "write must appear in the source. Leave out what the source does not say.")
        user += f"\n\nSource:\n{source.strip()}"
    return TextRequest.chat(user, system=system, max_tokens=256 + 4 * budget, response_format="json")


def json_retry_note(problem: str) -> str:
    return f"That answer cannot be used: {problem}. Reply again with only the JSON object described above."


# -- one scene at a time --------------------------------------------------------------------------------


def completion_prompt(topic: str, angle: Angle, language: Language) -> str:
    """A few-shot prompt a base model continues with one sentence (generation stops at the newline)."""
    head, topic_label, angle_label, line_label = _LABELS[language]
    shots = [
        f"{topic_label}{example_topic}\n{angle_label}{angle.prompt}\n{line_label}{example}"
        for example_topic, example in zip(EXAMPLE_TOPICS[language], angle.examples, strict=True)
    ]
    last = f"{topic_label}{topic}\n{angle_label}{angle.prompt}\n{line_label}".rstrip()
    return "\n\n".join([head, *shots, last])


def chat_scene_request(topic: str, angle: Angle, language: Language, style: str, words: int) -> TextRequest:
    """Ask a chat model for one scene's narration as plain text."""
    unit = "characters" if language == "zh" else "words"
    system = "You write the narration of one scene of a short narrated video. Reply with the narration only."
    user = (
        f"Topic: {topic}\nAngle: {angle.prompt}\nStyle: {style}\n"
        f"Write one or two spoken sentences in {_LANGUAGE_NAME[language]} about the topic from this angle, "
        f"at most {words} {unit}, with no quotes, labels or stage directions."
    )
    return TextRequest.chat(user, system=system, max_tokens=32 + 3 * words)
