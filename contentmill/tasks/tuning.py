"""The tuner's steps as Prefect tasks: one task compares models over all prompts, one runs a batch of requests
through an experiment. Each opens its own gateway from the settings and returns plain, picklable results."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from contentmill.experiments.chart import draw_chart
from contentmill.experiments.compare import Comparison, compare_models
from contentmill.experiments.run import TrialRequest, run_trials
from contentmill.experiments.status import status
from contentmill.experiments.store import ExperimentStore
from contentmill.gateway import Gateway
from contentmill.prompts.library import TemplateLibrary
from contentmill.quality.pick import pick_scorer
from contentmill.requests import TextRequest
from contentmill.settings import load_settings
from contentmill.storage import open_store
from contentmill.tasks import RETRY_OPTIONS

_COMMON: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, **RETRY_OPTIONS}


@task(name="compare-models", **_COMMON)
async def compare_task(prompts: Sequence[TextRequest], models: Sequence[str], runs: int, reference: str | None,
                       judge_model: str | None, facts: Sequence[str], tags: Mapping[str, str]) -> Comparison:
    """Every prompt on every model through the gateway, cache off."""
    async with Gateway(load_settings()) as gateway:
        scorer = pick_scorer(gateway, reference=reference, judge=judge_model, facts=facts)
        result = await compare_models(gateway, prompts, models, runs=runs, scorer=scorer, tags=tags,
                                      record_quality=bool(reference or judge_model or facts))
    get_run_logger().info("compared %d models on %d prompts x %d runs; baseline %s", len(models), len(prompts),
                          runs, result.baseline)
    return result


@task(name="compare-chart", **_COMMON)
async def chart_task(comparison: Comparison, key: str) -> str:
    """The cost-quality chart as a PNG in the object store; returns its URL."""
    settings = load_settings()

    def draw() -> str:
        store = open_store(settings)
        try:
            with tempfile.TemporaryDirectory() as folder:
                store.put_file(key, draw_chart(comparison, Path(folder) / "chart.png"), "image/png")
            return store.url(key)
        finally:
            store.close()

    return await asyncio.to_thread(draw)


@task(name="experiment-batch", **{**_COMMON, "retries": 0})
async def experiment_task(name: str, requests: Sequence[Mapping[str, Any]], model: str | None, score: bool,
                          judge_model: str | None, tags: Mapping[str, str]) -> dict[str, Any]:
    """The requests through the experiment's arms (one task for the batch), then its status as a dict."""
    settings = load_settings()
    async with Gateway(settings) as gateway:
        store = ExperimentStore(gateway.store)
        experiment = store.get(name)
        scorer = pick_scorer(gateway, judge=judge_model) if (score or judge_model) else None
        trials = await run_trials(gateway, TemplateLibrary.from_settings(settings), experiment,
                                  [TrialRequest.from_dict(r) for r in requests], model=model, scorer=scorer, tags=tags)
        result = status(store, name).as_dict()
    get_run_logger().info("experiment %s: %d calls; %s", name, len(trials), result["verdict"])
    return result
