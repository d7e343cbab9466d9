"""The fake upstream's command line: ``python -m contentmill.testing.upstream [flags]`` (see the package's doc)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from contentmill.errors import ConfigError
from contentmill.testing.upstream.config import (
    DEFAULT_BATCH_DELAY_MS,
    DEFAULT_MODELS,
    DEFAULT_RPM,
    DEFAULT_TPM,
    FAULTS,
    USAGE_FAULTS,
    ModelProfile,
    UpstreamConfig,
)
from contentmill.testing.upstream.server import serve


def parse_args(argv: Sequence[str] | None = None) -> UpstreamConfig:
    parser = argparse.ArgumentParser(
        prog="python -m contentmill.testing.upstream",
        description="A fake OpenAI-compatible API server with usage, rate limits, latency and faults.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--rpm", type=int, default=DEFAULT_RPM, help="requests per minute per API key")
    parser.add_argument("--tpm", type=int, default=DEFAULT_TPM, help="tokens per minute per API key")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="how long each answer takes")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered with HTTP 500")
    parser.add_argument("--seed", type=int, default=0, help="seed of the error rate's draws")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share of chat requests refused with a 429")
    parser.add_argument("--corrupt-item", action="append", default=[],
                        help="item id a packed answer gets wrong when asked with others (repeatable)")
    parser.add_argument("--api-key", action="append", default=[], help="accepted key (repeatable; default: any)")
    parser.add_argument("--models", action="append", default=[], help="more models to list (comma-separated)")
    parser.add_argument("--batch-delay-ms", type=float, default=DEFAULT_BATCH_DELAY_MS,
                        help="how long a Batch API batch runs before it completes")
    parser.add_argument("--cut-streams-after", type=int, default=None,
                        help="close each stream's connection after this many events (a dropped connection)")
    parser.add_argument("--fault", choices=FAULTS, default=None,
                        help="inject this fault into every request that names none (as X-Upstream-Fault)")
    parser.add_argument("--wrong-usage", choices=USAGE_FAULTS, default=None,
                        help="answer every chat and embedding request with this kind of wrong usage block")
    parser.add_argument("--model-profile", action="append", default=[],
                        help="NAME=LATENCY_MS:TOKENS_FACTOR: one model's latency and answer length (repeatable)")
    args = parser.parse_args(argv)
    extra = [name.strip() for names in args.models for name in names.split(",") if name.strip()]
    try:
        return UpstreamConfig(
            host=args.host,
            port=args.port,
            rpm=args.rpm,
            tpm=args.tpm,
            latency_ms=args.latency_ms,
            error_rate=args.error_rate,
            seed=args.seed,
            api_keys=tuple(args.api_key),
            models=tuple(dict.fromkeys([*DEFAULT_MODELS, *extra])),
            batch_delay_ms=args.batch_delay_ms,
            rate_429=args.rate_429,
            corrupt_items=tuple(args.corrupt_item),
            profiles=tuple(ModelProfile.parse(p) for p in args.model_profile),
            cut_streams_after=args.cut_streams_after,
            wrong_usage=args.wrong_usage,
            fault=args.fault,
        )
    except ConfigError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"upstream: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
