"""The family contract, checked for every record of the family table: what a family promises the pipeline.

Sample shape and range; same seed -> same samples; a save/load round trip through the model store; a finite
loss; a train step that works wrapped in DistributedDataParallel; an unknown sampler option is a ConfigError;
the capabilities the record declares are exactly the protocols the model implements; the likelihood numbers it
declares are the ones the model reports; and its hyperparameter schema rejects unknown keys.
"""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn

from components.data.spec import DataSpec
from components.data.text import encode
from components.errors import ConfigError
from components.models.base import OptimConfig
from components.models.capabilities import CAPABILITIES
from components.models.family import FAMILIES, get_family
from components.models.store import load_trained, save_trained
from components.models.wavenet import mu_law_decode

IMAGE = DataSpec(name="img", kind="image", shape=(1, 8, 8), class_names=tuple("ab"), levels=17)
TEXT = DataSpec(name="txt", kind="text", shape=(6,), vocab=tuple("abcdef"))
AUDIO = DataSpec(name="aud", kind="audio", shape=(1, 32), class_names=tuple("ab"), extras={"sample_rate": 8000})
#: the smallest model of each family, on a dataset kind it supports
TINY: dict[str, tuple[dict, DataSpec]] = {
    "vae": ({"latent_dim": 2, "width": 4}, IMAGE),
    "gan": ({"latent_dim": 4, "width": 8}, IMAGE),
    "pixelcnn": ({"dim": 8, "n_layers": 2, "kernel_size": 3, "head_dim": 8}, IMAGE),
    "gpt": ({"n_layer": 1, "n_head": 2, "n_embd": 8}, TEXT),
    "diffusion": ({"dim": 8, "dim_mults": [1], "attn": False, "timesteps": 10, "sampling_steps": 4}, IMAGE),
    "wavenet": ({"residual_channels": 8, "skip_channels": 8, "dilation_cycles": 1, "layers_per_cycle": 2}, AUDIO),
}


def test_every_family_in_the_table_has_a_tiny_case_here():
    assert set(TINY) == set(FAMILIES)


def _batch(spec: DataSpec, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if spec.kind == "text":
        names = ["abc", "fed", "a", "bcdef"][:n]
        return torch.from_numpy(encode(names, spec)), torch.zeros(len(names), dtype=torch.long)
    if spec.kind == "audio":  # waveforms in [-1, 1] on the mu-law levels
        levels = torch.randint(0, 256, (n, *spec.shape), generator=g)
        return mu_law_decode(levels).float(), torch.randint(0, spec.num_classes, (n,), generator=g)
    levels = spec.levels or 256
    x = torch.randint(0, levels, (n, *spec.shape), generator=g).float() / (levels - 1)
    return x, torch.randint(0, max(1, spec.num_classes), (n,), generator=g)


def _build(name: str):
    raw, spec = TINY[name]
    torch.manual_seed(0)
    return get_family(name).build(raw, spec), spec


def _same(a, b) -> bool:
    return a == b if isinstance(a, list) else torch.equal(a, b)


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return request.param


def test_samples_have_the_data_shape_and_range(family):
    model, spec = _build(family)
    x = model.eval().sample(3, generator=torch.Generator().manual_seed(1))
    if spec.kind == "text":
        assert isinstance(x, list) and len(x) == 3 and all(isinstance(s, str) for s in x)
        assert all(len(s) <= spec.shape[0] and set(s) <= set(spec.vocab) for s in x)
    else:
        assert tuple(x.shape) == (3, *spec.shape) and torch.isfinite(x).all()
        assert x.min() >= (-1 if spec.kind == "audio" else 0) and x.max() <= 1


def test_the_same_seed_draws_the_same_samples(family):
    model, _ = _build(family)
    model.eval()
    a = model.sample(3, generator=torch.Generator().manual_seed(7))
    b = model.sample(3, generator=torch.Generator().manual_seed(7))
    assert _same(a, b)


def test_a_store_round_trip_keeps_the_model(family, tmp_path):
    model, _ = _build(family)
    raw, _ = TINY[family]
    save_trained(tmp_path / "m", model, {"family": family, "model": raw})
    again = load_trained(tmp_path / "m")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v.cpu(), v2.cpu()), k
    model.eval()
    assert _same(
        model.sample(2, generator=torch.Generator().manual_seed(3)),
        again.sample(2, generator=torch.Generator().manual_seed(3)),
    )


def test_the_loss_is_a_finite_scalar(family):
    model, spec = _build(family)
    out = model(_batch(spec))
    assert out["loss"].ndim == 0 and math.isfinite(out["loss"].item())
    assert all(v.ndim == 0 for v in out.values())


@pytest.fixture(scope="module")
def process_group():
    """A one-rank gloo process group: enough for DistributedDataParallel to wrap and all-reduce."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_the_train_step_runs_wrapped_for_data_parallelism(family, process_group):
    model, spec = _build(family)
    wrapped: list[nn.Module] = []

    def wrap(m: nn.Module) -> nn.Module:
        wrapped.append(nn.parallel.DistributedDataParallel(m))
        return wrapped[-1]

    step = model.make_train_step(wrap=wrap, optim=OptimConfig(lr=1e-3))
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    logs = step(_batch(spec))
    assert wrapped and step.optimizers
    assert all(math.isfinite(v.item()) for k, v in logs.items() if k.startswith(("loss", "grad_norm")))
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), "the step changed no weight"


def test_an_unknown_sampler_option_is_a_config_error(family):
    model, _ = _build(family)
    with pytest.raises(ConfigError, match=rf"^{family}\.sample: expected .*got \['bogus'\]"):
        model.eval().sample(2, generator=torch.Generator().manual_seed(0), bogus=1)


def test_the_declared_capabilities_are_the_implemented_protocols(family):
    model, _ = _build(family)
    record = get_family(family)
    for name, proto in CAPABILITIES.items():
        assert isinstance(model, proto) == record.supports(proto), (family, name)


def test_the_declared_likelihood_numbers_are_the_ones_the_model_reports(family):
    model, spec = _build(family)
    with torch.no_grad():
        reported = {f"test_{k}" for k in model.eval().likelihood(_batch(spec))}
    declared = {fact.metric for fact in get_family(family).likelihood}
    assert declared == reported, (family, sorted(declared), sorted(reported))


def test_the_schema_fills_defaults_and_rejects_unknown_keys(family):
    record = get_family(family)
    assert record.parse({}) == record.config()
    with pytest.raises(ConfigError, match=r"unknown key 'model\.bogus'"):
        record.parse({"bogus": 1})
    with pytest.raises(ConfigError, match=rf"{family}: expected a {record.config.__name__}"):
        other = next(f for f in FAMILIES.values() if f.config is not record.config)
        record.build(other.config(), TINY[family][1])
