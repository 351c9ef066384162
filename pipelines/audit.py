"""Stage ``audit@<experiment>``: attribute shares of the generated samples vs the data, per-group quality and
memorization (images; audio with a domain classifier), gates, and a markdown report beside the JSON.

Audio: the top level audits the YIN pitch class (-1, no clear pitch, is the ``unlabelled`` category); with the
audio domain classifier, ``attributes`` holds one more share audit per classifier head (the notes' ``timbre``:
the classifier's label of each sample vs the train split's attribute), each with its own gates, merged into the
top-level ``gates`` / ``failed`` / ``passed`` as ``<attribute>.<gate>``; per-group quality and memorization of
both are measured in the classifier's features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from components.audit.report import audit_markdown, audit_shares
from components.config import AuditConfig
from components.data import load_attributes, load_spec, load_split
from components.errors import ConfigError, GenfoundryError
from components.io import headline, read_json, write_json, write_text
from components.layout import AUDIT, AUDIT_DETAILS, DATA, FEATURES, SAMPLES, eval_dir, report_file
from components.tracking import runs
from pipelines._common import EXPERIMENT, console, experiment_context, stage

app = typer.Typer(add_completion=False)
IMAGE_ONLY_GATES = ("max_quality_gap", "max_memorization")  # images, and audio with a domain classifier
ATTRIBUTE_SCALARS = ("fd_l2", "fd_l1", "fd_kl", "amplification", "quality_gap", "memorization_rate")


@app.command()
@stage
def main(experiment: str = EXPERIMENT) -> None:
    p, exp, info = experiment_context(experiment)
    labels = read_json(eval_dir(experiment) / "labels.json")
    _, y_train = load_split(DATA, exp.dataset, "train")
    kind = load_spec(DATA, exp.dataset).kind
    attribute = {"image": "class", "points": "mode", "text": "gender", "audio": "pitch class"}[kind]
    if kind == "audio":
        feats = audio_features(exp.dataset, eval_dir(experiment))  # None: no classifier, the pitch audit alone
        if feats is None:
            _image_gates_unset(p.where(experiment), exp.audit, kind)
        train_attributes = load_attributes(DATA, exp.dataset, "train")
        report = audio_report(labels, y_train, train_attributes, exp.audit, seed=exp.evaluate.seed, features=feats)
    else:
        groups = None
        if kind == "image":
            groups = image_groups(exp.dataset, labels, eval_dir(experiment))
        else:
            _image_gates_unset(p.where(experiment), exp.audit, kind)
        report = audit_shares(
            labels["labels"],
            y_train,
            labels["class_names"],
            exp.audit,
            attribute=attribute,
            seed=exp.evaluate.seed,
            groups=groups,
        )
    attrs = report.get("attributes", {})
    nested = tuple(f"attributes.{a}.{k}" for a in attrs for k in ATTRIBUTE_SCALARS)
    write_json(report_file(experiment, AUDIT_DETAILS), report)
    write_json(
        report_file(experiment, AUDIT), {**headline(report, nested=nested), "gates_failed": len(report["failed"])}
    )
    write_text(report_file(experiment, "audit.md"), audit_markdown_all(report, experiment))
    c = runs.client(Path.cwd())
    scalars = {f"audit/{k}": report[k] for k in ATTRIBUTE_SCALARS if isinstance(report.get(k), int | float)}
    for a, sub in attrs.items():
        scalars.update({f"audit/{a}.{k}": sub[k] for k in ATTRIBUTE_SCALARS if isinstance(sub.get(k), int | float)})
    runs.log_metrics(c, info["run_id"], scalars)
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
    ) + "".join(f", {a} FD L2 {sub['fd_l2']:.4f}" for a, sub in attrs.items() if "fd_l2" in sub)
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


def audio_features(dataset: str, eval_dir: Path) -> dict[str, np.ndarray] | None:
    """The audio domain classifier's features of the generated (``fake``), train and test clips, and the test
    split's labels and attributes (``y_test``, ``test_attributes``); None when the dataset has no classifier."""
    from components.evaluation.audio_features import is_audio_classifier, load_audio_classifier

    clf_dir = FEATURES / dataset
    if not is_audio_classifier(clf_dir):
        return None
    samples = eval_dir / SAMPLES
    if not samples.exists():
        raise GenfoundryError(f"{samples} missing; rerun the evaluate stage (`dvc repro evaluate@...`)")
    with np.load(samples, allow_pickle=False) as z:
        fake = z["x"]
    clf = load_audio_classifier(clf_dir)
    x_train, _ = load_split(DATA, dataset, "train")
    x_test, y_test = load_split(DATA, dataset, "test")
    feats = {n: clf.features(torch.from_numpy(x).float()).numpy() for n, x in (("fake", fake), ("train", x_train))}
    return {
        **feats,
        "test": clf.features(torch.from_numpy(x_test).float()).numpy(),
        "y_test": y_test,
        "test_attributes": load_attributes(DATA, dataset, "test"),
    }


