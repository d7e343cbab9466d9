"""End-to-end renders of real espeak-ng narration, read back by ffmpeg: streams, length, slides, subtitles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from contentmill.audio import tone
from contentmill.errors import EngineError
from contentmill.media.ffmpeg import probe
from contentmill.media.fonts import find_font
from contentmill.media.layout import Layout
from contentmill.media.render import RenderedVideo, Scene, audio_duration, render_video
from contentmill.media.slides import PALETTES, write_slide
from contentmill.media.subtitles import parse_srt

pytestmark = pytest.mark.slow

Speak = Callable[[str, str, Path], Awaitable[Path]]
FrameAt = Callable[[Path, float], Image.Image]
FPS = 10

ENGLISH = [
    ("Cold all day", "Double walls trap a vacuum.", "This bottle keeps drinks cold for a full day."),
    ("Dry bags", "No condensation.", "Its double wall stops condensation, so your bag stays dry."),
    ("Easy to clean", "Wide mouth.", "The wide mouth takes ice cubes and is easy to clean."),
]
CHINESE = [
    ("保温杯", "双层杯壁之间是真空。", "这款保温杯可以让饮料保持冰凉一整天，或者保持热度十二个小时。"),
    ("防漏杯盖", "旋转四分之一圈。", "防漏杯盖只需旋转四分之一圈就能拧紧。"),
]


async def _scenes(
    speak: Speak, folder: Path, parts: list[tuple[str, str, str]], language: str, size: tuple[int, int]
) -> list[Scene]:
    scenes = []
    for index, (title, text, narration) in enumerate(parts):
        slide = write_slide(folder / f"slide{index}.png", title, text, size=size, palette=PALETTES[index])
        audio = await speak(narration, language, folder / f"narration{index}.wav")
        scenes.append(Scene.from_files(slide, audio, narration))
    return scenes


def _difference(first: Image.Image, second: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Mean absolute difference of two frames inside ``box``, 0-255."""
    stat = ImageStat.Stat(ImageChops.difference(first.crop(box), second.crop(box)).convert("L"))
    return float(stat.mean[0])


def _assert_streams(rendered: RenderedVideo, size: tuple[int, int], scenes: list[Scene]) -> None:
    info = probe(rendered.path)
    assert info == rendered.info
    (video,) = info.of_kind("video")
    (audio,) = info.of_kind("audio")
    assert (video.codec, video.width, video.height, video.pixel_format) == ("h264", *size, "yuv420p")
    assert audio.codec == "aac"
    narration = sum(audio_duration(scene.audio) for scene in scenes)
    assert rendered.narration_s == pytest.approx(narration)
    assert info.duration_s is not None and abs(info.duration_s - narration) <= 0.5


def _assert_slides_and_subtitles(
    frame_at: FrameAt,
    rendered: RenderedVideo,
    plain: RenderedVideo,
    scenes: list[Scene],
    size: tuple[int, int],
) -> None:
    """Mid-cue frames show their scene's slide, and subtitles in the band below it that ``plain`` lacks."""
    layout = Layout.for_size(size)
    band = (0, layout.bottom, layout.width, layout.height)
    slide_area = (0, 0, layout.width, layout.bottom)
    slides = [Image.open(scene.slide).convert("RGB") for scene in scenes]
    starts = [sum(scene.duration_s for scene in scenes[:index]) for index in range(len(scenes))]
    cues = parse_srt(rendered.subtitles)
    assert len(cues) >= len(scenes)
    for cue in cues:
        middle = (cue.start_s + cue.end_s) / 2
        scene = max(index for index, start in enumerate(starts) if start <= middle)
        burned, clean = frame_at(rendered.path, middle), frame_at(plain.path, middle)
        assert _difference(burned, clean, band) > 2.0, f"no subtitle visible at {middle:.2f} s"
        assert _difference(burned, clean, slide_area) < 1.0  # the slide itself is untouched
        others = [_difference(clean, slide, slide_area) for slide in slides]
        assert min(range(len(slides)), key=others.__getitem__) == scene, f"wrong slide at {middle:.2f} s"


