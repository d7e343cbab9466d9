"""The product descriptions flow: a catalog in, one description per product out, at the lowest cost that keeps
quality per tier.

Unchanged products cost nothing (their current output in the knowledge graph serves them), variants reuse
one output, changed products are written again and supersede their old version. The rest are packed into
jobs, one Prefect task per job, sized by the model's context window and rate-limit headroom, with
concurrency that backs off on 429s. The jobs run in the flow's process, or on a Dask cluster when the flow
runs with prefect-dask's task runner (``product_descriptions.with_options(task_runner=DaskTaskRunner(...))``,
what ``contentmill products --workers N`` does). A killed run started again with the same parameters resumes from its
journal. Artifacts: a progress bar during the run, a cost table by tier and category at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner
from pydantic import Field

from contentmill.products.config import load_config
from contentmill.products.runner import ProductRun, Summary
from contentmill.settings import load_settings
from contentmill.tasks.products import dispatchers

ARTIFACT_KEY = "product-descriptions"
THREADS_PER_WORKER = 8  # jobs one Dask worker process runs at once (they wait on the network, not the CPU)
SubmitMode = Literal["online", "batch"]


@flow(name="product-descriptions", persist_result=False, log_prints=False)
async def product_descriptions(
    catalog: str,
    out: str | None = None,
    limit: Annotated[int, Field(ge=1)] | None = None,
    config_file: str | None = None,
    config: dict[str, Any] | None = None,
    use_graph: bool = True,
    submit_mode: SubmitMode = "online",
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Descriptions for every product of a catalog; returns the run's summary.

    Args:
        catalog: Path of the catalog file (CSV, or JSONL for .jsonl/.ndjson).
        out: Where to write the rows (JSONL, or CSV for .csv); default under CONTENTMILL_DATA_DIR/products/.
        limit: Only the first N usable products.
        config_file: A YAML/JSON products config (columns, tier rules and models, checks, packing).
        config: The same settings inline; they override the file's top-level keys.
        use_graph: Reuse and record outputs in the knowledge graph (unchanged products cost nothing).
        submit_mode: online (now, within rate limits) or batch (the provider's Batch API, cheaper, slower).
        tags: Cost tags added to every call, such as {"project": "spring-sale"}.
    """
    settings = load_settings()
    products_config = load_config(Path(config_file) if config_file else None, config)
    logger = get_run_logger()
    context = FlowRunContext.get()
    send = dispatchers(context.task_runner if context is not None else None)
    async with ProductRun(settings, products_config, Path(catalog), out=Path(out) if out else None, limit=limit,
                          use_graph=use_graph, tags=tags) as run:
        progress = await acreate_progress_artifact(0.0, key=ARTIFACT_KEY + "-progress",
                                                   description=f"product descriptions: {catalog}")

        async def report(done: int, total: int) -> None:
            await aupdate_progress_artifact(progress, 100.0 * done / max(total, 1))

        summary: Summary = await run.run(send.online, report, offline=send.offline if submit_mode == "batch" else None,
                                         per_task=send.per_task)
        await aupdate_progress_artifact(progress, 100.0)
        await acreate_table_artifact(
            run.table(summary), key=ARTIFACT_KEY + "-costs",
            description=f"Cost by tier and category: {summary.cost_usd:.6f} USD for {summary.items} products "
                        f"({summary.cached} unchanged, {summary.reused} reused, {summary.failed} failed).")
    logger.info("%d products: %d done, %d failed, %d unchanged, %d reused; %.6f USD; rows in %s",
                summary.items, summary.done, summary.failed, summary.cached, summary.reused, summary.cost_usd,
                summary.out)
    return {**summary.as_dict(), "flow_run_id": str(flow_run.id)}


def dask_task_runner(workers: int | None = None, address: str | None = None) -> TaskRunner[Any]:
    """prefect-dask's task runner: the Dask scheduler at ``address``, or a local cluster of ``workers`` processes
    for the length of the flow run. Each process opens its own gateway from its environment's settings."""
    from prefect_dask.task_runners import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers or 1, "processes": True,
                                          "threads_per_worker": THREADS_PER_WORKER, "dashboard_address": None})
