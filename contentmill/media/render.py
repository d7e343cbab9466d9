"""The final MP4: each slide shown exactly as long as its narration, subtitles burned in, one ffmpeg run.

Subtitles go through libass (ffmpeg's ``subtitles`` filter) with the chosen font file in a private
``fontsdir`` and ``force_style`` naming its family: libass shapes CJK and Latin alike, outlines text so it
reads on any slide, and centres each line, which ``drawtext`` cannot do for multi-line cues. The SRT and
the font sit in a scratch directory that ffmpeg runs in, so no user path needs filtergraph escaping.

Slides are decoded once and repeated in memory (``loop``); slide boundaries fall on the frame nearest to
the cumulative audio time, so the picture never drifts from the voice by more than half a frame.

With ``motion`` each scene's ``keyword`` rises and grows into place over the picture and fades out again
(libass ``\\move``, ``\\t`` and ``\\fad`` in an ASS file beside the subtitles), each slide drifts slowly up or
down (scaled once by ``PAN_ZOOM``, then a moving crop: no per-frame rescale) and each scene dissolves into the next
(``xfade``, ``CROSSFADE_S``): a scene is held on for
the dissolve's length, so the next still starts at its narration's first frame and the total length is unchanged.
"""

from __future__ import annotations

import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contentmill.audio import wav_info
from contentmill.errors import EngineError
from contentmill.files import atomic_target
from contentmill.media.ffmpeg import MediaInfo, probe, run_ffmpeg
from contentmill.media.fonts import Font, find_font
from contentmill.media.karaoke import ass_document, ass_time, karaoke_ass
from contentmill.media.layout import VERTICAL, Layout
from contentmill.media.loudness import loudness_chain
from contentmill.media.music import mix_music
from contentmill.media.subtitles import Cue, build_cues, to_srt
from contentmill.providers.word_marks import WordMark

DEFAULT_FPS = 30
DURATION_TOLERANCE_S = 0.5  # the rendered video against the summed narration
_AUDIO_MISMATCH_S = 0.02  # a scene's stated duration against its WAV
_AUDIO_RATE = 48_000
_SMALLEST_SUBTITLE = 0.6  # subtitles shrink to fit the widest line down to this share of their size
_UNSAFE_IN_STYLE = str.maketrans("", "", ",'\\:;[]=")
PAN_ZOOM = 1.05  # a moving slide is this much larger than the frame; the crop travels over the difference
CROSSFADE_S = 0.3
KEYWORD_EM = 0.12  # a scene's kinetic keyword: letters this share of the frame's short side, at most
KEYWORD_S = 1.8  # how long it stays
_UNSAFE_IN_ASS = str.maketrans("", "", "{}\\\n")
STILL_X264 = ("-preset", "veryfast", "-tune", "stillimage")
# Moving slides make every frame count, and veryfast's motion search then costs twice a still render: the fastest
# preset with CABAC and deblocking back on keeps the render at or under a still one's time (bench/render.py), at
# about four times the bytes (1.3 Mbit/s at 1080x1920).
MOTION_X264 = ("-preset", "ultrafast", "-x264-params", "cabac=1:deblock=0,0")


@dataclass(frozen=True, slots=True)
class Scene:
    """A slide, its narration audio (WAV), what the narration says, and the audio's measured length. With
    ``footage`` (a video file) the slide is an RGBA overlay laid over the footage, looped to the scene's length."""

    slide: Path
    audio: Path
    narration: str
    duration_s: float
    footage: Path | None = None
    keyword: str = ""  # with motion: set large for a moment at the scene's start
    words: tuple[WordMark, ...] = ()  # where the voice starts each word of the narration: karaoke follows them

    @classmethod
    def from_files(cls, slide: str | Path, audio: str | Path, narration: str = "",
                   footage: str | Path | None = None, keyword: str = "",
                   words: Sequence[WordMark] = ()) -> Scene:
        """A scene whose duration is measured from its WAV, the one source of timing for video and SRT."""
        return cls(Path(slide), Path(audio), narration, audio_duration(audio),
                   Path(footage) if footage is not None else None, keyword, tuple(words))


