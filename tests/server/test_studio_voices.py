"""Every voice the catalog offers the studio for the embedded speech engine is one espeak-ng speaks."""

from __future__ import annotations

import pytest

from contentmill.catalog import load_catalog
from contentmill.providers.espeak import EspeakSpeechModel
from contentmill.requests import SpeechRequest

VOICES = load_catalog(None).get("local:espeak-ng").voices


@pytest.mark.parametrize("voice", VOICES)
async def test_each_offered_espeak_voice_speaks(voice: str) -> None:
    language = "zh" if voice.startswith("cmn") else "en"
    spoken = await EspeakSpeechModel().synthesize(SpeechRequest("你好" if language == "zh" else "Hello", voice=voice,
                                                                language=language))
    assert spoken.audio and spoken.usage.seconds > 0.1


def test_the_studio_offers_voices_for_every_speech_model_of_the_catalog() -> None:
    catalog = load_catalog(None)
    speech = [info for info in catalog.models.values() if info.modality == "speech" and info.provider != "fake"]
    assert speech and all(info.voices for info in speech), [info.name for info in speech if not info.voices]
