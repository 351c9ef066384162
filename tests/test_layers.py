"""Imports only point down: the package layers below, no import circle between modules, and a torch-free
params parser (every stage validates params.yaml, the report stage included, without importing torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.import_graph import ROOT, direct_imports, file_module, project_files

#: bottom to top. A module may import its own package and any package on a lower layer; packages that share a
#: layer are siblings and must not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("components", "components.errors"),
    ("components.io", "components.layout", "components.schema", "components.metric_names"),
    ("components.tune_config",),
    ("components.data",),
    ("components.models",),
    ("components.config",),
    ("components.evaluation",),
    ("components.training", "components.audit"),
    ("components.tracking",),
    ("components.reporting", "components.orchestration"),
    ("pipelines",),
]


def package(module: str) -> str:
    """The layered unit a module belongs to: ``components.models.vae`` -> ``components.models``."""
    for layer in LAYERS:
        for unit in sorted(layer, key=len, reverse=True):
            if module == unit or module.startswith(unit + "."):
                if unit == "components" and module != "components":
                    continue
                return unit
    raise AssertionError(f"module {module} is on no layer of tests/test_layers.py; add its package to LAYERS")


def layer(unit: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if unit in units)


def edges() -> dict[str, set[str]]:
    return {file_module(f): set(direct_imports(f)) for f in project_files()}


def test_every_module_is_on_a_layer():
    for f in project_files():
        package(file_module(f))


def test_no_import_points_up_or_sideways():
    bad = []
    for src, targets in edges().items():
        a = package(src)
        for dst in targets:
            b = package(dst)
            if a != b and (layer(b) > layer(a) or (layer(b) == layer(a))):
                bad.append(f"{src} (layer {layer(a)}: {a}) imports {dst} (layer {layer(b)}: {b})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(sorted(bad))


def test_no_import_circle():
    graph = edges()
    # Tarjan's strongly connected components over modules (package __init__ imports count like any other)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                circles.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("module", ["components.config", "pipelines.cli", "pipelines.report"])
def test_params_and_the_cli_import_no_torch_ray_or_mlflow(module):
    """``genfoundry --help`` and the report stage answer without loading torch, Ray or MLflow (seconds each)."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing {module} loads {out.stdout.strip()}"
