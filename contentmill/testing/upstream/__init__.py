"""A fake OpenAI-compatible upstream: a real local HTTP server that answers like OpenAI's API, for free.

Tests, benchmarks and users point any OpenAI-compatible client at it in place of a paid API. It answers
``POST /v1/chat/completions`` (plain, streamed as Server-Sent Events, JSON mode) with ``fake_reply``,
``POST /v1/audio/speech`` with a WAV tone as long as the text takes to say, ``POST /v1/embeddings`` with unit
vectors drawn from each text's digest, ``POST /v1/images/generations`` with PNGs drawn from each prompt and
a Pexels-like footage search with generated clips under ``/pexels`` (``visuals``), and ``GET /v1/models``.
Usage is counted with tiktoken the way OpenAI bills it, and each API key gets OpenAI's continuously refilling
requests-per-minute and tokens-per-minute buckets, with its ``x-ratelimit-*`` headers and 429 answers.
``GET /stats`` shows what was served (keys only by fingerprint); ``POST /stats/reset`` zeroes it. The Batch API
(``/v1/files``, ``/v1/batches``; see ``batches``) completes a batch after ``--batch-delay-ms``.

Faults are injected per request with the header ``X-Upstream-Fault`` (before any capacity is taken)::

    500 | 503       that status with OpenAI's server_error body, after the request's latency
    429             a rate-limit refusal with Retry-After: 1
    timeout         nothing for 30 s, longer than any client waits (cancelled when the client goes away)
    malformed       HTTP 200 whose body cannot be read (cut-off JSON, or a cut-off WAV for speech)
    disconnect      the connection is closed without an answer
    trickle         HTTP 200 whose JSON body comes one byte a second (a server stuck mid-answer)

and ``X-Upstream-Latency-Ms: N`` sets the latency of one request. ``X-Upstream-Usage`` answers (chat, streamed or
not, and embeddings) with a usage block a broken vendor might send, the content left as it is::

    negative        every count negated (a zero becomes -1)
    text            every count the string "n/a"
    null            every count null
    huge            every count 10**12
    empty-choices   the usage right, but no choices (no data for embeddings); a stream's pieces carry none

``--wrong-usage KIND`` does the same to every such answer that names no kind itself, and ``--fault KIND`` gives
every chat, speech and embedding request that names no fault that one.

``--error-rate F`` answers that share of the other chat and speech requests with HTTP 500, drawn in arrival
order from ``--seed``, so a run is reproducible; ``--rate-429 F`` refuses that share of chat requests with a
429. A prompt carrying a JSON array of items with ids gets one answer per item (``contentmill.testing.packed``;
``--corrupt-item ID`` makes one go wrong in company), and ``/stats`` counts those items (``items``, ``item_ids``).
Run it as::

    python -m contentmill.testing.upstream --port 0 --rpm 500 --tpm 30000

It prints ``ready http://HOST:PORT/v1`` once it listens, and stops cleanly on SIGTERM or SIGINT.

``--cut-streams-after N`` closes every streamed answer's connection after N events, as a dropped connection
would. ``/stats`` counts the content tokens streams wrote (``streamed_output_tokens``) and the streams that
ended early (``streams_cut``).

``--model-profile NAME=LATENCY_MS:TOKENS_FACTOR`` (repeatable) gives one model its own latency and plain answers
that many times as long, so models compared on this server differ in speed and tokens as real ones do.

The modules, each importing only those above it in this list::

    errors      ApiError, OpenAI's error body, and the 400 and 5xx builders
    common      one request in flight (Exchange), a JSON body's fields, key fingerprints
    limits      each key's RPM and TPM buckets, their headers and 429s
    stats       what was served and refused (GET /stats)
    config      UpstreamConfig (the flags), per-model profiles, the fault kinds
    chat        a chat request checked, its answer, the completion and chunk bodies, wrong usage
    service     what every route goes through: auth, latency, injected faults, admission
    online      chat completions, streams, speech, embeddings, the model list
    batches     the Batch API (/v1/files, /v1/batches)
    visuals     images and Pexels-like footage
    server      UpstreamServer (the routes wired into one application) and serve()
    cli         parse_args() and main(), which ``__main__`` runs
"""

from contentmill.testing.upstream.batches import BatchApi
from contentmill.testing.upstream.chat import (
    DEFAULT_MAX_TOKENS,
    Answer,
    ChatCall,
    chunk_bodies,
    completion_body,
    parse_chat,
    verbose_reply,
    wrong_usage,
)
from contentmill.testing.upstream.cli import main, parse_args
from contentmill.testing.upstream.common import Exchange, key_fingerprint
from contentmill.testing.upstream.config import (
    DEFAULT_MODELS,
    DEFAULT_RPM,
    DEFAULT_TPM,
    FAULTS,
    USAGE_FAULTS,
    ModelProfile,
    UpstreamConfig,
)
from contentmill.testing.upstream.errors import ApiError
from contentmill.testing.upstream.limits import Bucket, KeyLimits, format_duration
from contentmill.testing.upstream.online import OnlineApi, SpeechCall, fake_vector, parse_speech
from contentmill.testing.upstream.server import UpstreamServer, base_url, serve
from contentmill.testing.upstream.service import Service
from contentmill.testing.upstream.stats import Counters, Stats
from contentmill.testing.upstream.visuals import VisualsApi, footage_colour

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODELS",
    "DEFAULT_RPM",
    "DEFAULT_TPM",
    "FAULTS",
    "USAGE_FAULTS",
    "Answer",
    "ApiError",
    "BatchApi",
    "Bucket",
    "ChatCall",
    "Counters",
    "Exchange",
    "KeyLimits",
    "ModelProfile",
    "OnlineApi",
    "Service",
    "SpeechCall",
    "Stats",
    "UpstreamConfig",
    "UpstreamServer",
    "VisualsApi",
    "base_url",
    "chunk_bodies",
    "completion_body",
    "fake_vector",
    "footage_colour",
    "format_duration",
    "key_fingerprint",
    "main",
    "parse_args",
    "parse_chat",
    "parse_speech",
    "serve",
    "verbose_reply",
    "wrong_usage",
]
