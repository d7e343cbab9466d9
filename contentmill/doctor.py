"""What the current settings need, checked one by one: ``contentmill doctor``.

Each check says ``ok``, ``fail`` (with what to fix) or ``skip`` (these settings do not need it, and why). Only
what the settings use is tried: the local engines when the text or speech model is local, a provider's key when
a model is remote, Redis, the database, the S3 bucket and the Prefect API when they are configured. Every
network check has a short timeout, so a service that is down fails in seconds. Keys are looked up, never shown.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from contentmill.catalog import Catalog, load_catalog
from contentmill.errors import ContentmillError
from contentmill.settings import Settings

Status = Literal["ok", "fail", "skip"]
TIMEOUT_S = 3.0
ENGINE_TIMEOUT_S = 180.0  # the first run assembles the model file and loads it


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class _Failed(Exception):
    """A check that did not pass; the message says what to fix."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- the models ----------------------------------------------------------------------------------------


def _provider_key(catalog: Catalog, model: str, settings: Settings) -> str:
    info = catalog.get(model)
    provider = catalog.provider(info.provider)
    if provider.api_key_env is None:
        return f"{model}: {provider.name} needs no key"
    settings.secret(provider.api_key_env, f"model {model}")  # raises MissingCredential naming the variable
    return f"{model}: {provider.api_key_env} is set"


async def _text_engine(settings: Settings) -> str:
    from contentmill.providers.llama_local import LlamaTextModel
    from contentmill.requests import TextRequest

    model = LlamaTextModel(settings.data_dir, n_ctx=512, name=settings.text_model)
    started = time.perf_counter()
    result = await asyncio.wait_for(
        model.complete(TextRequest(prompt="The capital of France is", max_tokens=4)), ENGINE_TIMEOUT_S
    )
    features = str(model.engine().wait_ready().get("system_info", ""))
    built = ", ".join(part.split("=")[0].split(":")[-1].strip() for part in features.split("|")
                      if part.strip().endswith("= 1") and part.split("=")[0].split(":")[-1].strip().isupper())
    return (f"{settings.text_model} answered {result.usage.output_tokens} tokens in "
            f"{time.perf_counter() - started:.1f} s" + (f" (llama.cpp built for {built})" if built else ""))


async def _speech_engine(settings: Settings) -> str:
    from contentmill.providers.espeak import EspeakSpeechModel
    from contentmill.requests import SpeechRequest

    result = await EspeakSpeechModel(name=settings.speech_model).synthesize(SpeechRequest("Checking the voice."))
    if not result.audio or result.duration_s <= 0:
        raise _Failed("espeak-ng returned no audio; reinstall it: pip install --force-reinstall espeakng-loader")
    return f"{settings.speech_model} spoke {result.duration_s:.1f} s of audio"


def _ffmpeg() -> str:
    from contentmill.media.ffmpeg import run_ffmpeg

    with tempfile.TemporaryDirectory(prefix="contentmill-doctor-") as folder:
        frame = Path(folder) / "frame.png"
        run_ffmpeg(["-v", "error", "-f", "lavfi", "-i", "color=c=black:s=64x64:d=0.1", "-frames:v", "1",
                    str(frame)], purpose="rendering a test frame", timeout_s=30.0)
        if not frame.is_file() or frame.stat().st_size == 0:
            raise _Failed("ffmpeg wrote no frame; reinstall it: pip install --force-reinstall imageio-ffmpeg")
    return "rendered a frame"


# -- the services --------------------------------------------------------------------------------------


