"""Text metrics: held-out NLL and perplexity, a bigram baseline, and the novelty / diversity of samples.

- NLL is in nats per predicted token, EOS included and PAD excluded (makemore's convention); perplexity is
  ``exp(NLL)``, computed independently by ``torchmetrics.text.Perplexity`` as a cross-check.
- The baseline is an add-one (Laplace) smoothed character bigram model fitted on the training split, scored
  with the same code as the model.
- Samples are bucketed as in makemore: in the training set, in the test set (not in train), or new
  (``components.evaluation.memorization.text_novelty``).
- distinct-n (Li et al., arXiv 1510.03055): distinct character n-grams / all character n-grams of the samples.
- Length match: total variation between length histograms and the 1-Wasserstein distance between lengths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.text import Perplexity

from components.data.spec import DataSpec
from components.data.text import EOS, PAD, SPECIALS, encode, vocab_size
from components.evaluation.memorization import text_novelty

LogitsFn = Callable[[Tensor], tuple[Tensor, Tensor]]  # ids (B, T) -> logits (B, T-1, V), targets (B, T-1)


class TokenNLL(Metric):
    """Mean negative log-likelihood in nats per target token, ``ignore_index`` targets excluded."""

    full_state_update = False

    def __init__(self, *, ignore_index: int = PAD, **kwargs: Any):
        super().__init__(**kwargs)
        self.ignore_index = ignore_index
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        """``logits`` (B, T, V), ``target`` (B, T)."""
        self.total += F.cross_entropy(
            logits.flatten(0, 1).double(), target.flatten(), ignore_index=self.ignore_index, reduction="sum"
        )
        self.count += (target != self.ignore_index).sum()

    def compute(self) -> Tensor:
        return self.total / self.count


@torch.no_grad()
def heldout_nll(
    logits_fn: LogitsFn, ids: Tensor, *, batch_size: int = 512, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """NLL (nats per char, EOS included) and perplexity of token ids (N, T) under a model's ``logits``.

    Put the model in eval mode first; batches go to ``device``, the sums stay on the CPU in float64.
    """
    nll, ppl = TokenNLL(ignore_index=PAD), Perplexity(ignore_index=PAD)
    for chunk in ids.split(batch_size):
        logits, targets = logits_fn(chunk.to(device))  # (B, T-1, V), (B, T-1)
        logits = logits.double().cpu()
        targets = targets.cpu()
        nll.update(logits, targets)
        ppl.update(logits, targets)
    return {"nll_nats_per_char": nll.compute().item(), "perplexity": ppl.compute().item()}


class BigramLM:
    """Character bigram model with add-``alpha`` smoothing over the outputs characters and EOS.

    Contexts are BOS and the characters; a context never seen gets the uniform distribution.
    """

    def __init__(self, strings: Sequence[str], spec: DataSpec, *, alpha: float = 1.0):
        V = vocab_size(spec)
        ids = torch.from_numpy(encode(list(strings), spec))  # (N, T)
        prev, nxt = ids[:, :-1].flatten(), ids[:, 1:].flatten()
        keep = nxt != PAD
        counts = torch.zeros(V, V, dtype=torch.float64)
        counts.index_put_((prev[keep], nxt[keep]), torch.ones(int(keep.sum()), dtype=torch.float64), accumulate=True)
        counts[:, len(SPECIALS) :] += alpha
        counts[:, EOS] += alpha
        self.log_probs = (counts / counts.sum(1, keepdim=True)).log()  # (V, V); PAD and BOS columns: -inf
        self.spec = spec

    def logits(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probabilities (B, T-1, V) of the next token and the targets ``ids[:, 1:]``."""
        return self.log_probs[ids[:, :-1]], ids[:, 1:]

    def nll(self, strings: Sequence[str]) -> float:
        """Mean NLL in nats per char (EOS included) of ``strings``."""
        return heldout_nll(self.logits, torch.from_numpy(encode(list(strings), self.spec)))["nll_nats_per_char"]


def uniqueness(samples: Sequence[str]) -> float:
    """Distinct samples / samples."""
    return len(set(samples)) / max(len(samples), 1)


def distinct_n(samples: Sequence[str], n: int) -> float:
    """Distinct character n-grams / all character n-grams over the samples (0 if there are none)."""
    grams = [s[i : i + n] for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def length_distance(samples: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """Total variation between the length histograms, and the 1-Wasserstein distance between lengths."""
    a = np.array([len(s) for s in samples])
    b = np.array([len(s) for s in reference])
    size = int(max(a.max(initial=0), b.max(initial=0))) + 1
    pa = np.bincount(a, minlength=size) / max(len(a), 1)
    pb = np.bincount(b, minlength=size) / max(len(b), 1)
    return {"length_tv": float(0.5 * np.abs(pa - pb).sum()), "length_w1": float(wasserstein_distance(a, b))}


def sample_metrics(samples: Sequence[str], *, train: Sequence[str], test: Sequence[str]) -> dict[str, float]:
    """Novelty buckets, uniqueness, distinct-1..3 and the length match of ``samples`` against ``test``."""
    return {
        **{f"novelty_{k}": v for k, v in text_novelty(samples, train, test).items()},
        "uniqueness": uniqueness(samples),
        **{f"distinct_{n}": distinct_n(samples, n) for n in (1, 2, 3)},
        **length_distance(samples, test),
    }


def text_metrics(
    logits_fn: LogitsFn,
    spec: DataSpec,
    *,
    train: Sequence[str],
    test: Sequence[str],
    samples: Sequence[str],
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Everything above for one model: held-out NLL/perplexity, the bigram baseline, sample metrics.

    ``logits_fn`` is e.g. ``GPT.logits``; ``nll_vs_bigram`` is the relative improvement over the baseline.
    """
    ids = torch.from_numpy(encode(list(test), spec))
    model = heldout_nll(logits_fn, ids, batch_size=batch_size, device=device)
    bigram = BigramLM(train, spec).nll(test)
    return {
        **model,
        "bigram_nll_nats_per_char": bigram,
        "nll_vs_bigram": 1.0 - model["nll_nats_per_char"] / bigram,
        **sample_metrics(samples, train=train, test=test),
    }
