"""Transfer learning rules (``components.training.transfer``): which tensors load, strict loading, tied weights,
freezing (frozen weights bit-identical after training) and the learning rate of the loaded part."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_model

from components.config import TrainConfig
from components.data import prepare_dataset
from components.data.spec import DataSpec, RawData
from components.errors import ConfigError
from components.models import build_model
from components.models.configs import GPTConfig
from components.training.driver import train
from components.training.job import TrainJob, Transfer
from components.training.transfer import (
    apply_transfer,
    matches,
    plan_for,
    plan_transfer,
    read_weights,
    scale_loaded_lr,
)

ALPHABET = tuple("abcdef")
GPT = {"n_layer": 2, "n_head": 2, "n_embd": 16, "dropout": 0.0}


def spec(max_len: int) -> DataSpec:
    return DataSpec(name="t", kind="text", shape=(max_len,), vocab=ALPHABET)


def weights(model: torch.nn.Module, tmp_path, name: str = "parent") -> bytes:
    path = tmp_path / f"{name}.safetensors"
    save_model(model, str(path))  # drops the tied alias, as the store does
    return path.read_bytes()


def gpt(max_len: int, seed: int, **model):
    torch.manual_seed(seed)
    return build_model("gpt", {**GPT, **model}, spec(max_len))


def test_prefixes_match_at_a_dot_boundary():
    assert matches("net.blocks.1.attn.c_attn.weight", "net.blocks.1")
    assert matches("net.blocks.1.attn.c_attn.weight", "net.blocks.1.")
    assert not matches("net.blocks.10.attn.c_attn.weight", "net.blocks.1")
    assert matches("net.wte.weight", "net.wte.weight")


def test_shape_compatible_tensors_load_and_the_rest_are_listed(tmp_path):
    parent = gpt(13, seed=0)  # longer strings: a longer positional table
    child = gpt(11, seed=1)
    source = read_weights(weights(parent, tmp_path))
    assert "net.lm_head.weight" not in source or "net.wte.weight" not in source  # one name for the tied pair
    plan = plan_for(child, source)
    assert (
        set(plan.skipped) == {"net.wpe.weight"}
        and "[14, 16] in the parent, [12, 16] here" in plan.skipped["net.wpe.weight"]
    )
    assert {"net.wte.weight", "net.lm_head.weight"} <= set(plan.loaded)  # the tied pair counts as one tensor
    apply_transfer(child, source, plan)
    for name, tensor in child.state_dict().items():
        same = torch.equal(tensor, parent.state_dict()[name]) if name != "net.wpe.weight" else None
        assert same is None or same, name
    assert child.net.wte.weight is child.net.lm_head.weight  # tying survives the copy


def test_strict_loading_names_every_mismatch_in_one_line(tmp_path):
    source = read_weights(weights(gpt(13, seed=0), tmp_path))
    with pytest.raises(ConfigError) as e:
        plan_for(gpt(11, seed=1), source, strict=True)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("train.init_from.strict: expected every tensor to load, got 1 that")
    assert "net.wpe.weight (shape [14, 16] in the parent, [12, 16] here)" in msg
    deeper = read_weights(weights(gpt(11, seed=0, n_layer=3), tmp_path, "deeper"))
    with pytest.raises(ConfigError, match=r"net\.blocks\.2\.attn\.c_attn\.weight \(not in this model\)"):
        plan_for(gpt(11, seed=1), deeper, strict=True)
    assert (
        plan_for(gpt(11, seed=1), read_weights(weights(gpt(11, seed=0), tmp_path, "same")), strict=True).skipped == {}
    )


def test_load_prefixes_narrow_what_loads_and_must_match_something(tmp_path):
    source = read_weights(weights(gpt(11, seed=0), tmp_path))
    plan = plan_for(gpt(11, seed=1), source, load=("net.blocks",))
    assert plan.loaded and all(n.startswith("net.blocks.") for n in plan.loaded)
    assert plan.skipped["net.wte.weight"] == "not in train.init_from.load"
    with pytest.raises(ConfigError, match="train.init_from.load: expected a name prefix .* got 'embeddings', which"):
        plan_for(gpt(11, seed=1), source, load=("embeddings",))


def test_a_freeze_prefix_matching_no_loaded_parameter_is_one_line(tmp_path):
    source = read_weights(weights(gpt(13, seed=0), tmp_path))
    for prefix in ("embeddings", "net.wpe"):  # no such parameter; a parameter that did not load
        with pytest.raises(ConfigError) as e:
            plan_for(gpt(11, seed=1), source, freeze=(prefix,))
        assert "\n" not in str(e.value) and f"got {prefix!r}, which matches none (loaded: " in str(e.value)


def test_plan_transfer_refuses_nothing_by_default_on_buffers_and_empty_sources():
    target = {"a.weight": torch.zeros(2, 2), "b.running_mean": torch.zeros(2)}
    plan = plan_transfer(target, {}, trainable={"a.weight"})
    assert plan.loaded == () and set(plan.skipped) == {"a.weight", "b.running_mean"}


def test_loaded_lr_multiplier_splits_the_param_groups(tmp_path):
    source = read_weights(weights(gpt(13, seed=0), tmp_path))
    child = gpt(11, seed=1)
    plan = plan_for(child, source)
    apply_transfer(child, source, plan)
    from components.models.base import OptimConfig

    step = child.make_train_step(wrap=lambda m: m, optim=OptimConfig(lr=1e-3, weight_decay=0.0, betas=(0.9, 0.99)))
    scale_loaded_lr(step, child, plan, 0.1)
    (opt,) = step.optimizers.values()
    groups = {round(g["lr"], 8): {id(p) for p in g["params"]} for g in opt.param_groups}
    assert set(groups) == {1e-3, 1e-4}
    assert groups[1e-3] == {id(child.net.wpe.weight)}  # the one new tensor keeps the base lr
    assert id(child.net.wte.weight) in groups[1e-4]


@pytest.fixture(scope="module")
def text_root(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = np.array(["".join(rng.choice(list(ALPHABET), rng.integers(2, 12))) for _ in range(300)])
    root = tmp_path_factory.mktemp("text")
    prepare_dataset("words", RawData(x=words, y=None, kind="text", vocab=ALPHABET), root, val=0.1, test=0.2, seed=0)
    return root


def test_frozen_weights_stay_bit_identical_and_the_rest_train(text_root, tmp_path):
    from components.data import load_spec

    parent = build_model("gpt", GPT, DataSpec(name="p", kind="text", shape=(13,), vocab=ALPHABET))
    data = weights(parent, tmp_path)
    job = TrainJob(
        key="child",
        family="gpt",
        model=GPTConfig(**GPT),
        dataset="words",
        data_root=str(text_root),
        train=TrainConfig(epochs=2, batch_size=16, lr=3e-3, weight_decay=0.1, num_workers=0),
        run_name="child-test",
        storage_path=str(tmp_path / "ray"),
        transfer=Transfer(weights=data, freeze=("net.wte", "net.blocks.0"), lr_mult=0.5),
    )
    assert load_spec(text_root, "words").shape == (11,)
    model, state = train(job)
    assert state.epoch == 2
    before, after = parent.state_dict(), model.state_dict()
    frozen = [n for n in after if n.startswith(("net.wte.", "net.lm_head.", "net.blocks.0."))]
    assert frozen and all(torch.equal(after[n], before[n]) for n in frozen)  # weight decay included: untouched
    trained = [n for n in after if n.startswith(("net.blocks.1.", "net.ln_f."))]
    assert trained and not all(torch.equal(after[n], before[n]) for n in trained)