@pytest.mark.parametrize(
    ("parts", "language", "size"),
    [
        pytest.param(ENGLISH, "en", (540, 960), id="english-vertical"),
        pytest.param(CHINESE, "zh", (960, 540), id="chinese-landscape"),
    ],
)
async def test_render_has_the_right_streams_length_slides_and_visible_subtitles(
    speak: Speak,
    frame_at: FrameAt,
    video_frames: Callable[[Path], int],
    tmp_path: Path,
    parts: list[tuple[str, str, str]],
    language: str,
    size: tuple[int, int],
) -> None:
    scenes = await _scenes(speak, tmp_path, parts, language, size)
    rendered = render_video(scenes, tmp_path / "out" / "video.mp4", size=size, fps=FPS)
    plain = render_video(scenes, tmp_path / "plain.mp4", size=size, fps=FPS, subtitles=False)

    assert rendered.path == tmp_path / "out" / "video.mp4"
    _assert_streams(rendered, size, scenes)
    _assert_streams(plain, size, scenes)
    assert plain.subtitles == ""
    said = "".join(narration for _, _, narration in parts)
    shown = "".join(cue.text for cue in parse_srt(rendered.subtitles))
    assert shown.replace("\n", "").replace(" ", "") == said.replace(" ", "")
    _assert_slides_and_subtitles(frame_at, rendered, plain, scenes, size)
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["video.mp4"]  # no partial file left
    assert video_frames(rendered.path) == round(rendered.narration_s * FPS)


def _tone_scenes(folder: Path, seconds: list[float]) -> list[Scene]:
    scenes = []
    for index, length in enumerate(seconds):
        slide = write_slide(folder / f"s{index}.png", f"Scene {index}", size=(320, 568))
        audio = folder / f"a{index}.wav"
        audio.write_bytes(tone(length, frequency=330 + 110 * index))
        scenes.append(Scene.from_files(slide, audio, f"Scene number {index} is here."))
    return scenes


def test_many_short_scenes_do_not_drift(tmp_path: Path, video_frames: Callable[[Path], int]) -> None:
    scenes = _tone_scenes(tmp_path, [0.34] * 9)  # 3.4 frames each at 10 fps: rounding per scene would drift
    rendered = render_video(scenes, tmp_path / "v.mp4", size=(320, 568), fps=FPS)
    assert video_frames(rendered.path) == 31  # 3.06 s of audio, to the nearest frame (not 9 x 3 = 27)


def test_motion_pans_each_slide_and_dissolves_into_the_next_without_changing_the_length(
    tmp_path: Path, video_frames: Callable[[Path], int], frame_at: FrameAt
) -> None:
    scenes = _tone_scenes(tmp_path, [1.5, 1.5])
    moving = render_video(scenes, tmp_path / "moving.mp4", size=(320, 568), fps=FPS, motion=True)
    still = render_video(scenes, tmp_path / "still.mp4", size=(320, 568), fps=FPS, subtitles=False)
    assert video_frames(moving.path) == video_frames(still.path) == 30
    box = (0, 0, 320, 300)  # the slide's title, above the subtitles
    early, late = frame_at(moving.path, 0.1), frame_at(moving.path, 1.3)
    assert _difference(early, late, box) > 2  # the same slide has moved
    first, second = frame_at(still.path, 0.5), frame_at(still.path, 2.5)
    mixed = frame_at(moving.path, 1.6)  # in the dissolve that starts with the second narration at 1.5 s
    assert _difference(mixed, first, box) > 1 and _difference(mixed, second, box) > 1
    assert _difference(frame_at(moving.path, 2.9), second, box) < _difference(mixed, second, box)


def test_with_motion_a_scenes_keyword_rises_into_place_and_fades(tmp_path: Path, frame_at: FrameAt) -> None:
    plain = _tone_scenes(tmp_path, [2.5, 2.5])
    worded = [replace(scene, keyword="HEARTS") for scene in plain]
    quiet = render_video(plain, tmp_path / "quiet.mp4", size=(320, 568), fps=FPS, motion=True, subtitles=False)
    loud = render_video(worded, tmp_path / "loud.mp4", size=(320, 568), fps=FPS, motion=True, subtitles=False)
    band = (0, 180, 320, 300)  # 42% of the height, where the keyword stands
    rising, shown, gone = (_difference(frame_at(loud.path, t), frame_at(quiet.path, t), band) for t in (0.2, 1.0, 2.3))
    assert shown > 4 and shown > 2 * rising and gone < 1, (rising, shown, gone)


