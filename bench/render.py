"""Render cost of the creator video: wall seconds of ``render_video`` per second of video made.

The video's own duration is the baseline of the ratio, so the figure holds on a shared, noisy machine better
than an absolute time would (below 1.0: faster than real time). Narration is spoken by the embedded espeak-ng
engine and slides are drawn before timing starts; the timed part is the ffmpeg render with burned-in
subtitles. Per frame size, two kinds of video in the same run: ``plain`` (gradient slides, cuts: the render
before scenes had visuals) and ``visuals`` (each slide over its offline illustration, its keyword rising into
place, slow pans and dissolves);
their renders interleaved, and the last line per size is ``visuals`` over ``plain`` paired run by run. The median
of ``--runs`` renders is reported.

    .venv/bin/python bench/render.py [--runs 3] [--fps 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from contentmill.media import LANDSCAPE, PALETTES, VERTICAL, Scene, find_font, render_video, write_slide
from contentmill.providers.espeak import EspeakSpeechModel
from contentmill.requests import SpeechRequest
from contentmill.video.illustrate import illustration, keyword, pick_icons

SCENES = [
    (
        "Cold all day",
        "Double walls trap a vacuum, so heat cannot travel in or out.",
        "This stainless steel water bottle keeps drinks cold for a full day and hot for twelve hours.",
    ),
    (
        "Dry bags, dry desks",
        "No condensation on the outside.",
        "Its double wall stops condensation, so bags and desks stay dry, even on a humid summer afternoon.",
    ),
    (
        "Easy to clean",
        "A wide mouth for ice cubes and brushes.",
        "The wide mouth takes ice cubes and is easy to clean; the leak-proof lid closes in a quarter turn.",
    ),
    (
        "Lighter than a book",
        "Fits most cup holders.",
        "It weighs less than a paperback book and fits most cup holders, a steady companion for long days.",
    ),
]


async def narrate(folder: Path) -> list[tuple[str, str, Path, str]]:
    """Speak each scene's narration once; every render reuses the same WAVs."""
    model = EspeakSpeechModel()
    spoken = []
    for index, (title, text, narration) in enumerate(SCENES):
        result = await model.synthesize(SpeechRequest(narration, language="en"))
        audio = folder / f"narration{index}.wav"
        audio.write_bytes(result.audio)
        spoken.append((title, text, audio, narration))
    return spoken


def slides(
    folder: Path, spoken: list[tuple[str, str, Path, str]], size: tuple[int, int], kind: str
) -> list[Scene]:
    """The scenes of one kind of video: ``plain`` gradient slides, or slides over their ``visuals``."""
    visuals = kind == "visuals"
    icons = pick_icons([f"{title}. {narration}" for title, _, _, narration in spoken], folder) if visuals else []
    font = find_font(" ".join(f"{title} {text}" for title, text, _, _ in spoken))
    scenes = []
    for index, (title, text, audio, narration) in enumerate(spoken):
        palette = PALETTES[index % len(PALETTES)]
        picture = illustration(icons[index], keyword(narration, title), size, palette, font) if visuals else None
        slide = write_slide(folder / f"slide{size[0]}x{size[1]}-{kind}-{index}.png", title, text, size=size,
                            palette=palette, picture=picture)
        scenes.append(Scene.from_files(slide, audio, narration, keyword=keyword(narration, title) if visuals else ""))
    return scenes


def measure(
    folder: Path, spoken: list[tuple[str, str, Path, str]], size: tuple[int, int], fps: int, runs: int
) -> list[dict[str, object]]:
    """Both kinds, their renders interleaved run by run so that a change in the machine's load hits both."""
    kinds = {kind: slides(folder, spoken, size, kind) for kind in ("plain", "visuals")}
    walls: dict[str, list[float]] = {kind: [] for kind in kinds}
    video_s = 0.0
    for run in range(runs):
        for kind, scenes in kinds.items():
            started = time.perf_counter()
            rendered = render_video(scenes, folder / f"video-{kind}-{run}.mp4", size=size, fps=fps,
                                    motion=kind == "visuals")
            walls[kind].append(time.perf_counter() - started)
            video_s = rendered.info.duration_s or rendered.narration_s
    lines: list[dict[str, object]] = []
    for kind, times in walls.items():
        wall = statistics.median(times)
        lines.append({
            "bench": "render",
            "figure": "render_wall_s_per_video_s",
            "size": f"{size[0]}x{size[1]}",
            "kind": kind,
            "fps": fps,
            "scenes": len(kinds[kind]),
            "video_s": round(video_s, 2),
            "runs": runs,
            "median_wall_s": round(wall, 3),
            "ratio": round(wall / video_s, 4),
            "ratio_min": round(min(times) / video_s, 4),
            "ratio_max": round(max(times) / video_s, 4),
        })
    paired = [v / p for p, v in zip(walls["plain"], walls["visuals"], strict=True)]
    lines.append({"bench": "render", "figure": "visuals_over_plain", "size": f"{size[0]}x{size[1]}",
                  "median_ratio": round(statistics.median(paired), 3), "ratios": [round(r, 3) for r in paired]})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fps", type=int, default=30)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contentmill-bench-render-") as scratch:
        folder = Path(scratch)
        spoken = asyncio.run(narrate(folder))
        render_video(  # warm-up: loads ffmpeg, libass and the font from disk once
            [Scene.from_files(write_slide(folder / "warm.png", "Warm-up"), spoken[0][2], spoken[0][3])],
            folder / "warm.mp4",
            size=(320, 568),
            fps=options.fps,
        )
        for size in (VERTICAL, LANDSCAPE):
            for line in measure(folder, spoken, size, options.fps, options.runs):
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
