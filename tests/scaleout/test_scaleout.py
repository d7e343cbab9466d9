"""Scale-out, end to end: prefect.yaml's product-descriptions-nightly deployment, deployed with ``prefect deploy``
to a Prefect server on PostgreSQL, runs twice at once on two process workers in the services profile (Redis,
PostgreSQL ledger, S3-compatible store); the runs share the vendor's rate limit, the budgets and the cache.

The fake upstream enforces a real RPM limit: two processes that each kept their own count would overrun it and
see 429s. The same request asked by both runs is paid once: the second asker waits for the first (single flight
through Redis) and reads its answer from the shared cache.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from scaleout_stack import API_KEY, AWS, POSTGRES_HOST, REDIS_URL, Cluster, fresh_database

from contentmill.ledger import Budget, LedgerStore
from contentmill.testing.harness import Upstream

pytestmark = [pytest.mark.scaleout, pytest.mark.timeout(600)]
RUN_TIMEOUT_S = 240.0
BUDGET_USD = 1.0
PRODUCTS = 40  # 10 packed requests of 4 products: more than PRODUCT_RPM lets through in one minute's burst
PRODUCT_RPM = 8


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
    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint, **_boto_credentials())
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()
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


def limited_catalog(tmp_path: Path, rpm: int, tpm: int) -> Path:
    """The account's real limits, as an operator writes them in the catalog file."""
    path = tmp_path / "models.yaml"
    path.write_text(f"models:\n  openai:gpt-4o-mini: {{rpm: {rpm}, tpm: {tpm}}}\n", encoding="utf-8")
    return path


def _completed(cluster: Cluster, runs: dict[str, dict[str, Any]]) -> None:
    failed = {rid: run["state"] for rid, run in runs.items() if run["state_type"] != "COMPLETED"}
    if failed:
        logs = "\n".join(cluster.api.logs(rid) for rid in failed)
        raise AssertionError(f"flow runs did not complete: {failed}\nflow run logs:\n{logs}\n{cluster.stack.logs()}")


def small_catalog(path: Path, count: int) -> Path:
    """A catalog in the sample catalog's columns: distinct products a model can describe without failing checks."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Uniq Id", "Product Name", "Brand Name", "Category", "Selling Price", "About Product"])
        for n in range(count):
            writer.writerow([f"sku{n:03d}", f"Harbor Lantern {n}", "Harbor", "Home & Kitchen | Lighting",
                             f"${12 + n}.50", f"A lantern of brushed steel, model {n}, for porches and patios."])
    return path


def test_the_nightly_deployment_runs_twice_at_once_and_pays_each_request_once(
        cluster: Cluster, upstream: Callable[..., Upstream], ledger_url: str, redis_prefix: str, s3_endpoint: str,
        bucket: str, tmp_path: Path) -> None:
    server = upstream(rpm=PRODUCT_RPM, tpm=2_000_000, latency_ms=20)
    models = limited_catalog(tmp_path, PRODUCT_RPM, 2_000_000)  # TPM not binding: packing by context and size
    env = services_env(server, ledger_url, redis_prefix, s3_endpoint, bucket, models)
    deployment = cluster.api.deploy(cluster.stack, "product-descriptions-nightly")
    catalog = small_catalog(tmp_path / "catalog.csv", PRODUCTS)
    parameters = {"catalog": str(catalog), "use_graph": False, "config": {"packing": {"max_items": 4}}}
    runs = [cluster.api.run(deployment, {**parameters, "out": str(tmp_path / f"out-{name}.jsonl")}, env)
            for name in ("a", "b")]
    _completed(cluster, cluster.api.wait(runs, RUN_TIMEOUT_S))
    assert sorted(len(ran) for ran in cluster.ran_by(runs).values()) == [1, 1]  # one run on each worker

    stats = server.stats()
    assert stats["rejected_429"] == 0, stats  # one RPM bucket in Redis for both workers
    assert stats["requests"] > PRODUCT_RPM  # more than one minute's burst: the shared bucket paced them
    for name in ("a", "b"):
        rows = [json.loads(line) for line in (tmp_path / f"out-{name}.jsonl").read_text().splitlines()]
        assert len(rows) == PRODUCTS and all(r["error"] is None and r["description"] for r in rows)
    with LedgerStore(ledger_url) as store:
        calls = [r for r in store.calls() if r.tags.get("flow") == "product-descriptions"]
        spent = store.spent("team", "shop", min(r.ts for r in calls).replace(hour=0, minute=0, second=0))
    paid = [r for r in calls if r.outcome == "ok"]
    assert len({r.request_hash for r in paid}) == len(paid) == stats["requests"]  # no request paid twice
    assert len([r for r in calls if r.outcome == "cached"]) == len(paid)  # the other run got each one free
    assert all(count == 1 for count in stats["item_ids"].values()) and len(stats["item_ids"]) == PRODUCTS
    assert 0 < spent <= BUDGET_USD and spent == pytest.approx(sum(r.cost_usd for r in paid))

    for rid in runs:  # the key stayed in the workers' environment: not in Prefect's records
        assert API_KEY not in str(cluster.api.flow_run(rid)) and API_KEY not in cluster.api.logs(rid)
