import math

import pytest
import torch

from components.data.spec import DataSpec
from components.data.text import PAD, encode, vocab_size
from components.errors import ConfigError
from components.models import build_model
from components.models.base import OptimConfig
from components.models.configs import GPTConfig as Config
from components.models.gpt import build

SPEC = DataSpec(name="t", kind="text", shape=(6,), vocab=tuple("abcdefghij"))
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0}


def _model(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(Config(**{**TINY, **overrides}), SPEC)


def test_changing_a_future_token_leaves_earlier_logits_unchanged():
    model = _model().eval()
    ids = torch.from_numpy(encode(["abcdef", "jihgfe"], SPEC))  # (2, 8)
    base = model.net(ids[:, :-1])
    for t in range(1, ids.shape[1] - 1):
        changed = ids[:, :-1].clone()
        changed[:, t] = (changed[:, t] + 1) % vocab_size(SPEC)
        out = model.net(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t])  # positions before t do not see token t
        assert not torch.allclose(out[:, t], base[:, t])  # position t does


def test_loss_at_init_is_close_to_uniform():
    model = _model()
    ids = torch.from_numpy(encode(["abc", "defghi", "j"] * 10, SPEC))
    loss = model((ids, torch.zeros(len(ids))))["loss"].item()
    assert abs(loss - math.log(vocab_size(SPEC))) < 0.1


def test_loss_ignores_pad_targets_and_counts_eos():
    model = _model()
    ids = torch.from_numpy(encode(["ab", "abcdef"], SPEC))
    logits = model.net(ids[:, :-1])
    targets = ids[:, 1:]
    keep = targets != PAD
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])  # 3 + 7 targets, EOS included
    assert keep.sum() == 10
    torch.testing.assert_close(model((ids, None))["loss"], expected)
    torch.testing.assert_close(model.likelihood((ids, None))["nll_nats_per_char"], expected)


def test_overfits_three_names_and_samples_them_back():
    names = ["abba", "cafe", "hij"]
    model = _model()
    step = model.make_train_step(wrap=lambda m: m, optim=OptimConfig(lr=1e-2))
    batch = (torch.from_numpy(encode(names * 4, SPEC)), torch.zeros(12))
    for _ in range(150):
        logs = step(batch)
    # the entropy floor: only the first character is uncertain, 3 log 3 nats over 14 targets = 0.235
    assert logs["loss"].item() < 0.26
    samples = model.eval().sample(60, generator=torch.Generator().manual_seed(0), temperature=0.5)
    assert set(samples) == set(names)


def test_sample_is_seeded_and_respects_options():
    model = _model().eval()
    a = model.sample(8, generator=torch.Generator().manual_seed(1), temperature=0.8, top_k=3)
    b = model.sample(8, generator=torch.Generator().manual_seed(1), temperature=0.8, top_k=3)
    assert a == b and len(a) == 8 and all(len(s) <= SPEC.shape[0] and set(s) <= set(SPEC.vocab) for s in a)
    with pytest.raises(ConfigError, match="^gpt.sample: expected temperature > 0, got 0.0"):
        model.sample(2, temperature=0.0)


def test_registry_builds_and_rejects_non_text():
    assert build_model("gpt", TINY, SPEC).net.block_size == SPEC.shape[0] + 1
    with pytest.raises(ConfigError, match="^gpt: expected a text dataset, got 'image' dataset 'd'"):
        build_model("gpt", TINY, DataSpec(name="d", kind="image", shape=(1, 8, 8), levels=17))
    with pytest.raises(ConfigError, match="^model.n_embd: expected a multiple of model.n_head = 3, got"):
        build_model("gpt", {**TINY, "n_head": 3}, SPEC)
