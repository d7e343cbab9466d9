"""A music track under the narration: looped or cut to the video's length, ducked while the voice speaks.

The bed is first brought to ``BED_LUFS`` (measured, like the narration in loudness.py), so a quiet and a loud track
sit alike under the voice; ``sidechaincompress`` keyed by the narration then pulls it down by about 20 dB while
anyone speaks and lets it back within ``RELEASE_MS`` of a pause. The last ``FADE_S`` fade out. The mix is written
as one WAV that the render brings to -14 LUFS like plain narration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from contentmill.errors import EngineError, InvalidRequest
from contentmill.media.ffmpeg import probe, run_ffmpeg
from contentmill.media.loudness import SILENCE_LUFS, measure

BED_LUFS = -20.0  # the music on its own, before ducking: 6 LU under the narration's -14
FADE_S = 2.0
RELEASE_MS = 250
_DUCK = f"sidechaincompress=threshold=0.01:ratio=20:attack=5:release={RELEASE_MS}:makeup=1"
_RATE = 48_000


def check_music(path: str | Path) -> Path:
    """``path`` as a music file ffmpeg can play, or InvalidRequest saying what is wrong with it."""
    target = Path(path).expanduser()
    if not target.is_file():
        raise InvalidRequest(f"the music file {target} does not exist: give the path of an audio file")
    try:
        info = probe(target, timeout_s=30)
    except EngineError:
        raise InvalidRequest(f"the music file {target} is not audio ffmpeg can read: give an MP3, WAV, "
                             "OGG or M4A file") from None
    if not info.of_kind("audio"):
        raise InvalidRequest(f"the music file {target} has no audio stream: give an MP3, WAV, OGG or M4A file")
    return target


def mix_music(narration: Sequence[Path], music: Path, seconds: float, out: Path) -> Path:
    """Write ``out``: the narration clips back to back with ``music`` under them, ``seconds`` long."""
    bed = out.with_name(f"{out.stem}-bed.wav")
    fade_start = max(0.0, seconds - FADE_S)
    run_ffmpeg(["-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(music), "-t", f"{seconds:.3f}",
                "-af", f"aresample={_RATE},aformat=channel_layouts=stereo,"
                f"afade=t=out:st={fade_start:.3f}:d={seconds - fade_start:.3f}", str(bed)],
               purpose="looping the music to the video's length", timeout_s=60 + seconds)
    level = measure([bed])
    gain = BED_LUFS - level if level > SILENCE_LUFS else 0.0
    inputs = [arg for path in narration for arg in ("-i", str(path))]
    labels = "".join(f"[{index}:a]" for index in range(len(narration)))
    graph = (f"{labels}concat=n={len(narration)}:v=0:a=1,aresample={_RATE},aformat=channel_layouts=stereo,"
             f"asplit=2[voice][key];[{len(narration)}:a]volume={gain:.2f}dB[music];"
             f"[music][key]{_DUCK}[ducked];[voice][ducked]amix=inputs=2:duration=first:normalize=0[mix]")
    run_ffmpeg(["-loglevel", "error", "-y", *inputs, "-i", str(bed), "-filter_complex", graph, "-map", "[mix]",
                "-c:a", "pcm_f32le", str(out)], purpose="mixing the music under the narration",
               timeout_s=60 + seconds)
    return out
