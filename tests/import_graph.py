"""The project's import graph, read from the source (``ast``): every ``import`` of a ``components``/``pipelines``
module anywhere in a file, function-level imports included (they run when that code runs).

Shared by the layering test (``tests/test_layers.py``) and the stage-deps test (``tests/test_dvc_yaml.py``).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "pipelines")


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """``components.models.vae`` -> its file (module or package ``__init__``), or None if it is not a module."""
    base = root.joinpath(*module.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def file_module(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (imports for annotations only never run)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


@functools.cache
def direct_imports(path: Path) -> frozenset[str]:
    """Project modules ``path`` imports at run time (``from X import Y`` counts X, and X.Y where that is a
    module); imports under ``if TYPE_CHECKING:`` are left out."""
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    project = {n for n in names if n.split(".")[0] in PACKAGES}
    return frozenset(n for n in project if module_file(n) is not None)


def with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(module: str) -> set[Path]:
    """Every project file that importing ``module`` can run, transitively."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        for m in with_parents(todo.pop()):
            f = module_file(m)
            if f is not None and f not in seen:
                seen.add(f)
                todo.extend(direct_imports(f))
    return seen


def project_files(root: Path = ROOT) -> list[Path]:
    return sorted(f for pkg in PACKAGES for f in (root / pkg).rglob("*.py"))
