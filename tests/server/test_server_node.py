"""``contentmill serve`` driven by the openai npm package under node: a plain answer, a stream with its usage,
and errors that arrive as the package's own error classes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from server_helpers import calls, make_key

from contentmill.testing.harness import Served, Upstream

NODE_DIR = Path(__file__).parent / "node"


def _node_client() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the openai npm package cannot be run (install Node.js 18+)")
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.skip(f"the openai npm package is not installed: run `npm install --prefix {NODE_DIR}` (make test does)")
    return [node, str(NODE_DIR / "client.mjs")]


def test_the_openai_npm_package_gets_answers_streams_and_mapped_errors(
        server: Served, env: dict[str, str], upstream_server: Upstream) -> None:
    command = _node_client()
    issued = make_key(env, models=["gpt-4o-mini"])
    done = subprocess.run(command, env={"SERVER_URL": server.base_url, "SERVER_KEY": issued.secret,
                                        "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["plain"]["text"].startswith("Sure.") and seen["plain"]["usage"]["completion_tokens"] > 0
    assert seen["stream"]["text"].startswith("Sure.") and seen["stream"]["usage"]["completion_tokens"] > 0
    assert seen["denied"] == {"cls": "PermissionDeniedError", "status": 403, "code": "model_not_allowed"}
    assert seen["bad_key"] == {"cls": "AuthenticationError", "status": 401, "code": "invalid_api_key"}
    rows = calls(env, at_least=2)
    assert len([r for r in rows if r.outcome == "ok"]) == 2 == upstream_server.stats()["requests"]