def test_a_failed_render_leaves_the_previous_file_and_no_partial_one(tmp_path: Path) -> None:
    scenes = _tone_scenes(tmp_path, [0.5, 0.5])
    broken = tmp_path / "s1.png"
    broken.write_bytes(b"this is not an image")
    target = tmp_path / "out" / "video.mp4"
    target.parent.mkdir()
    target.write_bytes(b"the previous video")
    failed = r"ffmpeg failed rendering the video video\.mp4 \(exit status \d+\):\n"
    with pytest.raises(EngineError, match=failed):
        render_video(scenes, target, size=(320, 568), fps=FPS)
    assert target.read_bytes() == b"the previous video"
    assert [path.name for path in target.parent.iterdir()] == ["video.mp4"]


def test_a_render_that_outlives_its_timeout_is_stopped(tmp_path: Path) -> None:
    scenes = _tone_scenes(tmp_path, [0.5])
    target = tmp_path / "video.mp4"
    with pytest.raises(EngineError, match=r"did not finish rendering the video video\.mp4 within 0\.001 s"):
        render_video(scenes, target, size=(320, 568), fps=FPS, timeout_s=0.001)
    assert not target.exists()
    assert sorted(path.name for path in tmp_path.iterdir() if path.suffix in (".mp4", ".part")) == []


def test_a_scene_whose_duration_is_not_its_audio_is_refused(tmp_path: Path) -> None:
    (scene,) = _tone_scenes(tmp_path, [1.0])
    wrong = Scene(scene.slide, scene.audio, scene.narration, 2.0)
    mismatch = r"scene 1: its audio .* lasts 1\.000 s but the scene says 2\.000 s"
    with pytest.raises(EngineError, match=mismatch):
        render_video([wrong], tmp_path / "v.mp4", size=(320, 568), fps=FPS)


def test_chinese_subtitles_with_a_latin_only_font_are_refused_before_rendering(
    tmp_path: Path, latin_only_font: Path
) -> None:
    (scene,) = _tone_scenes(tmp_path, [0.5])
    chinese = Scene(scene.slide, scene.audio, "保温杯可以保冷一整天。", scene.duration_s)
    with pytest.raises(EngineError, match="cannot draw"):
        font = find_font("a", font_file=latin_only_font)
        render_video([chinese], tmp_path / "v.mp4", size=(320, 568), font=font)
    assert not (tmp_path / "v.mp4").exists()


def test_missing_or_unreadable_inputs_are_named(tmp_path: Path) -> None:
    (scene,) = _tone_scenes(tmp_path, [0.5])
    with pytest.raises(EngineError, match="slide .*nowhere.png does not exist"):
        render_video([Scene(tmp_path / "nowhere.png", scene.audio, "", 0.5)], tmp_path / "v.mp4")
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"RIFF but not really")
    with pytest.raises(EngineError, match="cannot read .*noise.wav as a WAV file"):
        Scene.from_files(scene.slide, noise)
    with pytest.raises(ValueError, match="even width and height"):
        render_video([scene], tmp_path / "v.mp4", size=(321, 568))
    with pytest.raises(ValueError, match="at least one scene"):
        render_video([], tmp_path / "v.mp4")


def test_probe_reads_audio_files_and_refuses_what_is_not_media(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(tone(1.5, sample_rate=16000))
    info = probe(wav)
    (audio,) = info.streams
    assert (audio.kind, audio.codec, audio.sample_rate) == ("audio", "pcm_s16le", 16000)
    assert audio.channels == "mono"
    assert info.duration_s == pytest.approx(1.5, abs=0.01)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(EngineError, match="ffmpeg cannot read .*notes.txt as media"):
        probe(text)
    with pytest.raises(EngineError, match="no such file"):
        probe(tmp_path / "absent.mp4")
