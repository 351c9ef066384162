import math

import torch

from components.data import load_spec, load_split
from components.models import build_model
from components.models.base import OptimConfig
from components.training.checkpoint import LocalCheckpoints, load_checkpoint, save_checkpoint
from components.training.loop import LoopState, data_tensors


def _data(root):
    spec = load_spec(root, "digits")
    return spec, data_tensors(spec, *load_split(root, "digits", "train"))


def step_optim() -> OptimConfig:
    return OptimConfig(lr=1e-3)


def test_checkpoint_round_trip(tmp_path, digits_root):
    spec, data = _data(digits_root)
    model = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
    step = model.make_train_step(wrap=lambda m: m, optim=step_optim())
    step((data[0][:32], data[1][:32]))
    save_checkpoint(tmp_path, model, step, LoopState(epoch=4, history=[{"epoch": 4, "loss": 1.5}]))
    other = build_model("vae", {"latent_dim": 4, "width": 8}, spec)
    state = load_checkpoint(tmp_path, other, other.make_train_step(wrap=lambda m: m, optim=step_optim()))
    assert state.epoch == 4 and state.history[0]["loss"] == 1.5
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert math.isfinite(state.history[0]["loss"])


def test_local_checkpoints_keep_the_newest_and_ignore_incomplete_folders(tmp_path):
    store = LocalCheckpoints(tmp_path / "ckpt", keep=2)
    assert store.latest() is None
    for epoch in (1, 2, 3):
        src = tmp_path / f"src{epoch}"
        src.mkdir()
        (src / "state.pt").write_bytes(str(epoch).encode())
        store.report({"epoch": epoch}, src)
    store.report({"epoch": 4}, None)  # a rank without a checkpoint: nothing kept
    (tmp_path / "ckpt" / "epoch_000009").mkdir()  # no state.pt: a crash mid-write, never resumed from
    assert store.latest().name == "epoch_000003"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if (p / "state.pt").exists()) == [
        "epoch_000002",
        "epoch_000003",
    ]
