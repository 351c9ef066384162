import pytest
import torch

from components.config import TrainConfig
from components.data import load_spec, load_split
from components.errors import DivergenceError
from components.models import build_model
from components.models.base import OptimConfig
from components.training.loop import data_tensors, fit, lr_factor, set_lr


def _data(root):
    spec = load_spec(root, "digits")
    return spec, data_tensors(spec, *load_split(root, "digits", "train"))


def test_fit_lowers_the_loss(digits_root):
    spec, data = _data(digits_root)
    model = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
    hist = fit(model, data, TrainConfig(epochs=3, batch_size=64, lr=3e-3, num_workers=0))
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert {"loss", "recon", "kl", "grad_norm"} <= set(hist[0])


def test_same_seed_same_history(digits_root):
    spec, data = _data(digits_root)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
        runs.append(fit(model, data, TrainConfig(epochs=1, batch_size=64, lr=1e-3, seed=5)))
    assert runs[0] == runs[1]


def test_nan_loss_stops_the_run_loudly(digits_root):
    spec, data = _data(digits_root)
    model = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
    with torch.no_grad():
        model.decoder.fc.bias.fill_(float("nan"))
    with pytest.raises(
        DivergenceError,
        match=r"^train: expected finite gradients, got grad_norm = nan at epoch 1, step 0 \(training diverged\)",
    ):
        fit(model, data, TrainConfig(epochs=2, batch_size=64, lr=1e-3))


def test_exploding_loss_counts_as_divergence(digits_root):
    spec, data = _data(digits_root)
    model = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
    with pytest.raises(DivergenceError, match="max_loss"):
        fit(model, data, TrainConfig(epochs=1, batch_size=64, lr=1e-3, max_loss=1.0))


def step_optim() -> OptimConfig:
    return OptimConfig(lr=1e-3)


@pytest.mark.parametrize(
    ("schedule", "expected"), [("constant", [1.0, 1.0, 1.0]), ("linear", [1.0, 0.5, 0.25]), ("cosine", [1.0, 0.5])]
)
def test_lr_factor_values(schedule, expected):
    progress = [0.0, 0.5, 0.75][: len(expected)]
    assert [lr_factor(schedule, p) for p in progress] == pytest.approx(expected)


def test_linear_schedule_decays_every_optimizer_and_keeps_the_base_lr(digits_root):
    spec, data = _data(digits_root)
    model = build_model("gan", {"latent_dim": 4, "width": 8}, spec)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-3, num_workers=0, lr_schedule="linear")
    step = model.make_train_step(wrap=lambda m: m, optim=OptimConfig(lr=cfg.lr))
    set_lr(step, cfg, 0.75)
    for opt in step.optimizers.values():
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([2.5e-4] * len(opt.param_groups))
        assert {g["initial_lr"] for g in opt.param_groups} == {1e-3}
    set_lr(step, cfg, 0.0)  # recomputed from the base lr: a resumed run continues the same schedule
    assert {g["lr"] for o in step.optimizers.values() for g in o.param_groups} == {1e-3}
