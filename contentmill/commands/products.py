"""``contentmill products CATALOG``: descriptions for a catalog through the product-descriptions flow, or with
``--dry-run`` the tokens and cost it would take per tier, counted without calling any model.

``--workers N`` runs the jobs on a local Dask cluster of N worker processes, ``--dask-address`` on an
existing one; the progress bar follows the run's journal, which the flow appends to after each job."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contentmill.commands import JsonOption, emit_json, fail, parse_tags, settings_or_fail
from contentmill.errors import ContentmillError
from contentmill.settings import Settings

SubmitMode = Literal["online", "batch"]


def products(
    catalog: Annotated[Path, typer.Argument(help="The catalog: CSV, or JSONL (.jsonl/.ndjson).")],
    out: Annotated[Path | None, typer.Option(help="Rows out: JSONL, or CSV when it ends in .csv.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N usable products.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Estimate tokens and cost; call no model.")] = False,
    config: Annotated[Path | None, typer.Option(help="Products config (YAML/JSON): columns, tiers, checks.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Cost tag KEY=VALUE (repeatable).")] = None,
    no_graph: Annotated[bool, typer.Option("--no-graph", help="Neither reuse nor record in the graph.")] = False,
    submit_mode: Annotated[SubmitMode, typer.Option(
        help="online, or batch: the provider's Batch API (cheaper, within 24 h).")] = "online",
    workers: Annotated[int | None, typer.Option(
        min=1, help="Run the jobs on a local Dask cluster of N worker processes.")] = None,
    dask_address: Annotated[str | None, typer.Option(
        help="Run the jobs on the Dask scheduler at this address (tcp://host:8786).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a description for each product of a catalog at the lowest cost per tier."""
    settings = settings_or_fail()
    tags = parse_tags(tag)
    try:
        if dry_run:
            result = _dry_run(settings, catalog, config, limit)
            result.update(done=0, failed=0, reused=0, out=None, dry_run=True)
        else:
            cluster = (workers, dask_address) if workers or dask_address else None
            result = _run(settings, catalog, out, limit, config, tags, not no_graph, submit_mode, cluster,
                          quiet=as_json)
    except ContentmillError as exc:
        fail(str(exc))
    if as_json:
        emit_json(result)
    else:
        _show(Console(), result)


def _dry_run(settings: Settings, catalog: Path, config: Path | None, limit: int | None) -> dict[str, Any]:
    from contentmill.catalog import load_catalog
    from contentmill.products.catalog import read_catalog
    from contentmill.products.config import load_config
    from contentmill.products.estimate import estimate

    products_config = load_config(config)
    return estimate(read_catalog(catalog, products_config.columns, limit), products_config,
                    load_catalog(settings.catalog_file))


def _run(settings: Settings, catalog: Path, out: Path | None, limit: int | None, config: Path | None,
         tags: dict[str, str], use_graph: bool, submit_mode: SubmitMode, cluster: tuple[int | None, str | None] | None,
         *, quiet: bool) -> dict[str, Any]:
    from contentmill.commands.video import _mute_prefect_console, _prefect_defaults
    from contentmill.flows.product_descriptions import dask_task_runner, product_descriptions  # imports Prefect

    flow = product_descriptions
    with ExitStack() as stack:
        stack.enter_context(_prefect_defaults())
        _mute_prefect_console()
        if cluster is not None:
            logging.getLogger("distributed").setLevel(logging.WARNING)  # the cluster's start and stop, line by line
            stack.enter_context(_api_for_workers())
            flow = product_descriptions.with_options(task_runner=dask_task_runner(*cluster))
        if not quiet:
            bar = stack.enter_context(Progress(TextColumn("products"), BarColumn(), MofNCompleteColumn(),
                                               TimeElapsedColumn(), console=Console(stderr=True)))
            task = bar.add_task("products", total=None)
            stack.enter_context(_following(settings, catalog, config, limit,
                                           lambda done, total: bar.update(task, completed=done, total=total)))
        try:
            summary: dict[str, Any] = asyncio.run(flow(
                catalog=str(catalog), out=str(out) if out else None, limit=limit,
                config_file=str(config) if config else None, use_graph=use_graph, submit_mode=submit_mode,
                tags=tags))
        except ValueError as exc:
            fail(f"invalid input: {exc}")
        except (OSError, RuntimeError) as exc:
            fail(f"the flow could not run ({type(exc).__name__}): {exc}")
    return summary


@contextmanager
def _api_for_workers() -> Iterator[None]:
    """Without a Prefect API configured, a temporary one for the run that the Dask workers reach too (each
    would otherwise start its own)."""
    import prefect.settings
    from prefect.server.api.server import SubprocessASGIServer

    if prefect.settings.PREFECT_API_URL.value():
        yield
        return
    server = SubprocessASGIServer()
    server.start()
    try:
        with prefect.settings.temporary_settings(updates={prefect.settings.PREFECT_API_URL: server.api_url}):
            yield
    finally:
        server.stop()


@contextmanager
def _following(settings: Settings, catalog: Path, config: Path | None, limit: int | None,
               show: Callable[[int, int | None], None]) -> Iterator[None]:
    """Call ``show(finished, total)`` every half second from the run's journal, until the block ends."""
    from contentmill.products.config import load_config
    from contentmill.products.journal import FinishedCount
    from contentmill.products.runner import count_products, journal_path

    stop, done = threading.Event(), threading.Event()

    def follow() -> None:
        try:
            products_config = load_config(config)
            finished = FinishedCount(journal_path(settings, catalog, products_config, limit))
            total = count_products(catalog, products_config, limit)
        except ContentmillError:
            return  # the flow reports the same error
        while not stop.wait(0.5):
            show(finished(), total)
        if done.is_set():
            show(total, total)  # every product has its row in the output

    follower = threading.Thread(target=follow, name="products-progress", daemon=True)
    follower.start()
    try:
        yield
        done.set()
    finally:
        stop.set()
        follower.join()


def _show(console: Console, result: dict[str, Any]) -> None:
    estimate = bool(result.get("dry_run"))
    title = "estimate (no model called)" if estimate else f"{result['items']} products -> {result['out']}"
    table = Table(title=title)
    columns = ("tier", "model", "items", "requests", "tokens", "cost (USD)") if estimate else (
        "tier", "items", "done", "failed", "unchanged", "reused", "tokens", "cost (USD)")
    for column in columns:
        table.add_column(column, justify="left" if column in ("tier", "model") else "right")
    for tier, values in result["by_tier"].items():
        if estimate:
            table.add_row(tier, values["model"], str(values["items"]), str(values["requests"]),
                          f"{values['tokens']:,}", f"{values['cost_usd']:.6f}")
        else:
            table.add_row(tier, *(str(values[k]) for k in ("items", "done", "failed", "cached", "reused")),
                          f"{values['tokens']:,}", f"{values['cost_usd']:.6f}")
    console.print(table)
    console.print(f"total: {result['tokens']:,} tokens, {result['cost_usd']:.6f} USD"
                  + (f"; {result['row_errors']} unusable rows" if result.get("row_errors") else "")
                  + (f" (listed in {result['errors_out']})" if result.get("errors_out") else ""))
