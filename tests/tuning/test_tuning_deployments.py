"""The compare and experiment deployments in prefect.yaml point at their flows with parameters the flows take."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["compare", "experiment"])
def test_deployment_matches_its_flow(name: str) -> None:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = [d for d in config["deployments"] if d["name"] == name]
    path, _, attribute = deployment["entrypoint"].partition(":")
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), attribute)
    assert flow.name == name
    signature = inspect.signature(flow.fn)
    for parameter, value in deployment["parameters"].items():
        default = signature.parameters[parameter].default
        assert value == default or (value in ({}, []) and default is None), parameter
    required = {p for p, v in signature.parameters.items() if v.default is inspect.Parameter.empty}
    assert not required & set(deployment["parameters"])  # what each run must give is left to the run
