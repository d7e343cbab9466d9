"""Scale-out, end to end: flow runs on two process workers of a Prefect server on PostgreSQL, in the services
profile (Redis, PostgreSQL ledger, S3-compatible store), share the vendor's rate limit, the budgets and the cache.

The fake upstream enforces a real RPM limit: two processes that each kept their own count would overrun it and
see 429s. Overlapping work is paid once: the second asker waits for the first (single flight through Redis) or
finds its answer in the shared cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from scaleout_stack import API_KEY, AWS, POOL, POSTGRES_HOST, REDIS_URL, Cluster, fresh_database

from contentmill.ledger import Budget, LedgerStore
from contentmill.testing.harness import Upstream

pytestmark = pytest.mark.timeout(600)
RPM = 30  # the upstream's limit, and the catalog's: 40 distinct prompts cannot all pass in one minute's burst
RUN_TIMEOUT_S = 240.0
BUDGET_USD = 1.0


@pytest.fixture
def ledger_url() -> Iterator[str]:
    with fresh_database("cm_ledger") as name:
        url = f"postgresql+psycopg://{POSTGRES_HOST}/{name}"
        with LedgerStore(url) as store:  # migrated once here, as an operator does before starting workers
            store.set_budget(Budget(scope_key="team", scope_value="shop", period="day", limit_usd=BUDGET_USD))
        yield url


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = "scaleout-" + uuid.uuid4().hex[:12]
    boto3.session.Session().client("s3", endpoint_url=s3_endpoint, **_boto_credentials()).create_bucket(Bucket=name)
    return name


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
            "region_name": AWS["AWS_DEFAULT_REGION"]}


def services_env(upstream: Upstream, ledger_url: str, redis_prefix: str, s3_endpoint: str, bucket: str,
                 catalog: Path) -> dict[str, str]:
    """The services profile for a flow run, sent as its job variables (no secret among them)."""
    return {
        "CONTENTMILL_PROFILE": "services",
        "CONTENTMILL_REDIS_URL": REDIS_URL,
        "CONTENTMILL_REDIS_PREFIX": redis_prefix,
        "CONTENTMILL_DATABASE_URL": ledger_url,
        "CONTENTMILL_S3_BUCKET": bucket,
        "CONTENTMILL_S3_ENDPOINT_URL": s3_endpoint,
        "CONTENTMILL_CATALOG_FILE": str(catalog),
        "CONTENTMILL_ADMISSION_WAIT_S": "120",
        "OPENAI_BASE_URL": upstream.base_url,
    }


def limited_catalog(tmp_path: Path) -> Path:
    """The account's real limits, as an operator writes them in the catalog file."""
    path = tmp_path / "catalog.yaml"
    path.write_text(f"models:\n  openai:gpt-4o-mini: {{rpm: {RPM}, tpm: 20000}}\n", encoding="utf-8")
    return path


def _completed(cluster: Cluster, runs: dict[str, dict[str, Any]]) -> None:
    failed = {rid: run["state"] for rid, run in runs.items() if run["state_type"] != "COMPLETED"}
    if failed:
        logs = "\n".join(cluster.api.logs(rid) for rid in failed)
        raise AssertionError(f"flow runs did not complete: {failed}\nflow run logs:\n{logs}\n{cluster.stack.logs()}")


def test_two_runs_on_two_workers_share_rate_limits_budgets_and_cache(
        cluster: Cluster, upstream: Callable[..., Upstream], ledger_url: str, redis_prefix: str, s3_endpoint: str,
        bucket: str, tmp_path: Path) -> None:
    server = upstream(rpm=RPM, tpm=20000, latency_ms=20)
    env = services_env(server, ledger_url, redis_prefix, s3_endpoint, bucket, limited_catalog(tmp_path))
    deployment = cluster.api.create_deployment("scaleout-probe", "scaleout-probe",
                                               "tests/scaleout/probe_flow.py:scaleout_probe", POOL)
    # Items 0-29 and 10-39: 40 distinct prompts, 20 asked by both runs.
    run_a = cluster.api.run(deployment, {"first": 0, "last": 29, "run": "a"}, env)
    run_b = cluster.api.run(deployment, {"first": 10, "last": 39, "run": "b"}, env)
    runs = cluster.api.wait([run_a, run_b], RUN_TIMEOUT_S)
    _completed(cluster, runs)

    stats = server.stats()
    assert stats["rejected_429"] == 0, stats  # one shared RPM bucket in Redis for both workers
    assert stats["requests"] == 40, stats  # each distinct prompt generated once across both runs

    assert sorted(len(ran) for ran in cluster.ran_by([run_a, run_b]).values()) == [1, 1]  # one on each worker

    with LedgerStore(ledger_url) as store:
        rows = [r for r in store.calls() if r.tags.get("run") in ("a", "b")]
        spent = store.spent("team", "shop", rows[0].ts.replace(hour=0, minute=0, second=0, microsecond=0))
    assert sorted(r.tags["run"] for r in rows) == ["a"] * 30 + ["b"] * 30
    paid = [r for r in rows if r.outcome == "ok"]
    assert len(paid) == 40 and len({r.request_hash for r in paid}) == 40
    assert len([r for r in rows if r.outcome == "cached"]) == 20
    assert 0 < spent <= BUDGET_USD and spent == pytest.approx(sum(r.cost_usd for r in paid))

    for rid in (run_a, run_b):  # the key stayed in the workers' environment: not in Prefect's records
        assert API_KEY not in str(cluster.api.flow_run(rid)) and API_KEY not in cluster.api.logs(rid)
