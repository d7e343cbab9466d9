"""Karaoke captions and music as options of the creator video (``--captions karaoke``, ``--music FILE`` and the
flow parameters ``captions`` and ``music``): a new render over the same script and narration, the local voice's
word times kept with each scene's narration, and a music file that cannot be played refused before anything is
called."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from contentmill.errors import InvalidRequest
from contentmill.gateway import Gateway
from contentmill.ledger import LedgerStore, settings_url
from contentmill.media.loudness import TARGET_LUFS, measure
from contentmill.providers.word_marks import word_marks
from contentmill.settings import load_settings
from contentmill.storage import LocalStore
from contentmill.testing.harness import Upstream
from contentmill.video import VideoRequest, make_video
from contentmill.video.rerun import request_key

CLI = Path(__file__).with_name("cli_app.py")
OWN = "# 手冲咖啡\n\n手冲咖啡的关键在于水温和研磨度。\n\n用九十度左右的热水慢慢注入咖啡粉。"


def _music(path: Path) -> Path:
    """Three seconds of a soft chord from ffmpeg's sine source."""
    graph = "sine=f=262:d=3[a];sine=f=330:d=3[b];sine=f=392:d=3[c];[a][b][c]amix=inputs=3"
    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-filter_complex",
                           graph, str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return path


def _gold(image: Image.Image) -> int:
    """Pixels of the karaoke highlight (255, 215, 0) in the lower third of a frame."""
    width, height = image.size
    pixels = np.asarray(image.crop((0, height * 2 // 3, width, height))).astype(int)
    return int(((pixels[..., 0] > 200) & (pixels[..., 1] > 160) & (pixels[..., 1] < 240) & (pixels[..., 2] < 90))
               .sum())


def test_a_music_file_that_cannot_be_played_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"^the music file .*nothing\.mp3 does not exist") as missing:
        VideoRequest.checked(topic="coffee", music=str(tmp_path / "nothing.mp3"))
    (tmp_path / "notes.mp3").write_text("no sound here")
    with pytest.raises(InvalidRequest, match="is not audio ffmpeg can read") as unreadable:
        VideoRequest.checked(topic="coffee", music=str(tmp_path / "notes.mp3"))
    assert "\n" not in str(missing.value) + str(unreadable.value)
    with pytest.raises(InvalidRequest, match="captions is 'plain' or 'karaoke'"):
        VideoRequest.checked(topic="coffee", captions="bouncy")
    music = _music(tmp_path / "chord.wav")
    os.chdir(tmp_path)
    assert VideoRequest.checked(topic="coffee", music="chord.wav").music == str(music)  # absolute
    assert VideoRequest.checked(topic="coffee", music="").music is None  # an empty form field


def test_a_rerun_finds_its_own_video_only_with_the_same_captions_and_the_same_music_file(
    data_dir: Path, tmp_path: Path
) -> None:
    settings = load_settings()
    plain = VideoRequest(topic="coffee").with_models(settings)
    assert plain.finish == {}  # the videos made before these options keep their addresses
    music = _music(tmp_path / "chord.wav")
    dressed = plain.model_copy(update={"captions": "karaoke", "music": str(music)})
    keys = {request_key(plain, settings), request_key(dressed, settings),
            request_key(plain.model_copy(update={"captions": "karaoke"}), settings)}
    assert len(keys) == 3
    before = request_key(dressed, settings)
    os.utime(music, ns=(music.stat().st_atime_ns, music.stat().st_mtime_ns + 10**9))  # the track was changed
    assert request_key(dressed, settings) != before


@pytest.mark.slow
async def test_karaoke_and_music_render_again_over_the_same_script_and_narration(
    data_dir: Path, tmp_path: Path, frame_at: Callable[[Path, float], Image.Image]
) -> None:
    settings = load_settings()
    store = LocalStore(data_dir / "store")
    plain = VideoRequest(topic="手冲咖啡", language="zh", seconds=10, own_script=OWN,
                         speech_model="local:espeak-ng", resolution=480, fps=10)
    dressed = plain.model_copy(update={"captions": "karaoke", "music": str(_music(tmp_path / "chord.wav"))})
    async with Gateway(settings) as gateway:
        first = await make_video(plain, settings=settings, gateway=gateway, store=store)
        second = await make_video(dressed, settings=settings, gateway=gateway, store=store)
    assert all(second.steps[step].cached for step in ("script", "narration", "visuals", "subtitles"))
    assert not second.steps["render"].cached and second.video != first.video
    moment = second.narration_s * 0.4  # a little before the first scene ends: its line mostly said, so mostly gold
    assert _gold(frame_at(Path(second.video), moment)) > 50 > _gold(frame_at(Path(first.video), moment))
    assert abs(measure([Path(second.video)]) - TARGET_LUFS) <= 1.0


@pytest.mark.slow
async def test_the_local_voice_s_word_times_stay_with_each_scene_and_an_edit_keeps_the_others(
    data_dir: Path,
) -> None:
    settings = load_settings()
    store = LocalStore(data_dir / "store")
    own = "# Octopuses\n\nThe extraordinarily clever octopus tastes with its arms.\n\nIt has three hearts."
    first = VideoRequest(topic="octopuses", seconds=10, own_script=own, speech_model="local:espeak-ng",
                         resolution=480, fps=10, captions="karaoke")
    edited = first.model_copy(update={"scene_edits": {2: "Its blood is blue."}})
    async with Gateway(settings) as gateway:
        made = await make_video(first, settings=settings, gateway=gateway, store=store)
        again = await make_video(edited, settings=settings, gateway=gateway, store=store)
    records = [store.get_json(f"steps/narration/{path.stem}.json")
               for path in (data_dir / "store" / "steps" / "narration").glob("*.json")]
    clips = {clip["narration"]: clip["words"] for record in records for clip in record["clips"]}
    assert set(clips) == {"The extraordinarily clever octopus tastes with its arms.", "It has three hearts.",
                          "Its blood is blue."}
    for text, words in clips.items():
        assert [text[start:end] for start, end, _ in words] == text.rstrip(".").split()
        assert all(later[2] > earlier[2] for earlier, later in zip(words, words[1:], strict=False))
    scene = "The extraordinarily clever octopus tastes with its arms."
    for audio in (made.audio[0], again.audio[0]):  # the first scene, spoken once, keeps its words in both
        assert [list(mark) for mark in word_marks(Path(audio).read_bytes(), scene)] == clips[scene]
    assert again.steps["narration"].calls == 1  # only the edited scene was spoken again


@pytest.mark.slow
def test_the_cli_refuses_an_unreadable_music_file_before_calling_anything(
    openai_upstream: Upstream, tmp_path: Path
) -> None:
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "COLUMNS": "160"}  # and no Prefect API
    (tmp_path / "song.mp3").write_bytes(b"\x00" * 64)
    done = subprocess.run([sys.executable, str(CLI), "video", "octopuses", "--music", "song.mp3",
                           "--captions", "karaoke"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "music file" in done.stderr and "song.mp3" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert openai_upstream.stats()["requests"] == 0
    with LedgerStore(settings_url(load_settings())) as ledger:
        assert ledger.count_calls() == 0
