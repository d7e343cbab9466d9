"""WAV helpers shared by the speech engines, the fakes and the fake upstream."""

from __future__ import annotations

import io
import math
import struct
import wave
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WavInfo:
    sample_rate: int
    channels: int
    sample_width: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1, sample_width: int = 2) -> bytes:
    """A complete WAV file around raw little-endian PCM."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(sample_width)
        out.setframerate(sample_rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def wav_info(data: bytes) -> WavInfo:
    """Header facts of a WAV file; raises wave.Error for anything that is not one."""
    with wave.open(io.BytesIO(data), "rb") as reader:
        channels, width = reader.getnchannels(), reader.getsampwidth()
        # Streamed WAVs (some TTS APIs) claim an unknown, huge length: count the frames actually present.
        present = len(reader.readframes(reader.getnframes())) // (channels * width)
        return WavInfo(reader.getframerate(), channels, width, present)


def tone(seconds: float, sample_rate: int = 22050, frequency: float = 440.0, volume: float = 0.2) -> bytes:
    """A sine tone as a WAV file: real, playable audio of an exact length."""
    frames = max(1, round(seconds * sample_rate))
    amplitude = int(32767 * volume)
    step = 2 * math.pi * frequency / sample_rate
    pcm = struct.pack(f"<{frames}h", *(int(amplitude * math.sin(step * i)) for i in range(frames)))
    return wav_bytes(pcm, sample_rate)


# A rough speaking rate used where no engine measures it: about 14 characters a second in English.
CHARS_PER_SECOND = 14.0
