"""``genfoundry``: the pipeline's stages plus sampling from the registry.

genfoundry prepare | features | train EXP | evaluate EXP | audit EXP | register EXP | summary EXP | report
genfoundry leaderboard   (prints reports/leaderboard.md)
genfoundry tune EXP [--apply]      (hyperparameter search; not a DVC stage)
genfoundry retrain   (scheduled: locked, change-detecting dvc repro; exit 0 ok, 1 failed, 2 config, 75 locked)
genfoundry sample --model genfoundry-vae_mnist@champion -n 64 -o grid.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from components.errors import GenfoundryError
from pipelines import retrain
from pipelines._common import EXPERIMENT, console, stage

# torch, Ray and MLflow are imported inside the commands, never here: `genfoundry --help` answers at once.
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command("prepare")
def prepare_cmd() -> None:
    """Prepare the datasets of params.yaml (stage prepare)."""
    from pipelines import prepare

    prepare.main()


@app.command("features")
def features_cmd() -> None:
    """Train each image dataset's domain classifier and SimCLR encoder (stage features)."""
    from pipelines import features

    features.main()


@app.command("train")
def train_cmd(experiment: str = EXPERIMENT) -> None:
    """Train one experiment on Ray Train (stage train@EXP)."""
    from pipelines import train

    train.main(experiment)


@app.command("evaluate")
def evaluate_cmd(experiment: str = EXPERIMENT) -> None:
    """Evaluate one trained experiment (stage evaluate@EXP)."""
    from pipelines import evaluate

    evaluate.main(experiment)


@app.command("audit")
def audit_cmd(experiment: str = EXPERIMENT) -> None:
    """Bias-audit one evaluated experiment (stage audit@EXP)."""
    from pipelines import audit

    audit.main(experiment)


@app.command("register")
def register_cmd(experiment: str = EXPERIMENT) -> None:
    """Register one experiment and decide its aliases (stage register@EXP)."""
    from pipelines import register

    register.main(experiment)


@app.command("summary")
def summary_cmd(experiment: str = EXPERIMENT) -> None:
    """Bundle one experiment's reports for the leaderboard (stage summary@EXP)."""
    from pipelines import report

    report.summary(experiment)


@app.command("report")
def report_cmd() -> None:
    """Write reports/leaderboard.md and .html, log them to MLflow (stage report)."""
    from pipelines import report

    report.main()


@app.command("tune")
def tune_cmd(
    experiment: str = EXPERIMENT,
    apply: bool = typer.Option(False, "--apply", help="write the best values into params.yaml afterwards"),
    apply_only: bool = typer.Option(
        False, "--apply-only", help="no search: write the values of the last search (tune_best.json) into params.yaml"
    ),
) -> None:
    """Search one experiment's hyperparameters (params.yaml experiments.EXP.tune) with Ray Tune + ASHA; writes
    reports/EXP/tune_best.json, --apply writes the best values into params.yaml."""
    from pipelines import tune

    tune.main(experiment, apply=apply, apply_only=apply_only)


app.command("retrain", help=retrain.HELP)(retrain.main)


@app.command()
@stage
def promote(
    model: str = typer.Argument(..., help="registered model name, e.g. genfoundry-vae_mnist"),
    version: str = typer.Argument(..., help="version to make champion"),
    force: bool = typer.Option(False, "--force", help="promote even though the version's audit failed"),
    reason: str | None = typer.Option(None, "--reason", help="why (required with --force; recorded in a tag)"),
) -> None:
    """Make VERSION the champion by hand (the old champion keeps alias `previous`). A version whose audit failed
    needs --force and --reason; who forced it and why are recorded in its tag `promotion.forced`."""
    import datetime as dt
    import getpass

    from components.tracking import registry
    from components.tracking.runs import client

    c = client(Path.cwd())
    tags = registry.check_version(c, model, version)  # before anything moves
    failed = tags.get("audit.passed") == "False"
    if failed and not force:
        raise GenfoundryError(
            f"{model} v{version}: expected a version whose audit passed, got one that failed "
            f"({tags.get('audit.failed') or 'see its audit'}); pass --force --reason '...' to promote it anyway"
        )
    if force and not reason:
        raise GenfoundryError("--force: expected --reason '...' (recorded with the promotion), got none")
    old = registry.promote(c, model, version)
    note = f"manual (previous champion: {old})"
    if force:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        c.set_model_version_tag(model, version, "promotion.forced", f"by {getpass.getuser()} at {stamp}: {reason}")
        note += f"; forced{' over a failed audit' if failed else ''}"
    c.set_model_version_tag(model, version, "promotion", note)
    console.print(f"{model}: champion {old} -> {version}", highlight=False)


