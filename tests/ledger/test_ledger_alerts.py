"""Alert rules, deduplication, and delivery to a real local webhook and to Prefect artifacts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import T0, call

from contentmill.ledger import (
    Alert,
    AlertEngine,
    Budget,
    BudgetUsed,
    ErrorRate,
    LargeGeneration,
    LedgerStore,
    LogSink,
    ModelUnpriced,
    PrefectArtifactSink,
    WebhookSink,
    default_rules,
)
from contentmill.metering import Usage


class Hook:
    """A webhook receiver on 127.0.0.1: answers each POST with the next status in ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.statuses = list(statuses or [])
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["content-length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.paths.append(self.path)
                self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/T0KEN-in-path"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def big(tokens_in: int, tokens_out: int, **fields: Any) -> Any:
    return call(usage=Usage(tokens_in, tokens_out), **fields)


def test_the_5000_token_rule_fires_at_5000_and_not_at_4999(store: LedgerStore) -> None:
    with AlertEngine(store, [LargeGeneration()], sinks=[]) as engine:
        assert engine.observe(big(2499, 2500, tags={"team": "ads"})) == []
        (alert,) = engine.observe(big(2500, 2500, tags={"team": "ads"}))
        engine.drain()
    assert alert.rule == "large_generation" and alert.data["tokens"] == 5000
    assert alert.subject == "openai:gpt-4o-mini team=ads" and "5,000 tokens" in alert.message
    assert [a.id for a in store.alerts()] == [alert.id]


def test_the_token_rule_uses_the_estimate_when_the_provider_never_answered(store: LedgerStore) -> None:
    rule = LargeGeneration(tokens=1000)
    timed_out = call(outcome="error", usage=None, error_type="ProviderTimeout", estimate=Usage(200, 800))
    assert rule.check(timed_out) is not None
    assert rule.check(call(outcome="cached", usage=Usage(5000, 5000), cost_usd=0.0)) is None


def test_an_unpriced_model_refusal_alerts(store: LedgerStore) -> None:
    refused = call(
        model="acme:mystery-1", outcome="refused", usage=None, cost_usd=0.0, error_type="UnpricedModel"
    )
    with AlertEngine(store, [ModelUnpriced()], sinks=[]) as engine:
        (alert,) = engine.observe(refused)
        assert (
            engine.observe(call(outcome="refused", usage=None, cost_usd=0.0, error_type="BudgetExceeded"))
            == []
        )
    assert alert.subject == "acme:mystery-1" and "no price" in alert.message


def test_the_error_rate_rule_needs_enough_calls_and_a_high_rate(store: LedgerStore) -> None:
    now = T0 + timedelta(minutes=15)
    failed = {"outcome": "error", "usage": None, "cost_usd": 0.0, "error_type": "ProviderUnavailable"}
    records = [call(ts=T0 + timedelta(seconds=i), model="openai:gpt-4o") for i in range(15)]
    records += [call(ts=T0 + timedelta(seconds=20 + i), model="openai:gpt-4o", **failed) for i in range(5)]
    records += [call(ts=T0 + timedelta(seconds=i), model="deepseek:deepseek-chat") for i in range(19)]
    records += [call(ts=T0 + timedelta(seconds=30), model="deepseek:deepseek-chat", **failed)]
    records += [
        call(ts=T0 + timedelta(seconds=i), model="qwen:qwen-plus", **failed) for i in range(4)
    ]  # too few
    records += [call(ts=T0, model="openai:gpt-4o", outcome="cached", cost_usd=0.0) for _ in range(30)]
    store.write_calls(records)
    with AlertEngine(store, [ErrorRate(max_pct=10.0, min_calls=20)], sinks=[]) as engine:
        (alert,) = engine.evaluate(now)
    assert alert.subject == "model=openai:gpt-4o" and alert.data["pct"] == pytest.approx(25.0)
    assert alert.data["calls"] == 20  # cache hits are not provider calls


def test_an_alert_is_not_repeated_within_the_cooldown_even_by_another_engine(store: LedgerStore) -> None:
    store.set_budget(Budget("team", "ads", "day", 1.0))
    store.write_calls([call(ts=T0, cost_usd=0.9)])
    first = AlertEngine(store, [BudgetUsed()], sinks=[], cooldown=timedelta(hours=1))
    assert len(first.evaluate(T0 + timedelta(minutes=1))) == 1
    assert first.evaluate(T0 + timedelta(minutes=30)) == []
    second = AlertEngine(store, [BudgetUsed()], sinks=[], cooldown=timedelta(hours=1))  # a second worker
    assert second.evaluate(T0 + timedelta(minutes=31)) == []
    assert len(second.evaluate(T0 + timedelta(minutes=62))) == 1  # the cooldown is over
    assert len(store.alerts()) == 2
    with AlertEngine(store, [LargeGeneration()], sinks=[]) as engine:
        assert len(engine.observe(big(9000, 1, ts=T0))) == 1
        assert engine.observe(big(9000, 2, ts=T0 + timedelta(minutes=5))) == []
        assert len(engine.observe(big(9000, 3, ts=T0 + timedelta(hours=2)))) == 1
    first.close()
    second.close()


def test_the_webhook_receives_the_alert_and_delivery_is_recorded(store: LedgerStore, hook: Hook) -> None:
    sinks = [LogSink(), WebhookSink(hook.url, timeout_s=5), PrefectArtifactSink()]
    with AlertEngine(store, [LargeGeneration()], sinks=sinks) as engine:
        (alert,) = engine.observe(big(6000, 10, tags={"team": "ads", "project": "spring"}))
        engine.drain()
    (body,) = hook.bodies
    assert hook.paths == ["/hooks/T0KEN-in-path"]
    assert body["alert"]["id"] == alert.id and body["alert"]["rule"] == "large_generation"
    assert body["alert"]["data"]["tokens"] == 6010 and body["alert"]["data"]["team"] == "ads"
    (stored,) = store.alerts()
    assert stored.delivered == {"log": True, "webhook": True, "prefect": "skipped"}


def test_the_webhook_is_retried_once(store: LedgerStore, hook: Hook) -> None:
    hook.statuses = [503]
    sink = WebhookSink(hook.url, retry_delay_s=0.01)
    assert sink.deliver(Alert("anomaly", "warning", "team=ads", "spike")) is True
    assert len(hook.bodies) == 2
    hook.statuses = [500, 502]
    assert sink.deliver(Alert("anomaly", "warning", "team=ads", "spike")) is False
    sink.close()


def test_a_dead_webhook_never_breaks_the_call_and_hides_its_url(
    store: LedgerStore, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/s3cret-token"
    with AlertEngine(
        store, [LargeGeneration()], sinks=[WebhookSink(url, timeout_s=2, retry_delay_s=0.01)]
    ) as engine:
        assert len(engine.observe(big(6000, 0))) == 1  # returns at once: delivery is in the background
        engine.drain()
    assert store.alerts()[0].delivered == {"webhook": False}
    assert any("127.0.0.1" in m and "ConnectError" in m for m in caplog.messages)
    assert not any("s3cret-token" in m for m in caplog.messages)


def test_default_rules_cover_every_kind() -> None:
    names = {rule.name for rule in default_rules()}
    assert names == {
        "large_generation",
        "model_unpriced",
        "usage_rejected",
        "orphan_charged",
        "budget_used",
        "forecast_over_budget",
        "error_rate",
        "anomaly",
    }


PREFECT_RUN = textwrap.dedent("""
    import asyncio, json, sys
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness
    from contentmill.ledger import AlertEngine, CallRecord, LargeGeneration, LedgerStore, PrefectArtifactSink
    from contentmill.metering import Usage

    store = LedgerStore(sys.argv[1])
    engine = AlertEngine(store, [LargeGeneration()], sinks=[PrefectArtifactSink()])

    def large(team):
        return CallRecord(model="openai:gpt-4o", api_type="text", outcome="ok", estimate=Usage(10, 10),
                          usage=Usage(4000, 2000), tags={"team": team})

    @flow
    def nightly():
        engine.observe(large("ads"))
        engine.drain()

    @flow
    async def creator():
        engine.observe(large("video"))
        engine.drain()

    with prefect_test_harness(server_startup_timeout=120):
        nightly()
        asyncio.run(creator())
        with get_client(sync_client=True) as client:
            artifacts = [{"key": a.key, "flow_run": a.flow_run_id is not None, "markdown": a.data}
                         for a in client.read_artifacts()]
    engine.close()
    print(json.dumps({"artifacts": artifacts, "delivered": [a.delivered for a in store.alerts()]}))
    store.close()
""")


def test_inside_a_flow_run_the_alert_becomes_a_markdown_artifact(tmp_path: Path) -> None:
    """Run in its own process: a temporary Prefect server, a sync and an async flow, each raising an alert."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    own = ("PREFECT_API", "PREFECT_HOME", "CONTENTMILL_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(own)}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    done = subprocess.run(
        [sys.executable, "-c", PREFECT_RUN, url], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["artifacts"]) == 2
    for artifact in result["artifacts"]:
        assert artifact["key"] == "contentmill-alert-large-generation" and artifact["flow_run"]
        assert (
            "## WARNING: large_generation" in artifact["markdown"] and "6,000 tokens" in artifact["markdown"]
        )
    assert result["delivered"] == [{"prefect": True}, {"prefect": True}]


def test_outside_a_run_the_prefect_sink_does_nothing() -> None:
    assert PrefectArtifactSink().deliver(Alert("anomaly", "info", "x", "y")) == "skipped"
