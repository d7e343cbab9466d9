"""The embedded espeak-ng engine, driven for real: its WAVs are read back by ``wave`` and decoded by ffmpeg."""

from __future__ import annotations

import array
import asyncio
import io
import math
import subprocess
import sys
import wave
from pathlib import Path

import imageio_ffmpeg
import pytest

from contentmill.errors import EngineError
from contentmill.metering import Usage
from contentmill.providers.base import SpeechModel, SpeechResult
from contentmill.providers.espeak import EspeakSpeechModel
from contentmill.providers.word_marks import word_marks
from contentmill.requests import SpeechRequest

EN = "Every product page needs a short and clear description. This one is read aloud by the embedded engine."
ZH = "每个产品页面都需要一段简短清晰的介绍。这段话由内置的语音引擎朗读。"
SAMPLE_RATE = 22050


@pytest.fixture
def model() -> EspeakSpeechModel:
    return EspeakSpeechModel()


def _pcm(result: SpeechResult) -> tuple[bytes, int]:
    """The samples of a mono 16-bit 22,050 Hz WAV and its frame count, as the header states them."""
    with wave.open(io.BytesIO(result.audio), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, SAMPLE_RATE)
        frames = reader.getnframes()
        pcm = reader.readframes(frames)
    assert len(pcm) == frames * 2
    return pcm, frames


def _rms(pcm: bytes) -> float:
    samples = array.array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return math.sqrt(math.fsum(s * s for s in samples) / len(samples))


