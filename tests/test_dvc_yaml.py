"""``dvc.yaml`` lists what every stage reads: each project file its command's module can import, directly or
transitively (``tests/import_graph.py``), is covered by one of the stage's ``deps``. Otherwise an edit to that
file would leave ``dvc repro`` "up to date" with stale models and metrics. (That such an edit does rerun the
stage is shown with a real ``dvc status`` in ``tests/pipelines/test_dvc_pipeline.py``.)

Two imports are dynamic and added here by hand: a stage that can build its experiment's model (it imports
``components/models/base.py``) imports that family's module through the family table, and ``prepare`` imports
the data source modules through ``components.data.SOURCES``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.import_graph import ROOT, closure, module_file

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def expand(text: str, key: str | None, item: dict | None) -> str:
    if key is None:
        return text
    text = text.replace("${key}", key)
    return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), text)


def stages(dvc: dict, params: dict) -> list[tuple[str, str, list[str], dict | None]]:
    """``(stage name, command module, deps, experiment)`` of every stage, foreach stages expanded."""
    out = []
    for name, st in dvc["stages"].items():
        if "foreach" in st:
            section = {"${experiments}": "experiments", "${finetune}": "finetune"}.get(st["foreach"])
            assert section, f"{name}: expected foreach over ${{experiments}} or ${{finetune}}, got {st['foreach']}"
            body = st["do"]
            items = [(k, v) for k, v in (params.get(section) or {}).items()]
        else:
            body, items = st, [(None, None)]
        for key, item in items:
            cmd = expand(body["cmd"], key, item)
            m = re.match(r"python -m (\S+)", cmd)
            assert m, f"stage {name}: expected a command 'python -m <module> ...', got {cmd!r}"
            deps = [expand(d, key, item) for d in body.get("deps", [])]
            out.append((f"{name}@{key}" if key else name, m.group(1), deps, item))
    return out


def reads(module: str, item: dict | None) -> set[Path]:
    files = closure(module)
    if item is not None and ROOT / "components/models/base.py" in files:
        from components.models.family import FAMILIES

        files |= closure(FAMILIES[item["family"]].module)
    if module == "pipelines.prepare":
        from components.data import SOURCES

        for target in SOURCES.values():
            files |= closure(target.split(":")[0])
    return files


def uncovered(files: set[Path], deps: list[str], root: Path = ROOT) -> list[str]:
    dep_paths = [(root / d).resolve() for d in deps]
    return sorted(str(f.relative_to(root)) for f in files if not any(f == d or d in f.parents for d in dep_paths))


def missing_deps(dvc_path: Path = ROOT / "dvc.yaml", params: dict = PARAMS) -> list[str]:
    dvc = yaml.safe_load(dvc_path.read_text())
    problems = []
    for name, module, deps, item in stages(dvc, params):
        for f in uncovered(reads(module, item), deps):
            problems.append(f"stage {name} imports {f}, which its deps in dvc.yaml do not cover")
    return problems


def test_every_stage_lists_every_project_file_it_imports():
    problems = missing_deps()
    assert not problems, "\n".join(problems)


def test_every_listed_project_file_exists():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, _, deps, _ in stages(dvc, PARAMS):
        for d in deps:
            if d.startswith(("components/", "pipelines/")):
                assert (ROOT / d).exists(), f"stage {name}: dep {d} does not exist"


@pytest.mark.parametrize("module", ["pipelines.train", "pipelines.evaluate", "pipelines.register"])
def test_the_import_graph_sees_transitive_and_function_level_imports(module):
    files = {str(f.relative_to(ROOT)) for f in reads(module, {"family": "vae"})}
    assert "components/config.py" in files and "components/errors.py" in files  # transitive
    assert "components/models/vae.py" in files  # the family table's dynamic import
    assert module_file(module) in {ROOT / f for f in files}


def test_a_dvc_yaml_missing_a_module_fails_naming_the_stage_and_file(tmp_path):
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    dvc["stages"]["train"]["do"]["deps"].remove("components/config.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc))
    problems = missing_deps(tmp_path / "dvc.yaml")
    assert any(p.startswith("stage train@") and "components/config.py" in p for p in problems), problems
