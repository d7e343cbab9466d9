"""A video request with parameters out of range says what to fix in one line; ``contentmill video`` prints it on
stderr and exits 1, with no traceback, before any Prefect API or model is started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contentmill.commands.video import PRESETS
from contentmill.errors import InvalidRequest
from contentmill.video.publish import slug
from contentmill.video.request import VideoRequest

CLI = Path(__file__).with_name("cli_app.py")


@pytest.mark.parametrize(("args", "said"), [
    (("t" * 201,), "a topic is at most 200 characters (this one has 201)"),
    (("octopuses", "--edit-scene", "0=Eight arms."), "scenes are numbered from 1 (got 0)"),
    (("octopuses", "--script", "no-such-script.txt"), "--script no-such-script.txt: no such file"),
    (("octopuses", "--source", "/"), "--source /: cannot be read (Is a directory)"),
    (("octopuses", "--footage"), "--footage needs a Pexels API key: set CONTENTMILL_PEXELS_API_KEY (free at "
                                 "https://www.pexels.com/api/)"),
    (("octopuses", "--image-model", "gpt-image-1"),
     "the image model is named as provider:model, e.g. openai:gpt-4o-mini (got 'gpt-image-1')"),
])
def test_the_command_says_what_to_fix_in_one_line(args: tuple[str, ...], said: str, data_dir: Path) -> None:
    done = subprocess.run([sys.executable, str(CLI), "video", *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"contentmill: {said}\n")


@pytest.mark.parametrize(("fields", "said"), [
    ({"topic": "   "}, "a topic must not be blank"),
    ({"topic": "x", "voice": ""}, "a voice name must not be empty"),
    ({"topic": "x", "style": "s" * 201}, "a style is at most 200 characters (this one has 201)"),
    ({"topic": "x", "seconds": 5, "fps": 61}, "the length in seconds is at least 10 (got 5); "
                                              "the frame rate is at most 60 (got 61)"),
    ({"topic": "x", "resolution": 500}, "the resolution is 480, 720 or 1080 (got 500)"),
    ({"topic": "x", "text_model": "gpt-4o"}, "the text model is named as provider:model, e.g. openai:gpt-4o-mini "
                                             "(got 'gpt-4o')"),
    ({"topic": "x", "scene_edits": {2: " "}}, "the new narration of scene 2 is blank"),
])
def test_each_problem_names_the_parameter_and_its_limit(fields: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        VideoRequest.checked(**fields)
    assert str(raised.value) == said


def test_folders_of_chinese_topics_are_named_in_pinyin() -> None:
    assert slug("手冲咖啡") == "shou-chong-ka-fei"
    assert slug("大熊猫 Pandas!") == "da-xiong-mao-pandas"
    assert slug("How bees dance") == "how-bees-dance" and slug("🐙") == "video"


@pytest.mark.parametrize(("preset", "size"), [("douyin", (1080, 1920)), ("tiktok", (1080, 1920)),
                                              ("shorts", (1080, 1920)), ("bilibili", (1920, 1080))])
def test_a_platform_preset_gives_the_platforms_frame(preset: str, size: tuple[int, int]) -> None:
    request = VideoRequest.checked(topic="octopuses", **PRESETS[preset])
    assert request.size == size and request.fps == 30
