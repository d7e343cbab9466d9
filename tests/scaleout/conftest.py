"""A Prefect server on a fresh PostgreSQL database and two process workers, shared by the scale-out tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scaleout_stack import (
    API_KEY,
    AWS,
    BIN,
    POOL,
    POSTGRES_HOST,
    Cluster,
    PrefectApi,
    Stack,
    clean_env,
    free_port,
    fresh_database,
)

WORKERS = 2
SERVER_READY_S = 120.0
WORKER_READY_S = 90.0


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scaleout")
    stack = Stack(root)
    with fresh_database("cm_prefect") as database:
        port = free_port()
        api = PrefectApi(f"http://127.0.0.1:{port}/api")
        try:
            server = stack.start("prefect-server", [
                str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui",
                "--no-services",
            ], clean_env(PREFECT_HOME=str(root / "server-home"),
                         PREFECT_API_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://{POSTGRES_HOST}/{database}"))
            api.wait_ready(server, SERVER_READY_S)
            api.create_pool(POOL)
            names = [f"worker-{i}" for i in range(WORKERS)]
            workers = [stack.start(name, [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type",
                                          "process", "--name", name, "--limit", "1"],
                                   # Secrets and each machine's own data directory live in the worker's
                                   # environment; all else a flow run needs comes with the run (job variables).
                                   clean_env(PREFECT_API_URL=api.url, PREFECT_HOME=str(root / f"{name}-home"),
                                             PREFECT_WORKER_QUERY_SECONDS="1", OPENAI_API_KEY=API_KEY,
                                             CONTENTMILL_DATA_DIR=str(root / f"{name}-data"), **AWS))
                       for name in names]
            api.wait_workers(POOL, names, workers, WORKER_READY_S)
            yield Cluster(api, stack, names)
        finally:
            stack.stop()
            api.close()

