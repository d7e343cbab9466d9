"""Rate limits under pressure: the gateway, configured with the upstream's TPM limit L, offered 3x that demand.

The fake upstream enforces L tokens/minute the way OpenAI does (input + max_tokens counted on arrival) and answers
after a realistic latency. Callers offer three times L; the gateway holds calls until its own bucket has room.
Figures: tokens the upstream accepted as a fraction of the most it could accept in the run (its full bucket at the
start plus a minute's refill per minute), and the 429s that reached the gateway (target 0).
Usage: ``python bench/limits.py [SECONDS] [TPM]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from contentmill.errors import ContentmillError, RateLimited
from contentmill.gateway import Gateway
from contentmill.metering import count_message_tokens
from contentmill.requests import TextRequest
from contentmill.settings import load_settings
from contentmill.testing.harness import start_upstream

MAX_TOKENS = 200
REQUEST = TextRequest.chat("Write a two-sentence description of a bamboo cutting board.", max_tokens=MAX_TOKENS)


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "limits", **fields}), flush=True)


async def main(base_url: str, seconds: float, tpm: int) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix="cm-limits-"))
    catalog = data / "catalog.yaml"
    catalog.write_text(f"models:\n  openai:gpt-4o-mini: {{tpm: {tpm}, rpm: 100000}}\n")
    settings = load_settings(data_dir=data, catalog_file=catalog, openai_base_url=base_url,
                             openai_api_key=SecretStr("sk-bench-limits"), admission_wait_s=seconds, max_retries=0)
    per_call = count_message_tokens(REQUEST.as_messages(), "o200k_base") + MAX_TOKENS
    latency_s = 0.2
    # Enough concurrent callers to offer 3x the limit at this latency.
    callers = max(1, round(3 * tpm / 60 / per_call * latency_s * 1.2))
    outcome = {"ok": 0.0, "refused": 0.0, "errors": 0.0}
    stop_at = time.monotonic() + seconds
    async with Gateway(settings) as gateway:

        async def caller() -> None:
            while time.monotonic() < stop_at:
                try:
                    await gateway.generate(REQUEST, model="openai:gpt-4o-mini", cache=False,
                                           wait_s=max(0.0, stop_at - time.monotonic()))
                    outcome["ok"] += 1
                except RateLimited:
                    outcome["refused"] += 1  # no capacity before the run ends: this caller is done
                    return
                except ContentmillError:
                    outcome["errors"] += 1

        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.monotonic() - started
    outcome.update(elapsed=elapsed, per_call=per_call, callers=callers)
    return outcome


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 45.0
    tpm = int(sys.argv[2]) if len(sys.argv) > 2 else 60_000
    with start_upstream("--tpm", str(tpm), "--latency-ms", "200") as server:
        result = asyncio.run(main(server.base_url, seconds, tpm))
        stats = server.stats()
    accepted_tokens = stats["requests"] * result["per_call"]
    ceiling = tpm + tpm * result["elapsed"] / 60.0
    emit(figure="throughput_fraction_of_tpm", tpm=tpm, seconds=round(result["elapsed"], 1),
         offered="3x", callers=result["callers"], requests=stats["requests"], tokens_accepted=accepted_tokens,
         ceiling_tokens=round(ceiling), ratio=round(accepted_tokens / ceiling, 3), upstream_429=stats["rejected_429"],
         gateway_refusals=result["refused"], errors=result["errors"])
