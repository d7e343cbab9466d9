"""The library pipeline end to end on real engines: a Chinese video with the embedded Mandarin voice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contentmill.gateway import Gateway
from contentmill.media import audio_duration, parse_srt, probe
from contentmill.providers.fake import FakeTextModel
from contentmill.settings import load_settings
from contentmill.storage import LocalStore
from contentmill.video import VideoRequest, make_video

pytestmark = pytest.mark.slow

ZH_SCENES = [
    {"narration": "大熊猫每天要花十几个小时吃竹子。", "on_screen_text": "吃个不停"},
    {"narration": "刚出生的熊猫宝宝只有一百克左右，比一个苹果还轻。", "on_screen_text": "小小的宝宝"},
    {"narration": "野生大熊猫只生活在中国西南的山林里。", "on_screen_text": "家在中国"},
]
ZH_SCRIPT = json.dumps({"title": "大熊猫的一天", "scenes": ZH_SCENES}, ensure_ascii=False)


def _request() -> VideoRequest:
    return VideoRequest(
        topic="大熊猫",
        language="zh",
        seconds=15,
        text_model="fake:text",
        speech_model="local:espeak-ng",
        resolution=480,
        fps=10,
    )


async def test_a_chinese_topic_becomes_a_video_with_chinese_subtitles(data_dir: Path) -> None:
    settings = load_settings()
    model = FakeTextModel("fake:text", responses=[ZH_SCRIPT])
    store = LocalStore(data_dir / "store")
    async with Gateway(settings, models={"fake:text": model}) as gateway:
        result = await make_video(_request(), settings=settings, gateway=gateway, store=store)

    info = probe(result.video)
    (video,) = info.of_kind("video")
    (audio,) = info.of_kind("audio")
    assert (video.codec, video.width, video.height) == ("h264", 480, 854)
    assert audio.codec == "aac"
    narration_s = sum(audio_duration(path) for path in result.audio)
    assert len(result.audio) == 3
    assert info.duration_s is not None and abs(info.duration_s - narration_s) <= 0.5
    assert result.narration_s == pytest.approx(narration_s, abs=0.01)

    srt = Path(result.srt).read_text(encoding="utf-8")
    shown = "".join("".join(cue.lines) for cue in parse_srt(srt))
    assert shown == "".join(scene["narration"] for scene in ZH_SCENES)
    assert parse_srt(srt)[-1].end_s == pytest.approx(narration_s, abs=0.01)

    script = json.loads(Path(result.script).read_text(encoding="utf-8"))
    assert script["title"] == "大熊猫的一天" and script["language"] == "zh"
    assert result.folder.startswith("videos/da-xiong-mao-")  # a Chinese topic's folder in pinyin
    assert result.steps["script"].model == "fake:text" and result.steps["script"].calls == 1
    assert result.steps["narration"].model == "local:espeak-ng" and result.steps["narration"].calls == 3


async def test_the_same_request_again_makes_no_call_and_renders_nothing(data_dir: Path) -> None:
    settings = load_settings()
    model = FakeTextModel("fake:text", responses=[ZH_SCRIPT])
    store = LocalStore(data_dir / "store")
    async with Gateway(settings, models={"fake:text": model}) as gateway:
        first = await make_video(_request(), settings=settings, gateway=gateway, store=store)
        video_bytes = Path(first.video).read_bytes()
        again = await make_video(_request(), settings=settings, gateway=gateway, store=store)
    assert len(model.calls) == 1
    assert all(report.cached for report in again.steps.values())
    assert again.cost_usd == 0 and again.video == first.video
    assert Path(again.video).read_bytes() == video_bytes
