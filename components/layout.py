"""Where everything lives in a genfoundry workspace, declared once.

Paths are relative to the project root (the stages' working directory; ``root / path`` elsewhere). ``dvc.yaml``
names the same paths: a change here needs one there.
"""

from __future__ import annotations

import re
from pathlib import Path

from components.errors import ConfigError

PARAMS = Path("params.yaml")
RAW = Path("data/raw")  # user datasets (imagefolder / npz / textfile paths point here)
DATA = Path("data/prepared")  # prepare: one folder per dataset
FEATURES = Path("data/features")  # features: one folder per dataset (domain classifier, SimCLR encoder)
MODELS = Path("models")  # train: one folder per experiment (safetensors + config.json)
REPORTS = Path("reports")
SUMMARIES = REPORTS / "summaries"  # summary@EXP: one bundle per experiment, the leaderboard's input
LEADERBOARD_MD = REPORTS / "leaderboard.md"
LEADERBOARD_HTML = REPORTS / "leaderboard.html"
STATE = Path(".genfoundry")  # retrain's lock and manifest (not a DVC output)
SAMPLES = "samples.npz"  # evaluate@EXP: generated images, float32 (n, C, H, W) in [0, 1]


#: experiment keys and dataset names become folder names: plain names only, never a path
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
NAME_RULE = "letters, digits, '_' and '-', starting with a letter or digit, at most 64 characters"


def check_name(name: str, *, where: str) -> str:
    """``name`` if it is a plain name (:data:`NAME_RULE`), else a ConfigError naming ``where``."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}: expected a plain name ({NAME_RULE}), got {name!r}")
    return name


def inside(path: str | Path, root: str | Path, *, where: str) -> Path:
    """``root / path`` resolved (symlinks followed) if it stays inside ``root``, else a ConfigError naming ``where``.

    Every path a user names (retrain.log, retrain.watch, a dataset's path) and every path derived from a name
    goes through this before anything is written or removed there."""
    root = Path(root).resolve()
    full = (root / path).resolve()
    if full != root and root not in full.parents:
        raise ConfigError(f"{where}: expected a path inside the project ({root}), got {str(path)!r} -> {full}")
    return full


def relative_inside(path: str, *, where: str) -> str:
    """``path`` if it is relative and never climbs out (no ``..``): what a params.yaml path may be. (Symlinks are
    checked where the path is used, with :func:`inside`.)"""
    p = Path(path)
    if not path or p.is_absolute() or ".." in p.parts:
        raise ConfigError(f"{where}: expected a path relative to the project root, without '..', got {path!r}")
    return path


def model_dir(experiment: str) -> Path:
    return MODELS / check_name(experiment, where="experiment")


def report_dir(experiment: str) -> Path:
    return REPORTS / check_name(experiment, where="experiment")


def eval_dir(experiment: str) -> Path:
    """evaluate@EXP's pictures, labels.json and samples (the audit and the model card read them)."""
    return report_dir(experiment) / "eval"


def report_file(experiment: str, name: str) -> Path:
    """``reports/<experiment>/<name>``: train.json, train_history.csv, eval.json, audit.json, audit.md,
    registry.json, tune_best.json."""
    return report_dir(experiment) / name


#: the DVC metrics files hold headlines; the whole reports sit beside them
EVAL, EVAL_DETAILS = "eval.json", "eval_details.json"
AUDIT, AUDIT_DETAILS = "audit.json", "audit_details.json"


def summary_file(experiment: str) -> Path:
    return SUMMARIES / f"{check_name(experiment, where='experiment')}.json"
