import math

import numpy as np
import pytest
import torch

from components.data.spec import DataSpec
from components.data.text import BOS, EOS, PAD, encode, vocab_size
from components.evaluation.text import (
    BigramLM,
    TokenNLL,
    distinct_n,
    heldout_nll,
    length_distance,
    sample_metrics,
    text_metrics,
    uniqueness,
)

SPEC = DataSpec(name="t", kind="text", shape=(3,), vocab=("a", "b"))  # ids: a = 3, b = 4; V = 5


def test_token_nll_and_perplexity_agree_and_ignore_pad():
    torch.manual_seed(0)
    ids = torch.from_numpy(encode(["ab", "b", "aab", ""], SPEC))  # 3 + 2 + 4 + 1 = 10 targets
    logits = torch.randn(len(ids), ids.shape[1] - 1, vocab_size(SPEC))
    out = heldout_nll(lambda t: (logits[: len(t)], t[:, 1:]), ids, batch_size=4)
    targets = ids[:, 1:]
    keep = targets != PAD
    expected = -torch.log_softmax(logits.double(), -1)[keep].gather(1, targets[keep][:, None]).mean().item()
    assert out["nll_nats_per_char"] == pytest.approx(expected, rel=1e-12)
    assert out["perplexity"] == pytest.approx(math.exp(expected), rel=1e-6)


def test_token_nll_accumulates_over_batches_weighted_by_tokens():
    m = TokenNLL()
    uniform = torch.zeros(1, 4, 5)
    m.update(uniform, torch.tensor([[3, 4, EOS, PAD]]))  # 3 tokens at log 5
    m.update(torch.full((1, 4, 5), -1e4).index_fill_(2, torch.tensor([3]), 0.0), torch.tensor([[3, PAD, PAD, PAD]]))
    assert m.compute().item() == pytest.approx(3 * math.log(5) / 4)


def test_bigram_add_one_counts_by_hand():
    lm = BigramLM(["ab", "a"], SPEC)
    # outputs: a, b, EOS (3 with add-one). BOS -> a twice: (2 + 1) / (2 + 3); a -> b once, a -> EOS once
    p = lm.log_probs.exp()
    assert p[BOS, 3].item() == pytest.approx(3 / 5) and p[BOS, 4].item() == pytest.approx(1 / 5)
    assert p[3, 4].item() == pytest.approx(2 / 5) and p[3, EOS].item() == pytest.approx(2 / 5)
    assert p[4, EOS].item() == pytest.approx(2 / 4)
    assert p[:, PAD].sum() == 0 and p[:, BOS].sum() == 0
    torch.testing.assert_close(p.sum(1), torch.ones(5, dtype=torch.float64))
    # NLL of "ab": -(log 3/5 + log 2/5 + log 2/4) / 3 tokens
    assert lm.nll(["ab"]) == pytest.approx(-(math.log(3 / 5) + math.log(2 / 5) + math.log(1 / 2)) / 3)


def test_sample_diversity_metrics_known_answers():
    assert uniqueness(["ab", "ab", "b", "a"]) == 0.75
    assert distinct_n(["aab", "ab"], 1) == pytest.approx(2 / 5)
    assert distinct_n(["aab", "ab"], 2) == pytest.approx(2 / 3)  # aa, ab, ab
    assert distinct_n(["a", "b"], 3) == 0.0
    same = length_distance(["ab", "b"], ["ba", "a"])
    assert same == {"length_tv": 0.0, "length_w1": 0.0}
    d = length_distance(["a", "a"], ["abc", "abc"])
    assert d["length_tv"] == pytest.approx(1.0) and d["length_w1"] == pytest.approx(2.0)


def test_sample_metrics_buckets():
    m = sample_metrics(["ab", "ba", "bb", "ab"], train=["ab"], test=["ba", "ab"])
    assert (m["novelty_in_train"], m["novelty_in_test"], m["novelty_new"]) == (0.5, 0.25, 0.25)
    assert set(m) >= {"uniqueness", "distinct_1", "distinct_2", "distinct_3", "length_tv", "length_w1"}


def test_text_metrics_of_the_bigram_itself_match_its_baseline():
    train = ["ab", "a", "bba", "b"]
    lm = BigramLM(train, SPEC)
    m = text_metrics(lm.logits, SPEC, train=train, test=["ab", "ba"], samples=["ab"])
    assert m["nll_nats_per_char"] == pytest.approx(m["bigram_nll_nats_per_char"], rel=1e-12)
    assert m["nll_vs_bigram"] == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(m["perplexity"]) and m["perplexity"] == pytest.approx(math.exp(m["nll_nats_per_char"]))