@app.command()
@stage
def rollback(model: str = typer.Argument(..., help="registered model name")) -> None:
    """Champion <- previous; the demoted version keeps alias `challenger`."""
    from mlflow.exceptions import MlflowException

    from components.errors import GenfoundryError
    from components.tracking import registry
    from components.tracking.runs import client

    c = client(Path.cwd())
    try:
        demoted, restored = registry.rollback(c, model)
    except MlflowException as e:
        raise GenfoundryError(str(e).splitlines()[0]) from None
    c.set_model_version_tag(model, demoted, "promotion", f"rolled back to {restored}")
    console.print(f"{model}: champion {demoted} -> {restored} (rolled back)")


@app.command()
@stage
def sample(
    model: str = typer.Option(..., "--model", "-m", help="registered model: NAME@ALIAS, NAME/VERSION or models:/ URI"),
    n: int = typer.Option(16, "-n", min=1, help="number of samples (at most 10,000)"),
    seed: int = typer.Option(0, help="random seed"),
    out: Path | None = typer.Option(
        None, "-o", "--out", help="PNG for images/points; .wav file or folder for audio (text is printed)"
    ),
    steps: int | None = typer.Option(None, help="sampling steps (diffusion)"),
    sampler: str | None = typer.Option(None, help="sampler name (diffusion: ddim, ddpm or dpmpp2m)"),
    eta: float | None = typer.Option(None, help="DDIM eta (diffusion)"),
    temperature: float | None = typer.Option(None, help="softmax temperature (autoregressive)"),
) -> None:
    """Draw samples from a registered model, using nothing but the MLflow registry. Only genfoundry's own
    sampler is loaded, rebuilt from its safetensors weights: nothing from the registry runs as code."""
    import numpy as np

    from components.evaluation.grids import image_grid, save_png, scatter_plot
    from components.tracking.loading import draw, load_registered
    from components.tracking.runs import client

    client(Path.cwd())
    loaded = load_registered(model)
    options = dict(steps=steps, sampler=sampler, eta=eta, temperature=temperature)
    result = draw(loaded.model, n, seed=seed, options=options)
    if isinstance(result, list):
        for s in result:
            typer.echo(s)
        return
    arr = np.asarray(result)
    if loaded.model.spec.kind == "audio":
        files = _write_clips(arr, out, int(loaded.model.spec.extras["sample_rate"]))
        console.print(f"wrote {len(arr)} clips from {model}: {', '.join(str(f) for f in files[:4])}"
                      f"{' ...' if len(files) > 4 else ''}")  # fmt: skip
        return
    if out is None:
        raise GenfoundryError("images and points need an output file: pass -o samples.png")
    img = image_grid(arr) if arr.ndim == 4 else scatter_plot(arr)
    save_png(img, out)
    console.print(f"wrote {len(arr)} samples from {model} to {out}")


