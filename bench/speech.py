"""Real-time factor of the embedded espeak-ng engine: seconds of audio made per second of wall time.

The audio's own duration is the baseline of the ratio, so the figure holds on a shared, noisy machine better
than an absolute time would. Prints one JSON line per language; the median of ``--runs`` calls is reported.

    .venv/bin/python bench/speech.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from contentmill.providers.espeak import EspeakSpeechModel
from contentmill.requests import SpeechRequest

PARAGRAPHS = {
    "en": (
        "This stainless steel water bottle keeps drinks cold for a full day and hot for twelve hours. "
        "Its double wall stops condensation, so bags and desks stay dry. The wide mouth takes ice cubes and "
        "is easy to clean, and the leak-proof lid closes with a quarter turn. It weighs less than a paperback "
        "book and fits most cup holders, which makes it a steady companion for commutes, hikes and long days "
        "at the office."
    ),
    "zh": (
        "这款不锈钢保温杯可以让饮料保持冰凉一整天，或者保持热度十二个小时。双层杯壁不会凝结水珠，"
        "所以包和桌面都能保持干爽。宽口设计可以放进冰块，也很容易清洗，防漏杯盖只需旋转四分之一圈就能拧紧。"
        "它比一本平装书还轻，适合大多数杯架，是通勤、徒步和长时间办公的好伙伴。"
    ),
}


async def measure(model: EspeakSpeechModel, language: str, text: str, runs: int) -> dict[str, object]:
    """Median real-time factor of ``runs`` syntheses of ``text`` (after one warm-up call)."""
    request = SpeechRequest(text, language=language)
    warm = await model.synthesize(request)  # loads the engine and the language's dictionary
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await model.synthesize(request)
        wall = time.perf_counter() - started
        samples.append((result.duration_s / wall, result.duration_s, wall))
    factor, audio, wall = sorted(samples)[len(samples) // 2]
    return {
        "bench": "speech",
        "figure": "real_time_factor",
        "lang": language,
        "voice": warm.meta["voice"],
        "value": round(factor, 1),
        "audio_s": round(audio, 3),
        "wall_s": round(wall, 5),
        "chars": len(text),
        "runs": runs,
        "spread": [round(min(s[0] for s in samples), 1), round(max(s[0] for s in samples), 1)],
        "baseline": "audio duration (real time = 1.0)",
    }


async def main(runs: int) -> None:
    model = EspeakSpeechModel()
    try:
        for language, text in PARAGRAPHS.items():
            print(json.dumps(await measure(model, language, text, runs), ensure_ascii=False), flush=True)
    finally:
        await model.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed calls per language (odd: a true median)")
    asyncio.run(main(parser.parse_args().runs))