@dataclass(frozen=True, slots=True)
class RenderedVideo:
    path: Path
    info: MediaInfo  # as probed from the written file
    narration_s: float  # summed audio of the scenes: the duration the video was made to match
    subtitles: str  # the SRT burned in ("" when rendered without subtitles)


def audio_duration(path: str | Path) -> float:
    """Seconds of audio in a WAV file, counted from its frames."""
    target = Path(path)
    try:
        return wav_info(target.read_bytes()).duration_s
    except FileNotFoundError:
        raise EngineError(f"the narration audio {target} does not exist") from None
    except (OSError, wave.Error, EOFError) as exc:
        raise EngineError(
            f"cannot read {target} as a WAV file ({exc}): narration must be WAV audio"
        ) from None


def render_video(
    scenes: Sequence[Scene],
    out_path: str | Path,
    *,
    size: tuple[int, int] = VERTICAL,
    fps: int = DEFAULT_FPS,
    font: Font | None = None,
    subtitles: bool = True,
    timeout_s: float | None = None,
    motion: bool = False,
    karaoke: bool = False,
    music: Path | None = None,
) -> RenderedVideo:
    """Render ``scenes`` back to back into an H.264/AAC MP4 at ``out_path`` (written whole or not at all).

    ``font`` draws the subtitles (default: one that covers the narration, see :func:`find_font`).
    ``timeout_s`` defaults to a minute plus 20 s per second of video. ``motion``: slow pans and dissolves.
    ``karaoke``: each subtitle word lights up as it is said. ``music``: a track mixed under the narration (music.py).
    """
    layout = _check_arguments(scenes, size, fps)
    total = _check_scenes(scenes)
    target = Path(out_path)
    cues = build_cues(scenes) if subtitles else []
    kinetic = motion and any(scene.keyword for scene in scenes)
    chosen = _subtitle_font(scenes, font) if cues or kinetic else None
    limit = timeout_s if timeout_s is not None else 60.0 + 20.0 * total
    with atomic_target(target) as partial, tempfile.TemporaryDirectory(prefix="contentmill-render-") as scratch:
        work = Path(scratch)
        frames = _frame_counts(scenes, fps)
        style = _prepare_subtitles(work, scenes, cues, chosen, layout, karaoke) if chosen and cues else None
        if kinetic and chosen is not None:
            style = ",".join(filter(None, [_prepare_keywords(work, scenes, frames, fps, chosen, layout), style]))
        audio = [mix_music([scene.audio for scene in scenes], music, total, work / "mix.wav")] if music else None
        args = _arguments(scenes, frames, layout, fps, style, partial, motion, audio)
        run_ffmpeg(args, purpose=f"rendering the video {target.name}", timeout_s=limit, cwd=work)
        info = _verified(partial, layout, total)
    return RenderedVideo(target, info, total, to_srt(cues) if cues else "")


def _check_arguments(scenes: Sequence[Scene], size: tuple[int, int], fps: int) -> Layout:
    if not scenes:
        raise ValueError("a video needs at least one scene")
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs an even width and height (got {width}x{height})")
    if not 1 <= fps <= 120:
        raise ValueError(f"fps must be between 1 and 120 (got {fps})")
    return Layout.for_size(size)


def _check_scenes(scenes: Sequence[Scene]) -> float:
    """The summed narration in seconds, after checking each scene's files and stated duration."""
    for number, scene in enumerate(scenes, start=1):
        if not scene.slide.is_file():
            raise EngineError(f"scene {number}: its slide {scene.slide} does not exist")
        measured = audio_duration(scene.audio)
        if abs(measured - scene.duration_s) > _AUDIO_MISMATCH_S:
            raise EngineError(
                f"scene {number}: its audio {scene.audio} lasts {measured:.3f} s but the scene says "
                f"{scene.duration_s:.3f} s; build scenes with Scene.from_files so video and subtitles agree"
            )
    total = sum(scene.duration_s for scene in scenes)
    if total <= 0:
        raise EngineError("the scenes' narration is silent (0 s of audio): there is nothing to render")
    return total


