"""Stage ``audit@<experiment>``: attribute shares of the generated samples vs the data, per-group quality and
memorization (images), gates, and a markdown report beside the JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from components.audit.report import audit_markdown, audit_shares
from components.config import AuditConfig
from components.data import load_spec, load_split
from components.errors import ConfigError, GenfoundryError
from components.io import headline, read_json, write_json, write_text
from components.layout import AUDIT, AUDIT_DETAILS, DATA, FEATURES, SAMPLES, eval_dir, report_file
from components.tracking import runs
from pipelines._common import EXPERIMENT, console, experiment_context, stage

app = typer.Typer(add_completion=False)
IMAGE_ONLY_GATES = ("max_quality_gap", "max_memorization")


@app.command()
@stage
def main(experiment: str = EXPERIMENT) -> None:
    _, exp, info = experiment_context(experiment)
    labels = read_json(eval_dir(experiment) / "labels.json")
    _, y_train = load_split(DATA, exp.dataset, "train")
    kind = load_spec(DATA, exp.dataset).kind
    attribute = {"image": "class", "points": "mode", "text": "gender", "audio": "pitch class"}[kind]
    groups = None
    if kind == "image":
        groups = image_groups(exp.dataset, labels, eval_dir(experiment))
    else:
        _image_gates_unset(experiment, exp.audit, kind)
    report = audit_shares(
        labels["labels"],
        y_train,
        labels["class_names"],
        exp.audit,
        attribute=attribute,
        seed=exp.evaluate.seed,
        groups=groups,
    )
    write_json(report_file(experiment, AUDIT_DETAILS), report)
    write_json(report_file(experiment, AUDIT), {**headline(report), "gates_failed": len(report["failed"])})
    write_text(report_file(experiment, "audit.md"), audit_markdown(report, experiment))
    c = runs.client(Path.cwd())
    scalars = ("fd_l2", "fd_l1", "fd_kl", "amplification", "quality_gap", "memorization_rate")
    runs.log_metrics(
        c, info["run_id"], {f"audit/{k}": report[k] for k in scalars if isinstance(report.get(k), int | float)}
    )
    runs.set_tags(
        c,
        info["run_id"],
        {
            "audit.passed": report["passed"],
            "audit.failed": "; ".join(report["failed"]),
            **{f"audit.gate.{g}": "passed" if r["passed"] else "FAILED" for g, r in report["gates"].items()},
        },
    )
    c.log_artifact(info["run_id"], str(report_file(experiment, "audit.md")), artifact_path="audit")
    verdict = "[green]passed[/]" if report["passed"] else f"[red]failed[/] ({'; '.join(report['failed'])})"
    shares = f"FD L2 {report['fd_l2']:.4f}, KL {report['fd_kl']:.4f}" if "fd_l2" in report else "no attribute"
    extra = "".join(
        f", {name} {report[k]:.4f}"
        for k, name in (("quality_gap", "quality gap"), ("memorization_rate", "memorized"))
        if isinstance(report.get(k), float)
    )
    console.print(f"audited [bold]{experiment}[/]: {shares}{extra} — {verdict}")


def image_groups(dataset: str, labels: dict, eval_dir: Path) -> dict | None:
    """Per-class precision/recall in the domain classifier's features and per-class memorization."""
    from components.audit.groups import per_group_memorization, per_group_quality
    from components.evaluation.features import load_classifier

    samples = eval_dir / SAMPLES
    if not samples.exists():
        raise GenfoundryError(f"{samples} missing; rerun the evaluate stage (`dvc repro evaluate@...`)")
    with np.load(samples, allow_pickle=False) as z:
        fake = z["x"]
    x_train, _ = load_split(DATA, dataset, "train")
    fake_labels = np.asarray(labels["labels"])
    class_names = labels["class_names"]
    groups: dict = {
        "memorization": per_group_memorization(fake, x_train, fake_labels, class_names),
    }
    clf_dir = FEATURES / dataset
    if class_names and (clf_dir / "meta.json").exists():
        clf = load_classifier(clf_dir)
        x_test, y_test = load_split(DATA, dataset, "test")
        groups["quality"] = per_group_quality(
            clf.features(torch.from_numpy(x_test).float()),
            y_test,
            clf.features(torch.from_numpy(fake).float()),
            fake_labels,
            class_names,
        )
    return groups


def _image_gates_unset(experiment: str, cfg: AuditConfig, kind: str) -> None:
    for key in IMAGE_ONLY_GATES:
        if getattr(cfg, key) is not None:
            raise ConfigError(
                f"experiments.{experiment}.audit.{key}: measured for image datasets only, this one is {kind}; "
                "remove the key"
            )


if __name__ == "__main__":
    app()
