"""Music under the narration: ducked at least 10 dB while the voice speaks, back up between phrases, looped to the
video's length, and the whole at -14 LUFS. The voice is a 440 Hz tone and the music a 2 kHz one, so each is
measured apart in the finished MP4's decoded sound."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from contentmill.audio import tone
from contentmill.errors import InvalidRequest
from contentmill.media.loudness import TARGET_LUFS, measure
from contentmill.media.music import check_music
from contentmill.media.render import Scene, render_video
from contentmill.media.slides import write_slide

_SIZE = (320, 568)
_RATE = 48_000
MUSIC_HZ = 2000.0


def _music(path: Path, seconds: float) -> Path:
    """A 2 kHz tone (with a quieter 3 kHz over it) of ``seconds``, made by ffmpeg's sine source."""
    graph = f"sine=f={MUSIC_HZ:.0f}:d={seconds},volume=0.5[a];sine=f=3000:d={seconds},volume=0.2[b];[a][b]amix"
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-filter_complex",
                           graph, "-c:a", "libmp3lame", str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return path


def _pcm(video: Path) -> np.ndarray:
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(video), "-ac", "1",
                           "-ar", str(_RATE), "-f", "f32le", "-"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return np.frombuffer(done.stdout, dtype=np.float32)


def _level_db(pcm: np.ndarray, start_s: float, end_s: float, hz: float | None = None) -> float:
    """Level of ``pcm[start_s:end_s]`` in dB: all of it, or only what lies within 100 Hz of ``hz``."""
    window = pcm[round(start_s * _RATE) : round(end_s * _RATE)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window)))) ** 2
    if hz is not None:
        frequencies = np.fft.rfftfreq(len(window), 1 / _RATE)
        spectrum = spectrum[np.abs(frequencies - hz) < 100]
    return float(10 * np.log10(spectrum.sum() + 1e-20))


def _render(tmp_path: Path, name: str, music: Path | None) -> Path:
    """Voice for 1.5 s, a 2 s pause, voice again for 1.5 s."""
    slide = write_slide(tmp_path / "slide.png", "", size=_SIZE)
    clips = []
    for number, (seconds, volume) in enumerate([(1.5, 0.3), (2.0, 0.0), (1.5, 0.3)]):
        clip = tmp_path / f"clip{number}.wav"
        clip.write_bytes(tone(seconds, volume=volume))
        clips.append(Scene.from_files(slide, clip, ""))
    return render_video(clips, tmp_path / name, size=_SIZE, fps=10, subtitles=False, music=music).path


@pytest.mark.slow
def test_music_is_ducked_under_the_voice_and_the_whole_stays_at_minus_fourteen_lufs(tmp_path: Path) -> None:
    music = _music(tmp_path / "music.mp3", 2.0)  # shorter than the video: looped
    mixed, plain = _pcm(_render(tmp_path, "music.mp4", music)), _pcm(_render(tmp_path, "plain.mp4", None))
    under_voice = _level_db(mixed, 0.4, 1.3, MUSIC_HZ)
    between = _level_db(mixed, 2.2, 3.0, MUSIC_HZ)  # past the music's own 2 s: looped
    assert between - under_voice >= 10
    assert _level_db(mixed, 2.2, 3.0) > _level_db(plain, 2.2, 3.0) + 20  # the pause is silent without music
    assert abs(measure([tmp_path / "music.mp4"]) - TARGET_LUFS) <= 1.0


def test_a_missing_or_unreadable_music_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="does not exist"):
        check_music(tmp_path / "nothing.mp3")
    text = tmp_path / "notes.mp3"
    text.write_text("not music at all")
    with pytest.raises(InvalidRequest, match="not audio ffmpeg can read") as caught:
        check_music(text)
    assert "\n" not in str(caught.value)
