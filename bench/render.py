"""Render cost of the creator video: wall seconds of ``render_video`` per second of video made.

The video's own duration is the baseline of the ratio, so the figure holds on a shared, noisy machine better
than an absolute time would (below 1.0: faster than real time). Narration is spoken by the embedded espeak-ng
engine and slides are drawn before timing starts; the timed part is the ffmpeg render with burned-in
subtitles. Prints one JSON line per frame size; the median of ``--runs`` renders is reported.

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

from contentmill.media import LANDSCAPE, PALETTES, VERTICAL, Scene, render_video, write_slide
from contentmill.providers.base import SpeechRequest
from contentmill.providers.espeak import EspeakSpeechModel

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


def measure(
    folder: Path, spoken: list[tuple[str, str, Path, str]], size: tuple[int, int], fps: int, runs: int
) -> dict[str, object]:
    scenes = []
    for index, (title, text, audio, narration) in enumerate(spoken):
        slide = write_slide(
            folder / f"slide{size[0]}x{size[1]}-{index}.png",
            title,
            text,
            size=size,
            palette=PALETTES[index % len(PALETTES)],
        )
        scenes.append(Scene.from_files(slide, audio, narration))
    walls = []
    video_s = 0.0
    for run in range(runs):
        started = time.perf_counter()
        rendered = render_video(scenes, folder / f"video-{run}.mp4", size=size, fps=fps)
        walls.append(time.perf_counter() - started)
        video_s = rendered.info.duration_s or rendered.narration_s
    wall = statistics.median(walls)
    return {
        "bench": "render",
        "figure": "render_wall_s_per_video_s",
        "size": f"{size[0]}x{size[1]}",
        "fps": fps,
        "scenes": len(scenes),
        "video_s": round(video_s, 2),
        "runs": runs,
        "median_wall_s": round(wall, 3),
        "ratio": round(wall / video_s, 4),
        "ratio_min": round(min(walls) / video_s, 4),
        "ratio_max": round(max(walls) / video_s, 4),
    }


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
            print(json.dumps(measure(folder, spoken, size, options.fps, options.runs)), flush=True)


if __name__ == "__main__":
    main()
