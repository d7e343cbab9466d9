"""The local voices: Piper's joe (the optional ``piper`` extra) speaks English for real, refuses Chinese in one line,
and ``contentmill voices`` lists every voice that can speak here with a sample of each local one to hear."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from contentmill.errors import BadRequest
from contentmill.providers import piper
from contentmill.requests import SpeechRequest

needs_piper = pytest.mark.skipif(not piper.installed(), reason="the piper extra is not installed: "
                                 "pip install -e '.[piper]'")


def _frames(audio: bytes) -> tuple[int, int]:
    with wave.open(io.BytesIO(audio), "rb") as reader:
        return reader.getframerate(), reader.getnframes()


@needs_piper
async def test_piper_speaks_english_and_says_in_one_line_that_it_speaks_nothing_else() -> None:
    import usearch.index  # noqa: F401  the knowledge graph's index: onnxruntime crashes on import next to it

    model = piper.PiperSpeechModel()
    text = "Octopuses have three hearts and blue blood."
    spoken = await model.synthesize(SpeechRequest(text))
    rate, frames = _frames(spoken.audio)
    assert rate == spoken.sample_rate == 22050 and spoken.duration_s == frames / rate > 1.5
    assert spoken.usage.characters == len(text) and spoken.usage.seconds == spoken.duration_s
    faster = await model.synthesize(SpeechRequest(text, speed=2.0))
    assert faster.duration_s < 0.7 * spoken.duration_s
    with pytest.raises(BadRequest, match="speaks English only.*local:espeak-ng") as chinese:
        await model.synthesize(SpeechRequest("章鱼有三颗心脏。", language="zh"))
    assert "\n" not in str(chinese.value)


@needs_piper
@pytest.mark.slow
def test_voices_lists_the_local_voices_with_a_sample_of_each(tmp_path: Path) -> None:
    env = {**os.environ, "CONTENTMILL_DATA_DIR": str(tmp_path / "data"), "CONTENTMILL_SPEECH_MODEL": "local:espeak-ng"}
    done = subprocess.run([sys.executable, "-m", "contentmill.cli", "voices", "--sample", str(tmp_path / "s"),
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {row["model"]: row for row in json.loads(done.stdout)["voices"]}
    assert rows["local:espeak-ng"]["default"] and "cmn" in rows["local:espeak-ng"]["voices"]
    assert rows["local:piper-joe"]["voices"] == ["default"] and rows["local:piper-joe"]["local"]
    for row in rows.values():
        assert len(row["samples"]) == len(row["voices"]) if row["local"] else row["samples"] == []
        for sample in row["samples"]:
            rate, frames = _frames(Path(sample).read_bytes())
            assert frames / rate > 2.0  # a sentence, spoken