def audio_report(
    labels: dict,
    y_train: np.ndarray,
    train_attributes: dict[str, np.ndarray],
    cfg: AuditConfig,
    *,
    seed: int,
    features: dict | None = None,
) -> dict:
    """The audit of audio samples (module docstring): ``labels`` is evaluate's labels.json (YIN pitch classes and,
    with a classifier, ``attributes``: name -> {"labels", "names"}); ``features`` (:func:`audio_features`) adds
    per-group quality and memorization in the classifier's features."""
    pitch_groups = None
    if features is not None:
        pitch_groups = _audio_groups(features, labels["labels"], features["y_test"], labels["class_names"])
    report = audit_shares(
        labels["labels"], y_train, labels["class_names"], cfg, attribute="pitch class", seed=seed, groups=pitch_groups
    )
    audits = {}
    for name, attr in (labels.get("attributes") or {}).items():
        if name not in train_attributes:
            continue  # the train split lost the attribute: nothing to compare with
        groups = None
        if features is not None and name in features["test_attributes"]:
            groups = _audio_groups(features, attr["labels"], features["test_attributes"][name], attr["names"])
        audits[name] = audit_shares(
            attr["labels"], train_attributes[name], attr["names"], cfg, attribute=name, seed=seed, groups=groups
        )
        audits[name]["labeller"] = f"the audio domain classifier's {name!r} head (components.evaluation.audio_features)"
    if audits:
        report["attributes"] = audits
        for name, sub in audits.items():
            report["gates"].update({f"{name}.{g}": r for g, r in sub["gates"].items()})
            report["failed"] = report["failed"] + [f"{name}.{line}" for line in sub["failed"]]
        report["passed"] = not report["failed"]
    return report


def _audio_groups(features: dict, fake_labels: list[int], real_labels: np.ndarray, names: list[str]) -> dict:
    """Per-group quality and memorization of one audio attribute, in the classifier's features."""
    from components.audit.groups import per_group_memorization, per_group_quality

    fake_labels = np.asarray(fake_labels)
    mem = per_group_memorization(features["fake"], features["train"], fake_labels, names)
    mem["rule"] = mem["rule"].replace("(pixels)", "(audio domain classifier features)")
    return {
        "memorization": mem,
        "quality": per_group_quality(features["test"], real_labels, features["fake"], fake_labels, names),
    }


def audit_markdown_all(report: dict, experiment: str) -> str:
    """``audit_markdown`` of the report, then one section per further attribute (audio: ``timbre``), its gates
    already in the top-level table."""
    text = audit_markdown(report, experiment)
    for name, sub in report.get("attributes", {}).items():
        body = audit_markdown({**sub, "gates": {}, "note": None}, experiment).split("\n")[4:]  # drop title, verdict
        head = [f"## Attribute `{name}`", "", f"Labelled by {sub.get('labeller', 'the evaluate stage')}.", ""]
        text += "\n" + "\n".join(
            head + [line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in body]
        )
    return text


def _image_gates_unset(where: str, cfg: AuditConfig, kind: str) -> None:
    for key in IMAGE_ONLY_GATES:
        if getattr(cfg, key) is not None:
            where = "audio without a domain classifier" if kind == "audio" else kind
            raise ConfigError(
                f"{where}.audit.{key}: measured for image datasets and audio datasets with a domain "
                f"classifier only, this one is {where}; remove the key"
            )


if __name__ == "__main__":
    app()