def _redis(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise _Failed(f"cannot reach Redis at CONTENTMILL_REDIS_URL ({_one_line(str(exc))}): start it or fix "
                      f"the URL") from None
    finally:
        client.close()
    return "answers PING"


def _database(url: str) -> str:
    import sqlalchemy as sa

    from contentmill.ledger.migrations import LEDGER
    from contentmill.sqlstore import database_url

    target = database_url(url, LEDGER)
    connect_args = {"connect_timeout": int(TIMEOUT_S)} if target.get_backend_name() == "postgresql" else {}
    engine = sa.create_engine(target, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        why = _one_line(str(cause)).split(" (Background")[0]
        raise _Failed(f"cannot reach the database at CONTENTMILL_DATABASE_URL ({why[:300]}): start it or fix "
                      f"the URL") from None
    finally:
        engine.dispose()
    return f"{target.get_backend_name()} answers"


def _bucket(bucket: str, endpoint_url: str | None) -> str:
    from contentmill.storage import S3Store

    store = S3Store(bucket, endpoint_url=endpoint_url, timeout_s=TIMEOUT_S)
    try:
        store.check()  # raises ObjectStoreError: a missing bucket, refused credentials, an unreachable endpoint
    finally:
        store.close()
    return f"bucket {bucket} at {store.endpoint} is there"


def _prefect() -> str:
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return "no PREFECT_API_URL: each run starts a temporary Prefect API of its own"
    try:
        response = httpx.get(f"{str(url).rstrip('/')}/health", timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        why = _one_line(str(exc)) or type(exc).__name__
        raise _Failed(f"cannot reach the Prefect API at PREFECT_API_URL={url} ({why}): start it (prefect server "
                      f"start) or unset PREFECT_API_URL") from None
    if response.status_code != 200:
        raise _Failed(f"the Prefect API at {url} answered HTTP {response.status_code} to /health")
    return f"{url} is healthy"


# -- all of it -----------------------------------------------------------------------------------------


async def _run(name: str, check: Callable[[], Awaitable[str] | str]) -> Check:
    try:
        outcome = check()
        detail = await outcome if not isinstance(outcome, str) else outcome
    except (_Failed, ContentmillError, TimeoutError, OSError) as exc:
        return Check(name, "fail", _one_line(str(exc)) or type(exc).__name__)
    return Check(name, "ok", detail)


def _blocking(function: Callable[[], str]) -> Callable[[], Awaitable[str]]:
    return lambda: asyncio.to_thread(function)


async def run_checks(settings: Settings) -> list[Check]:
    """Every check the settings call for, in a stable order."""
    checks: list[Check] = []
    try:
        catalog = load_catalog(settings.catalog_file)
    except ContentmillError as exc:
        return [Check("catalog", "fail", _one_line(str(exc)))]
    engines: tuple[tuple[str, str, Callable[[Settings], Awaitable[str]]], ...] = (
        ("text model", settings.text_model, _text_engine),
        ("speech model", settings.speech_model, _speech_engine),
    )
    for label, model, local in engines:
        try:
            kind = catalog.provider(catalog.get(model).provider).kind
        except ContentmillError as exc:
            checks.append(Check(label, "fail", _one_line(str(exc))))
            continue
        if kind == "local":
            checks.append(await _run(label, partial(local, settings)))
        elif kind == "fake":
            checks.append(Check(label, "skip", f"{model} is the built-in fake: nothing to check"))
        else:
            checks.append(await _run(label, partial(_provider_key, catalog, model, settings)))
    checks.append(await _run("ffmpeg", _blocking(_ffmpeg)))
    services: list[tuple[str, str | None, Callable[[], str], str]] = [
        ("redis", settings.redis_url, lambda: _redis(str(settings.redis_url)),
         "CONTENTMILL_REDIS_URL is not set: limits and budgets are shared through the data directory"),
        ("database", settings.database_url, lambda: _database(str(settings.database_url)),
         "CONTENTMILL_DATABASE_URL is not set: the ledger is a SQLite file in the data directory"),
        ("s3", settings.s3_bucket, lambda: _bucket(str(settings.s3_bucket), settings.s3_endpoint_url),
         "CONTENTMILL_S3_BUCKET is not set: media and the object cache stay in the data directory"),
    ]
    for name, configured, check, unused in services:
        checks.append(await _run(name, _blocking(check)) if configured else Check(name, "skip", unused))
    checks.append(await _run("prefect", _blocking(_prefect)))
    checks.append(_data_dir(settings.data_dir))
    return checks


def _data_dir(folder: Path) -> Check:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("data dir", "fail", f"cannot write to {folder} ({exc.strerror}): set CONTENTMILL_DATA_DIR to a "
                                         f"folder you can write")
    return Check("data dir", "ok", f"{os.path.abspath(folder)} is writable")
