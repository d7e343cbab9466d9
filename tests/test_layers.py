"""The package imports one way, as DESIGN.md draws its layers: nothing imports a module of a layer above its own,
and no module imports one that imports it back (lazy imports inside functions count; annotation-only imports
under ``if TYPE_CHECKING:`` do not, since they never run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from import_graph import find_cycle, import_graph

import contentmill

ROOT = Path(contentmill.__file__).parent
# Lowest first; a module may import its own layer and those below. The top-level module is named by its file,
# a subpackage by its folder, "contentmill" is the package's own __init__.
LAYERS: tuple[frozenset[str], ...] = tuple(frozenset(names.split()) for names in (
    "errors ids files appendfile audio requests",
    "settings metering catalog sqlstore",
    "providers storage",
    "cache ledger",
    "gateway routing knowledge_graph",
    "prompts media quality experiments products video",
    "tasks",
    "flows",
    "testing",
    "server commands cli entry doctor contentmill",
))


def _layer(module: str) -> int:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "contentmill"
    found = [index for index, names in enumerate(LAYERS) if name in names]
    assert found, f"{module} belongs to no layer of tests/test_layers.py: add {name!r} to one"
    return found[0]


@pytest.fixture(scope="module")
def runtime_graph() -> dict[str, set[str]]:
    return import_graph(ROOT, "contentmill", runtime_only=True)


def test_nothing_imports_from_a_layer_above_its_own(runtime_graph: dict[str, set[str]]) -> None:
    upward = [f"{module} -> {target}" for module, targets in sorted(runtime_graph.items())
              for target in sorted(targets) if _layer(target) > _layer(module)]
    assert upward == []


def test_the_package_has_no_import_cycle(runtime_graph: dict[str, set[str]]) -> None:
    assert find_cycle(runtime_graph) is None, " -> ".join(find_cycle(runtime_graph) or ())


@pytest.mark.parametrize("package", ["gateway", "testing"])
def test_the_money_path_and_the_fake_upstream_have_no_cycle_even_in_annotations(package: str) -> None:
    graph = import_graph(ROOT / package, f"contentmill.{package}")
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or ())


def test_a_cycle_through_a_lazy_or_relative_import_is_found(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "sub" / "__init__.py").write_text("from .low import helper\n")
    (tmp_path / "sub" / "low.py").write_text("def helper() -> None:\n    from pkg.high import Server\n")
    (tmp_path / "high.py").write_text("from pkg.sub import low\n\n\nclass Server: ...\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.low"}, "pkg.sub.low": {"pkg.high"}, "pkg.high": {"pkg.sub.low"}}
    assert find_cycle(graph) == ["pkg.high", "pkg.sub.low", "pkg.high"]


def test_an_import_for_annotations_only_is_left_out_of_the_runtime_graph(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "low.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high import X\n"
                                     "else:\n    import pkg.other\n")
    (tmp_path / "high.py").write_text("import pkg.low\n\n\nclass X: ...\n")
    (tmp_path / "other.py").write_text("")
    assert import_graph(tmp_path, "pkg")["pkg.low"] == {"pkg.high", "pkg.other"}
    assert import_graph(tmp_path, "pkg", runtime_only=True)["pkg.low"] == {"pkg.other"}


def test_the_library_imports_from_the_package_and_loads_the_gateway_on_first_use() -> None:
    code = ("import sys, contentmill\n"
            "assert 'contentmill.gateway' not in sys.modules\n"
            "from contentmill import Gateway, Generation, TextRequest, SpeechRequest, Message, Settings\n"
            "assert Gateway.__module__ == 'contentmill.gateway.core' and TextRequest.chat('hi').messages\n"
            "try:\n    contentmill.Nothing\nexcept AttributeError as error:\n    print(error)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "module 'contentmill' has no attribute 'Nothing'"
