"""Speed of the embedded text model (Gemma 3 270M under llama.cpp), one JSON line per figure.

Figures: load time, generation tokens/s (output tokens / wall time of ~64-token completions, median of
``--runs``) and prompt-processing tokens/s (a long prompt, one output token). The baseline, run alternately
in the same process, is llama-cpp-python's ``Llama.create_completion`` called directly on the same file with
the same settings, so the ratio shows what contentmill's layer (the engine's own process, fresh context) costs.
The generation line names the CPU features the installed llama.cpp was built with, so two builds can be compared
by running this once with each (``PYTHONPATH`` pointing at the other one's unpacked wheel).

    .venv/bin/python bench/local_text.py [--runs 5] [--tokens 64] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from llama_cpp import Llama

from contentmill.providers.llama_local import LlamaTextModel, model_path
from contentmill.requests import TextRequest

N_CTX = 2048
GENERATION_PROMPT = "Product: steel water bottle\nDescription:"
PROMPT_PARAGRAPH = (
    "This insulated steel bottle keeps drinks cold for a day and hot for twelve hours, fits car cup "
    "holders, and has a leak-proof lid that opens with one hand. "
)


DIRECT_CALL = "llama-cpp-python Llama.create_completion, same file and settings"
DIRECT_LOAD = "llama-cpp-python Llama(...) of the same file and settings"


def emit(figure: str, value: float, unit: str, baseline: str, baseline_value: float, **extra: Any) -> None:
    row = {
        "bench": "local_text",
        "figure": figure,
        "value": round(value, 3),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": round(baseline_value, 3),
        "ratio": round(value / baseline_value, 3),
        "machine": f"{platform.machine()} {platform.system()}",
        **extra,
    }
    print(json.dumps(row), flush=True)


async def alternate(
    ours: Callable[[], Awaitable[tuple[int, float]]],
    theirs: Callable[[], tuple[int, float]],
    runs: int,
) -> tuple[float, float]:
    """Median tokens/s of each side, runs interleaved so machine noise hits both alike."""
    mine, base = [], []
    for _ in range(runs):
        tokens, seconds = await ours()
        mine.append(tokens / seconds)
        tokens, seconds = theirs()
        base.append(tokens / seconds)
    return statistics.median(mine), statistics.median(base)


def direct(llama: Llama, prompt: str, max_tokens: int, key: str) -> tuple[int, float]:
    llama.reset()  # type: ignore[no-untyped-call]
    started = time.perf_counter()
    response: Any = llama.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
    return int(response["usage"][key]), time.perf_counter() - started


async def measure(data_dir: Path, runs: int, tokens: int, threads: int | None) -> None:
    started = time.perf_counter()
    path = model_path(data_dir)
    assemble_s = time.perf_counter() - started

    model = LlamaTextModel(data_dir, n_ctx=N_CTX, n_threads=threads)
    started = time.perf_counter()
    engine = await asyncio.to_thread(model.engine)
    load_s = time.perf_counter() - started
    features = str(engine.wait_ready()["system_info"])
    started = time.perf_counter()
    llama = Llama(str(path), n_ctx=N_CTX, n_threads=threads, swa_full=False, verbose=False)
    direct_load_s = time.perf_counter() - started
    emit("load_s", load_s, "s", DIRECT_LOAD, direct_load_s, one_time_assemble_s=round(assemble_s, 3))

    async def generate() -> tuple[int, float]:
        started = time.perf_counter()
        result = await model.complete(TextRequest(prompt=GENERATION_PROMPT, max_tokens=tokens))
        return result.usage.output_tokens, time.perf_counter() - started

    ours, theirs = await alternate(
        generate, lambda: direct(llama, GENERATION_PROMPT, tokens, "completion_tokens"), runs
    )
    emit(
        "generation_tokens_per_s",
        ours,
        "tokens/s",
        DIRECT_CALL,
        theirs,
        runs=runs,
        max_tokens=tokens,
        n_threads=threads,
        engine_features=features,
    )

    long_prompt = PROMPT_PARAGRAPH * 16

    async def process() -> tuple[int, float]:
        started = time.perf_counter()
        result = await model.complete(TextRequest(prompt=long_prompt, max_tokens=1))
        return result.usage.input_tokens, time.perf_counter() - started

    ours, theirs = await alternate(process, lambda: direct(llama, long_prompt, 1, "prompt_tokens"), runs)
    prompt_tokens = model.count_tokens(long_prompt) + 1
    emit("prompt_tokens_per_s", ours, "tokens/s", DIRECT_CALL, theirs, runs=runs, prompt_tokens=prompt_tokens)
    llama.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per generation run")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contentmill-bench-") as data_dir:
        asyncio.run(measure(Path(data_dir), args.runs, args.tokens, args.threads))


if __name__ == "__main__":
    main()
