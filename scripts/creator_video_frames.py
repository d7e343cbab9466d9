"""Frames of an English and a Chinese creator video, made offline as `make demo` makes them, for the docs.

Each video narrates a short script of its own (``own_script``: no text model), spoken by espeak-ng, each scene
over its offline illustration; a frame from the middle of each scene goes into one strip per video:
``docs/img/creator-video-en.png`` and ``docs/img/creator-video-zh.png``. Runs in a temporary data directory.

    .venv/bin/python scripts/creator_video_frames.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

SCRIPTS = {
    "en": ("octopuses", """# Eight arms, three hearts

An octopus has three hearts: two pump blood through the gills, one through the body.

Its blood is blue, because it carries oxygen with copper instead of iron.

Two thirds of its neurons sit in its arms, so each arm can taste and decide on its own.

It changes colour in a fraction of a second to hide from sharks.
"""),
    "zh": ("手冲咖啡", """# 在家做一杯手冲咖啡

先把十五克咖啡豆磨成中细的粉，像白砂糖那样。

把九十二度左右的热水倒进滤纸，先冲湿滤纸，再倒掉这些水。

先倒三十克水闷蒸半分钟，让咖啡粉里的气体跑出来。

然后画着圈慢慢注水，两分半钟内冲完二百五十克水。
"""),
}
THUMB_WIDTH = 270


def _frame(video: Path, seconds: float) -> Image.Image:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-ss", f"{seconds:.3f}", "-i",
               str(video), "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"]
    done = subprocess.run(command, capture_output=True, timeout=60, check=True)
    with Image.open(io.BytesIO(done.stdout)) as image:
        return image.convert("RGB")


async def _video(language: str, topic: str, script: str) -> tuple[Path, list[float]]:
    from contentmill.media import audio_duration
    from contentmill.settings import load_settings
    from contentmill.video import VideoRequest, make_video

    request = VideoRequest.checked(topic=topic, language=language, own_script=script, text_model="fake:text",
                                   speech_model="local:espeak-ng", resolution=720, seconds=20)
    result = await make_video(request, settings=load_settings())
    starts = [0.0]
    for audio in result.audio:
        starts.append(starts[-1] + audio_duration(audio))
    return Path(result.video), [(a + b) / 2 for a, b in zip(starts[:-1], starts[1:], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contentmill-frames-") as scratch:
        os.environ["CONTENTMILL_DATA_DIR"] = scratch
        for language, (topic, script) in SCRIPTS.items():
            video, middles = asyncio.run(_video(language, topic, script))
            frames = [_frame(video, seconds) for seconds in middles]
            height = round(frames[0].height * THUMB_WIDTH / frames[0].width)
            strip = Image.new("RGB", (THUMB_WIDTH * len(frames) + 8 * (len(frames) - 1), height), (255, 255, 255))
            for number, frame in enumerate(frames):
                strip.paste(frame.resize((THUMB_WIDTH, height), Image.Resampling.LANCZOS),
                            (number * (THUMB_WIDTH + 8), 0))
            target = options.out / f"creator-video-{language}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            strip.save(target, optimize=True)
            print(f"{target}: {len(frames)} scenes of {video}")


if __name__ == "__main__":
    main()