def _subtitle_font(scenes: Sequence[Scene], font: Font | None) -> Font:
    """The given font if it draws every narration, else a clear error; without one, a font that does."""
    narration = " ".join(scene.narration for scene in scenes)
    if font is None:
        return find_font(narration)
    font.require(narration)
    return font


def _frame_counts(scenes: Sequence[Scene], fps: int) -> list[int]:
    """Frames per scene, cut at the frame nearest each cumulative audio time (so errors never add up)."""
    bounds = [0]
    elapsed = 0.0
    for scene in scenes:
        elapsed += scene.duration_s
        bounds.append(round(elapsed * fps))
    bounds[-1] = max(bounds[-1], 1)
    return [end - start for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def subtitle_style(layout: Layout, font: Font, cues: Sequence[Cue]) -> str:
    """libass ``force_style`` of :func:`subtitle_fields`."""
    return ",".join(f"{key}={value}" for key, value in subtitle_fields(layout, font, cues).items())


def subtitle_fields(layout: Layout, font: Font, cues: Sequence[Cue]) -> dict[str, object]:
    """The subtitles' ASS style: white outlined text, bottom centre, sized so the widest line fits the frame.

    libass sizes a font by its ascent plus descent, not its em, so the size is converted from pixels per em.
    """
    reference = font.load(100)
    widest_em = max((reference.getlength(line) / 100 for cue in cues for line in cue.lines), default=0.0)
    em = float(layout.subtitle_em)
    if widest_em > 0:
        em = max(em * _SMALLEST_SUBTITLE, min(em, layout.text_width / widest_em))
    ascent, descent = reference.getmetrics()
    return {
        "FontName": font.family.translate(_UNSAFE_IN_STYLE),
        "FontSize": round(em * (ascent + descent) / 100),
        "PrimaryColour": "&H00FFFFFF",
        "OutlineColour": "&H00141414",
        "BackColour": "&H80000000",
        "BorderStyle": 1,
        "Outline": round(max(1.0, em * 0.08)),
        "Shadow": round(em * 0.03),
        "Alignment": 2,
        "MarginL": layout.margin_x,
        "MarginR": layout.margin_x,
        "MarginV": layout.subtitle_margin_v,
        "PlayResX": layout.width,
        "PlayResY": layout.height,
    }


def _link_font(work: Path, font: Font) -> None:
    """The font in ``work/fonts``, where libass looks for it."""
    fonts = work / "fonts"
    if fonts.is_dir():
        return
    fonts.mkdir()
    linked = fonts / f"font{font.path.suffix.lower()}"
    try:
        linked.symlink_to(font.path.resolve())
    except OSError:  # no symlinks here (some Windows setups): libass reads a copy just as well
        linked.write_bytes(font.path.read_bytes())


def _prepare_subtitles(work: Path, scenes: Sequence[Scene], cues: Sequence[Cue], font: Font, layout: Layout,
                       karaoke: bool = False) -> str:
    """Write the SRT (or the scenes' karaoke ASS) and link the font into ``work``; return the filter that burns
    them in."""
    _link_font(work, font)
    if karaoke:
        fields = subtitle_fields(layout, font, cues)
        ass = karaoke_ass(scenes, (layout.width, layout.height), fields)
        (work / "karaoke.ass").write_text(ass, encoding="utf-8")
        return "ass=filename=karaoke.ass:fontsdir=fonts"
    (work / "subtitles.srt").write_text(to_srt(cues), encoding="utf-8")
    style = subtitle_style(layout, font, cues)
    return f"subtitles=filename=subtitles.srt:fontsdir=fonts:force_style='{style}'"


def _prepare_keywords(work: Path, scenes: Sequence[Scene], frames: Sequence[int], fps: int, font: Font,
                      layout: Layout) -> str:
    """Write ``keywords.ass``: each scene's keyword rising and growing into place at 42% of the frame's height
    from its scene's start, held, then faded out; return the filter that burns it in."""
    _link_font(work, font)
    reference = font.load(100)
    words = [font.drawable(scene.keyword).translate(_UNSAFE_IN_ASS) for scene in scenes]
    widest = max((reference.getlength(word) / 100 for word in words if word), default=0.0)
    em = layout.base * KEYWORD_EM
    if widest > 0:
        em = min(em, layout.text_width / widest)
    ascent, descent = reference.getmetrics()
    size = round(em * (ascent + descent) / 100)
    x, y, rise = layout.width // 2, round(layout.height * 0.42), round(em * 0.5)
    style = {"Name": "Keyword", "Fontname": font.family.translate(_UNSAFE_IN_STYLE), "Fontsize": size,
             "PrimaryColour": "&H00FFFFFF", "OutlineColour": "&H00141414", "BackColour": "&H80000000", "Bold": 0,
             "BorderStyle": 1, "Outline": max(1, round(em * 0.05)), "Shadow": 0, "Alignment": 5, "MarginL": 0,
             "MarginR": 0, "MarginV": 0}
    lines: list[str] = []
    start = 0
    for word, count in zip(words, frames, strict=True):
        begin, end = start / fps + 0.1, (start + count) / fps - 0.2
        start += count
        if not word or end - begin < 0.8:
            continue
        end = min(end, begin + KEYWORD_S)
        lines.append(f"Dialogue: 0,{ass_time(begin)},{ass_time(end)},Keyword,,0,0,0,,"
                     f"{{\\move({x},{y + rise},{x},{y},0,350)\\fad(200,300)\\fscx70\\fscy70"
                     f"\\t(0,350,\\fscx100\\fscy100)}}{word}")
    (work / "keywords.ass").write_text(ass_document((layout.width, layout.height), [style], lines), encoding="utf-8")
    return "ass=filename=keywords.ass:fontsdir=fonts"


def _arguments(
    scenes: Sequence[Scene],
    frames: Sequence[int],
    layout: Layout,
    fps: int,
    subtitle_filter: str | None,
    output: Path,
    motion: bool = False,
    audio: Sequence[Path] | None = None,
) -> list[str]:
    """ffmpeg's arguments: slide and audio inputs, the filtergraph, H.264/AAC encoding into ``output``."""
    shown = [(scene, count) for scene, count in zip(scenes, frames, strict=True) if count > 0]
    clips: dict[int, int] = {}  # shown scene -> the input number of its footage
    slide_input: dict[int, int] = {}
    number = 0
    for index, (scene, _) in enumerate(shown):
        slide_input[index] = number
        number += 1
        if scene.footage is not None:
            clips[index] = number
            number += 1
    inputs: list[str] = []
    for scene, _ in shown:
        inputs += ["-f", "image2", "-pattern_type", "none", "-i", str(scene.slide.resolve())]
        if scene.footage is not None:
            inputs += ["-stream_loop", "-1", "-i", str(scene.footage.resolve())]
    sound = list(audio) if audio is not None else [scene.audio for scene in scenes]  # the mix, or the narration
    for path in sound:
        inputs += ["-f", "wav", "-i", str(path.resolve())]
    width, height = layout.width, layout.height
    fade = round(CROSSFADE_S * fps) if motion and len(shown) > 1 else 0
    timebase = f",settb=1/{fps}" if fade else ""  # xfade joins only streams of one time base
    graph = []
    for index, (_, count) in enumerate(shown):
        held = count + (fade if index < len(shown) - 1 else 0)  # on through the dissolve into the next
        slide = slide_input[index]
        if index in clips:  # the footage covers the frame, looped and cut to the scene; the slide lies over it
            graph.append(f"[{clips[index]}:v]scale={width}:{height}:force_original_aspect_ratio=increase,"
                         f"crop={width}:{height},setsar=1,fps={fps},trim=end_frame={held},"
                         f"setpts=N/({fps}*TB),format=yuv420p[f{index}]")
            graph.append(f"[{slide}:v]scale={width}:{height},format=rgba,loop=loop={held - 1}:size=1:start=0,"
                         f"setpts=N/({fps}*TB)[o{index}]")
            graph.append(f"[f{index}][o{index}]overlay=0:0:format=auto,format=yuv420p{timebase}[v{index}]")
            continue
        still = (f"[{slide}:v]scale={width}:{height}:force_original_aspect_ratio=decrease,"
                 f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p")
        if motion:
            travel = f"n/{max(held - 1, 1)}" if index % 2 == 0 else f"(1-n/{max(held - 1, 1)})"
            still += (f",scale={_even(width * PAN_ZOOM)}:{_even(height * PAN_ZOOM)},"
                      f"loop=loop={held - 1}:size=1:start=0,setpts=N/({fps}*TB),"
                      f"crop={width}:{height}:(iw-ow)/2:'(ih-oh)*{travel}'{timebase}[v{index}]")
        else:
            still += f",loop=loop={held - 1}:size=1:start=0,setpts=N/({fps}*TB)[v{index}]"
        graph.append(still)
    audio_labels = "".join(f"[{number + index}:a]" for index in range(len(sound)))
    if fade:
        joined, start = "v0", 0
        for index, (_, count) in enumerate(shown[:-1]):
            start += count
            graph.append(f"[{joined}][v{index + 1}]xfade=transition=fade:duration={fade / fps:.6f}:"
                         f"offset={start / fps:.6f}[x{index + 1}]")
            joined = f"x{index + 1}"
        graph.append(f"[{joined}]null[joined]")
    else:
        video_labels = "".join(f"[v{index}]" for index in range(len(shown)))
        graph.append(f"{video_labels}concat=n={len(shown)}:v=1:a=0[joined]")
    graph.append(f"[joined]{subtitle_filter or 'null'}[video]")
    loud = loudness_chain(sound)  # -14 LUFS, peaks under -1.5 dBFS (loudness.py)
    graph.append(f"{audio_labels}concat=n={len(sound)}:v=0:a=1,{loud + ',' if loud else ''}"
                 f"aresample={_AUDIO_RATE}[audio]")
    encode = [
        "-map", "[video]", "-map", "[audio]", "-map_chapters", "-1",  # a WAV's word marks are not chapters
        "-c:v", "libx264", *(MOTION_X264 if motion or clips else STILL_X264), "-crf", "20",
        "-pix_fmt", "yuv420p", "-r", str(fps), "-g", str(2 * fps),
        "-c:a", "aac", "-b:a", "128k", "-ac", "2",
        "-movflags", "+faststart", "-f", "mp4",
    ]  # fmt: skip
    return ["-loglevel", "error", "-y", *inputs, "-filter_complex", ";".join(graph), *encode, str(output)]


def _even(pixels: float) -> int:
    return round(pixels / 2) * 2


def _verified(path: Path, layout: Layout, narration_s: float) -> MediaInfo:
    """The written file, checked: one H.264 stream of the frame size, one AAC stream, narration's length."""
    info = probe(path)
    video, audio = info.of_kind("video"), info.of_kind("audio")
    problems = []
    frame = (layout.width, layout.height)
    if len(video) != 1 or video[0].codec != "h264" or (video[0].width, video[0].height) != frame:
        problems.append(f"video streams {video}")
    if len(audio) != 1 or audio[0].codec != "aac":
        problems.append(f"audio streams {audio}")
    if info.duration_s is None or abs(info.duration_s - narration_s) > DURATION_TOLERANCE_S:
        problems.append(f"duration {info.duration_s} s for {narration_s:.3f} s of narration")
    if problems:
        raise EngineError(f"ffmpeg wrote an unexpected video ({'; '.join(problems)})")
    return info