def _write_clips(clips: Any, out: Path | None, sample_rate: int) -> list[Path]:
    """Audio samples as 16-bit WAV files: ``-o clip.wav`` (one clip; several: clip_0.wav, clip_1.wav, ...) or
    ``-o folder/`` (sample_0.wav, ...)."""
    from components.data.audio import write_wav

    if out is None:
        raise GenfoundryError("audio needs an output: pass -o clip.wav or -o a_folder/")
    if out.suffix.lower() == ".wav":
        files = [out] if len(clips) == 1 else [out.with_name(f"{out.stem}_{i}.wav") for i in range(len(clips))]
    elif out.suffix:
        raise GenfoundryError(f"-o: expected a .wav file or a folder for audio, got {str(out)!r}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        files = [out / f"sample_{i}.wav" for i in range(len(clips))]
    for f, clip in zip(files, clips, strict=True):
        write_wav(f, clip, sample_rate)
    return files


MASKS = ("bottom", "center", "right")


def _fillers() -> list[Any]:
    """The families that can fill masked images (their record declares inpaint or complete)."""
    from components.models.capabilities import Completes, Inpaints
    from components.models.family import FAMILIES

    return [f for f in FAMILIES.values() if f.supports(Inpaints) or f.supports(Completes)]


def known_mask(shape: tuple[int, ...], kind: str, rows: int | None) -> Any:
    """1 = known pixel. ``bottom``: the top ``rows`` rows known (default half); ``center``: the middle half of
    each side unknown; ``right``: the left half known."""
    import torch

    mask = torch.ones(shape)
    h, w = shape[-2], shape[-1]
    if kind == "bottom":
        rows = h // 2 if rows is None else rows
        if not 0 < rows < h:
            raise GenfoundryError(f"expected 0 < --rows < {h}, got {rows}")
        mask[..., rows:, :] = 0.0
    elif kind == "center":
        mask[..., h // 4 : h - h // 4, w // 4 : w - w // 4] = 0.0
    elif kind == "right":
        mask[..., :, w // 2 :] = 0.0
    else:
        raise GenfoundryError(f"--mask: expected one of {list(MASKS)}, got {kind!r}")
    return mask


def _fill(
    model: str, dataset: str, *, n: int, seed: int, out: Path, kind: str, rows: int | None, steps: int | None
) -> None:
    """Load ``model`` from the registry, fill the ``kind`` region of ``n`` test images, save a PNG."""
    import numpy as np
    import torch

    from components.data import load_split
    from components.evaluation.grids import image_grid, save_png
    from components.layout import DATA
    from components.models.capabilities import Completes, Inpaints
    from components.models.family import get_family
    from components.tracking.loading import load_registered
    from components.tracking.runs import client

    client(Path.cwd())
    loaded = load_registered(model)
    net, family = loaded.model, get_family(loaded.info["family"])
    x, _ = load_split(DATA, dataset, "test")
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(net.spec.shape):
        raise GenfoundryError(f"expected {dataset!r} images of shape {tuple(net.spec.shape)}, got {x.shape[1:]}")
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(x[rng.choice(len(x), min(n, len(x)), replace=False)]).float()  # (n, C, H, W)
    mask = known_mask(tuple(images.shape), kind, rows)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if family.supports(Inpaints):
            filled = net.inpaint(images, mask, generator=gen, **({"steps": steps} if steps else {}))
        elif family.supports(Completes) and kind == "bottom":
            filled = net.complete(images, int(mask[0, 0, :, 0].sum()), generator=gen)
        elif family.supports(Completes):
            raise GenfoundryError(f"{model} is autoregressive (raster order): expected --mask bottom, got {kind!r}")
        else:
            raise GenfoundryError(
                f"{model} is a {family.name} model: expected a model that can fill images "
                f"({', '.join(sorted(f.name for f in _fillers()))})"
            )
    given = images * mask + 0.5 * (1 - mask)  # the unknown part shown grey
    grid = torch.stack([given, filled.float().cpu(), images], dim=1).flatten(0, 1)  # (3n, C, H, W)
    save_png(image_grid(grid, nrow=3), out)
    console.print(f"filled the {kind} of {len(images)} {dataset} test images with {model}: {out}")


@app.command()
@stage
def complete(
    model: str = typer.Option(..., "--model", "-m", help="registered PixelCNN or diffusion model: NAME@ALIAS"),
    dataset: str = typer.Option(..., help="prepared dataset whose test images are completed"),
    rows: int = typer.Option(None, help="image rows given (default: the top half)"),
    n: int = typer.Option(8, "-n", min=1, help="number of images"),
    seed: int = typer.Option(0, help="random seed (which test images, and the sampling noise)"),
    out: Path = typer.Option(..., "-o", "--out", help="PNG: given | completed | original, one column each"),
    steps: int | None = typer.Option(None, help="sampling steps (diffusion)"),
) -> None:
    """Complete the bottom of test images from their top rows: PixelCNN samples the missing pixels in
    raster order; diffusion inpaints them (RePaint resampling). The model comes from the registry."""
    _fill(model, dataset, n=n, seed=seed, out=out, kind="bottom", rows=rows, steps=steps)


@app.command()
@stage
def inpaint(
    model: str = typer.Option(..., "--model", "-m", help="registered diffusion (or PixelCNN) model: NAME@ALIAS"),
    dataset: str = typer.Option(..., help="prepared dataset whose test images are inpainted"),
    mask: str = typer.Option("center", help=f"the unknown region: one of {', '.join(MASKS)}"),
    n: int = typer.Option(8, "-n", min=1, help="number of images"),
    seed: int = typer.Option(0, help="random seed (which test images, and the sampling noise)"),
    out: Path = typer.Option(..., "-o", "--out", help="PNG: given | inpainted | original, one column each"),
    steps: int | None = typer.Option(None, help="sampling steps (diffusion; default: the model's)"),
) -> None:
    """Fill a masked region of test images. Diffusion uses RePaint resampling (arXiv 2201.09865: the known
    region is re-noised to each step's level and the unknown one denoised, ``inpaint_resample`` rounds per
    step); PixelCNN can only fill ``--mask bottom`` (raster order)."""
    _fill(model, dataset, n=n, seed=seed, out=out, kind=mask, rows=None, steps=steps)


@app.command()
@stage
def leaderboard(
    path: Path = typer.Option(Path("reports/leaderboard.md"), help="the markdown the report stage wrote"),
) -> None:
    """Print the leaderboard of every experiment (reports/leaderboard.md; `dvc repro report` writes it)."""
    from rich.console import Console
    from rich.markdown import Markdown

    if not path.exists():
        raise GenfoundryError(f"Expected {path}, got no such file; run `dvc repro report` first")
    Console().print(Markdown(path.read_text()))


if __name__ == "__main__":
    app()
