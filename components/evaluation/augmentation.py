"""Data-augmentation utility of generated images: does adding them to the real training set help a classifier?

The same small classifier (an MLP on pixels, fixed seed, fixed number of steps) is trained twice — on the real
training split, and on the real training split plus the generated images labelled by the domain classifier
(pseudo-labels) — and both are scored on the real test split. ``delta`` = accuracy(real + generated) −
accuracy(real); its interval is a paired bootstrap over test images. A generator whose samples are
realistic, varied and of the class the domain classifier says help (delta > 0, as for real extra data); off-
class, collapsed or junk samples hurt. This is the "seed application" check of generative models used for
data augmentation (cf. the classification accuracy score, Ravuri & Vinyals, arXiv 1905.10887, which trains
on generated data alone).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.evaluation.stats import bootstrap_ci, torch_threads


def _tensor(x: Any) -> Tensor:
    t = x.detach().cpu() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))
    return t.float().flatten(1)


def _labels(y: Any) -> Tensor:
    return (y.detach().cpu() if isinstance(y, Tensor) else torch.from_numpy(np.asarray(y))).long().reshape(-1)


def train_and_score(
    x: Tensor,
    y: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    num_classes: int,
    steps: int,
    batch_size: int,
    lr: float,
    hidden: int,
    seed: int,
) -> np.ndarray:
    """Train an MLP (D → hidden → K, Adam, ``steps`` minibatches drawn epoch by epoch) on (x, y); return
    per-test-image correctness (bool array)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    params = list(model.parameters())
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    order = torch.empty(0, dtype=torch.long)
    for t in range(1, steps + 1):
        if len(order) < min(batch_size, len(x)):
            order = torch.cat([order, torch.randperm(len(x), generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        grads = torch.autograd.grad(F.cross_entropy(model(x[idx]), y[idx]), params)
        _adam_step(params, grads, moments, lr=lr, t=t)
    with torch.no_grad():
        return (model(x_test).argmax(-1) == y_test).numpy()


@torch.no_grad()
def _adam_step(
    params: list[Tensor], grads: tuple[Tensor, ...], moments: list[tuple[Tensor, Tensor]], *, lr: float, t: int
) -> None:
    """One Adam step (Kingma & Ba, arXiv 1412.6980, Algorithm 1; β 0.9 / 0.999, ε 1e-8), written out because
    the first ``torch.optim`` optimizer of a process imports ``torch._dynamo``: 1-3 s per evaluation."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    for p, g, (m, v) in zip(params, grads, moments, strict=True):
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.addcdiv_(m / (1 - b1**t), (v / (1 - b2**t)).sqrt_().add_(eps), value=-lr)


def augmentation_utility(
    train: tuple[Any, Any],
    test: tuple[Any, Any],
    fake: Any,
    fake_labels: Any,
    *,
    num_classes: int,
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 1e-3,
    hidden: int = 128,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Test accuracy of a small classifier trained on real vs real + generated data (module docstring).

    ``train``/``test`` are (images, labels) of the real splits, ``fake`` the generated images and
    ``fake_labels`` their pseudo-labels; images are (N, C, H, W) or (N, D). Both runs use the same seed
    (same initialisation) and the same number of steps, enough for the MLP to converge on either set (fixed
    epochs would give the larger set more steps, and more steps alone raise accuracy). Returns ``acc_real``,
    ``acc_real_plus_generated``, ``delta``, ``delta_ci95`` (paired percentile bootstrap over test images,
    ``n_boot`` resamples), the counts and the recipe.
    """
    x_real, y_real = _tensor(train[0]), _labels(train[1])
    x_test, y_test = _tensor(test[0]), _labels(test[1])
    x_fake, y_fake = _tensor(fake), _labels(fake_labels)
    if len(x_fake) == 0 or len(x_fake) != len(y_fake):
        raise ValueError(
            "augmentation_utility: expected at least one generated image and one label per image, "
            f"got {len(x_fake)} images and {len(y_fake)} labels"
        )
    if not x_real.shape[1] == x_test.shape[1] == x_fake.shape[1]:
        raise ValueError(
            f"augmentation_utility: expected real and generated images of one size, got {x_real.shape[1]} (train), "
            f"{x_test.shape[1]} (test) and {x_fake.shape[1]} (generated) values per image"
        )
    for name, y in (("train", y_real), ("test", y_test), ("generated", y_fake)):
        if len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes:
            raise ValueError(
                f"augmentation_utility: expected {name} labels in [0, {num_classes}), "
                f"got {int(y.min())}..{int(y.max())}"
            )
    if steps < 1:
        raise ValueError(f"augmentation_utility: expected steps >= 1, got {steps}")
    recipe = dict(num_classes=num_classes, steps=steps, batch_size=batch_size, lr=lr, hidden=hidden, seed=seed)
    with torch_threads(1):  # a small MLP: one thread beats two spin-waiting ones on a shared CPU
        base = train_and_score(x_real, y_real, x_test, y_test, **recipe)
        aug = train_and_score(torch.cat([x_real, x_fake]), torch.cat([y_real, y_fake]), x_test, y_test, **recipe)
    ci = bootstrap_ci(
        lambda a, b: b.mean() - a.mean(),
        base.astype(float),
        aug.astype(float),
        n_boot=n_boot,
        seed=seed,
        paired=True,
    )
    return {
        "acc_real": float(base.mean()),
        "acc_real_plus_generated": float(aug.mean()),
        "delta": float(aug.mean() - base.mean()),
        "delta_ci95": [float(ci.lo), float(ci.hi)],
        "n_real": int(len(x_real)),
        "n_generated": int(len(x_fake)),
        "n_test": int(len(x_test)),
        "classifier": f"MLP {x_real.shape[1]}-{hidden}-{num_classes} on pixels, Adam lr {lr:g}, {steps} steps, "
        f"batch {batch_size}, seed {seed}",
        "pseudo_labels": "domain classifier",
    }
