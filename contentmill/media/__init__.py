"""The media layer of the creator video: fonts, slides, subtitles and the ffmpeg render.

Library functions only; the flow that strings them together lives in ``contentmill.flows``.
"""

from contentmill.media.ffmpeg import MediaInfo, Stream, probe
from contentmill.media.fonts import Font, find_font
from contentmill.media.layout import LANDSCAPE, VERTICAL, Layout
from contentmill.media.render import DEFAULT_FPS, RenderedVideo, Scene, audio_duration, render_video
from contentmill.media.slides import PALETTES, Palette, render_slide, write_slide
from contentmill.media.subtitles import Cue, build_cues, build_srt, parse_srt, split_narration, to_srt

__all__ = [
    "DEFAULT_FPS",
    "LANDSCAPE",
    "PALETTES",
    "VERTICAL",
    "Cue",
    "Font",
    "Layout",
    "MediaInfo",
    "Palette",
    "RenderedVideo",
    "Scene",
    "Stream",
    "audio_duration",
    "build_cues",
    "build_srt",
    "find_font",
    "parse_srt",
    "probe",
    "render_slide",
    "render_video",
    "split_narration",
    "to_srt",
    "write_slide",
]
