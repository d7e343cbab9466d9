"""Narration at the platforms' loudness: -14 LUFS integrated (EBU R128 / ITU BS.1770), true peak under -1.5 dBFS.

ffmpeg's one-pass ``loudnorm`` ramps its gain and leaves speech about 2 LU short (espeak-ng's narration: -21.2 LUFS
in, -16.2 out), so the gain is measured instead: the scenes' audio is played through ``ebur128``, a ``volume`` gain
closes the gap and a limiter holds the peaks; the limiter takes some loudness back, so the measure runs again on
the result until it is within 0.3 LU (three times at most, a fraction of a second each).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from contentmill.media.ffmpeg import run_ffmpeg

TARGET_LUFS = -14.0
PEAK_DBFS = -1.5
SILENCE_LUFS = -70.0  # what the meter reads when everything is below its absolute gate
_TOLERANCE_LU = 0.3
_ROUNDS = 4
_INTEGRATED = re.compile(r"Integrated loudness:\s*I:\s*(-?[\d.]+|-inf) LUFS", re.S)


def measure(audio: Sequence[Path], chain: str = "") -> float:
    """Integrated loudness (LUFS) of the files played one after another, through ``chain`` if given."""
    inputs = [arg for path in audio for arg in ("-i", str(path))]
    labels = "".join(f"[{index}:a]" for index in range(len(audio)))
    graph = f"{labels}concat=n={len(audio)}:v=0:a=1,{chain + ',' if chain else ''}ebur128=framelog=quiet[out]"
    done = run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[out]", "-f", "null", "-"],
                      purpose="measuring the narration's loudness", timeout_s=120)
    found = _INTEGRATED.findall(done.stderr)
    return float(found[-1]) if found and found[-1] != "-inf" else SILENCE_LUFS


def loudness_chain(audio: Sequence[Path], target: float = TARGET_LUFS) -> str:
    """ffmpeg filters that bring the narration to ``target`` LUFS with its peaks under PEAK_DBFS ("" if silent)."""
    limit = f"alimiter=limit={10 ** (PEAK_DBFS / 20):.4f}:level=false"
    gain, chain = 0.0, ""
    for _ in range(_ROUNDS):
        level = measure(audio, chain)
        if level <= SILENCE_LUFS:
            return ""  # silence stays silent
        if abs(level - target) <= _TOLERANCE_LU:
            break
        gain += target - level
        chain = f"volume={gain:.2f}dB,{limit}"
    return chain