def _ffmpeg_seconds(path: Path) -> float:
    """Decode the whole file with ffmpeg; it must succeed silently. Returns the decoded duration."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path)]
    done = subprocess.run(
        [*command, "-f", "null", "-", "-progress", "pipe:1"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    times = [line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("out_time_us=")]
    assert "progress=end" in done.stdout
    return int(times[-1]) / 1_000_000


def test_is_the_local_speech_model(model: EspeakSpeechModel) -> None:
    assert isinstance(model, SpeechModel)
    assert model.name == "local:espeak-ng"


@pytest.mark.parametrize(
    ("text", "language", "voice", "spoken_by"),
    [
        (EN, "en", "default", "en-us"),
        (ZH, "zh", "default", "cmn"),
        (ZH, "en", "cmn", "cmn"),
        (EN, "en", "en+f3", "en+f3"),
    ],
)
async def test_speech_is_a_complete_playable_wav(
    model: EspeakSpeechModel, tmp_path: Path, text: str, language: str, voice: str, spoken_by: str
) -> None:
    result = await model.synthesize(SpeechRequest(text, voice=voice, language=language))

    pcm, frames = _pcm(result)
    assert result.sample_rate == SAMPLE_RATE
    assert result.duration_s == frames / SAMPLE_RATE
    assert result.duration_s > 2.0  # two sentences take seconds to say
    assert result.usage == Usage(characters=len(text), seconds=result.duration_s)
    assert result.model == "local:espeak-ng"
    assert {key: result.meta[key] for key in ("voice", "rate_wpm")} == {"voice": spoken_by, "rate_wpm": 175}
    assert _rms(pcm) > 500  # speech, not silence (full scale is 32767)
    said = result.meta["words"]  # where espeak-ng starts each word, which the WAV carries as cue points
    marked = word_marks(result.audio, text)
    assert [(mark.start, mark.end) for mark in marked] == [(word.start, word.end) for word in said]
    assert [mark.at_s for mark in marked] == pytest.approx([word.at_s for word in said], abs=1 / SAMPLE_RATE)
    if text == EN:  # whole words in order (espeak-ng says "This one" as one word: "one" has no mark)
        words = text.replace(".", "").split()
        assert [text[mark.start:mark.end] for mark in marked] == [word for word in words if word != "one"]
    assert 0 == marked[0].at_s < marked[-1].at_s < result.duration_s

    path = tmp_path / "speech.wav"
    path.write_bytes(result.audio)
    assert _ffmpeg_seconds(path) == pytest.approx(result.duration_s, abs=0.002)


@pytest.mark.parametrize(("language", "expected"), [("en-GB", "en"), ("zh-CN", "cmn"), ("fr-FR", "fr")])
async def test_default_voice_follows_the_language_tag(model: EspeakSpeechModel, language: str, expected: str) -> None:
    result = await model.synthesize(SpeechRequest("Hello, 你好, bonjour.", language=language))
    assert result.meta["voice"] == expected
    assert _rms(_pcm(result)[0]) > 500


@pytest.mark.parametrize(("language", "sentence"), [("en", EN.split(". ")[0] + "."), ("zh", ZH.split("。")[0])])
async def test_longer_text_gives_longer_audio(model: EspeakSpeechModel, language: str, sentence: str) -> None:
    short = await model.synthesize(SpeechRequest(sentence, language=language))
    long = await model.synthesize(SpeechRequest(" ".join([sentence] * 3), language=language))
    assert long.duration_s > 2 * short.duration_s
    assert long.usage.characters > short.usage.characters


@pytest.mark.parametrize("language", ["en", "zh"])
async def test_faster_speed_gives_shorter_audio(model: EspeakSpeechModel, language: str) -> None:
    text = EN if language == "en" else ZH
    results = [await model.synthesize(SpeechRequest(text, language=language, speed=s)) for s in (0.5, 1.0, 2.0)]
    slow, normal, fast = (r.duration_s for r in results)
    assert [r.meta["rate_wpm"] for r in results] == [88, 175, 350]
    assert slow > 1.4 * normal
    assert fast < 0.7 * normal


async def test_speed_below_the_engine_minimum_speaks_at_80_wpm(model: EspeakSpeechModel) -> None:
    slowest = await model.synthesize(SpeechRequest(EN, speed=0.25))
    slow = await model.synthesize(SpeechRequest(EN, speed=0.5))
    assert slowest.meta["rate_wpm"] == 80
    assert slowest.duration_s > slow.duration_s


async def test_concurrent_calls_match_serial_results(model: EspeakSpeechModel) -> None:
    requests = [
        SpeechRequest(EN.split(". ")[0] + "."),
        SpeechRequest(EN),
        SpeechRequest(EN, speed=1.6),
        SpeechRequest(ZH.split("。")[0], language="zh"),
        SpeechRequest(ZH, language="zh"),
        SpeechRequest(EN + " " + EN, voice="en+m3"),
    ]
    serial = [await model.synthesize(request) for request in requests]
    durations = sorted(r.duration_s for r in serial)
    assert all(b > 1.05 * a for a, b in zip(durations, durations[1:], strict=False))  # a mix-up would show

    concurrent = await asyncio.gather(*(model.synthesize(request) for request in requests * 2))

    for request, alone, together in zip(requests * 2, serial * 2, concurrent, strict=True):
        _pcm(together)
        # espeak-ng carries its pitch flutter across utterances: equal to within a few milliseconds.
        assert together.duration_s == pytest.approx(alone.duration_s, rel=0.01)
        assert together.usage.characters == len(request.text)
        assert {**together.meta, "words": None} == {**alone.meta, "words": None}
        assert [word[:2] for word in together.meta["words"]] == [word[:2] for word in alone.meta["words"]]
        assert [word.at_s for word in together.meta["words"]] == pytest.approx(
            [word.at_s for word in alone.meta["words"]], abs=0.05)


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (SpeechRequest("Hello", voice="no-such-voice"), "'no-such-voice'"),
        (SpeechRequest("Hello", voice="en+nosuchvariant"), "'en+nosuchvariant'"),
        (SpeechRequest("Hello", language="tlh"), "'tlh'"),
    ],
)
async def test_unknown_voice_is_refused_with_the_voices_that_exist(
    model: EspeakSpeechModel, request_: SpeechRequest, named: str
) -> None:
    with pytest.raises(EngineError) as caught:
        await model.synthesize(request_)
    message = str(caught.value)
    assert named in message
    for voice in ("en-us", "cmn", "f3"):
        assert voice in message


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="needs some text"):
        SpeechRequest(text)


async def test_missing_library_names_the_package_to_install(tmp_path: Path) -> None:
    model = EspeakSpeechModel(library_path=tmp_path / "libespeak-ng.so")
    with pytest.raises(EngineError, match="pip install espeakng-loader"):
        await model.synthesize(SpeechRequest("Hello"))


async def test_broken_library_names_the_package_to_install(tmp_path: Path) -> None:
    library = tmp_path / "libespeak-ng.so"
    library.write_bytes(b"this is not a shared library")
    with pytest.raises(EngineError, match="cannot load libespeak-ng .*pip install .*espeakng-loader"):
        await EspeakSpeechModel(library_path=library).synthesize(SpeechRequest("Hello"))


async def test_missing_data_names_the_package_to_install(tmp_path: Path) -> None:
    model = EspeakSpeechModel(data_path=tmp_path)
    with pytest.raises(EngineError, match="not an espeak-ng data directory.*espeakng-loader"):
        await model.synthesize(SpeechRequest("Hello"))
