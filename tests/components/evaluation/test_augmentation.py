import numpy as np
import pytest
from sklearn.datasets import load_digits

from components.evaluation.augmentation import augmentation_utility


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits as (N, 1, 8, 8) in [0, 1]: 60 real training images, 600 extra, 400 for testing."""
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    idx = np.random.default_rng(0).permutation(len(x))
    return x[idx], d.target[idx]


def test_extra_real_data_helps_and_wrong_labels_hurt(digits):
    x, y = digits
    train, extra, test = (x[:60], y[:60]), (x[60:660], y[60:660]), (x[-400:], y[-400:])
    kw = dict(num_classes=10, steps=150, seed=0, n_boot=300)
    good = augmentation_utility(train, test, *extra, **kw)  # "generated" = real images, correct labels
    assert good["delta"] == pytest.approx(good["acc_real_plus_generated"] - good["acc_real"])
    assert good["delta"] > 0.05 and good["delta_ci95"][0] > 0
    assert (good["n_real"], good["n_generated"], good["n_test"]) == (60, 600, 400)

    shuffled = np.random.default_rng(1).permutation(extra[1])  # the same images, labels that carry nothing
    bad = augmentation_utility(train, test, extra[0], shuffled, **kw)
    assert bad["acc_real"] == good["acc_real"]  # same seed, same data: the baseline run is reproduced
    assert bad["delta"] < -0.05 and bad["delta_ci95"][1] < 0


def test_bad_inputs_raise(digits):
    x, y = digits
    with pytest.raises(ValueError, match="^augmentation_utility: expected at least one generated image and one label"):
        augmentation_utility((x[:20], y[:20]), (x[20:40], y[20:40]), x[40:50], y[40:45], num_classes=10)
    with pytest.raises(ValueError, match="^augmentation_utility: expected real and generated images of one size"):
        augmentation_utility((x[:20], y[:20]), (x[20:40], y[20:40]), x[40:50, :, :4], y[40:50], num_classes=10)
    with pytest.raises(ValueError, match=r"^augmentation_utility: expected generated labels in \[0, 10\)"):
        augmentation_utility((x[:20], y[:20]), (x[20:40], y[20:40]), x[40:50], y[40:50] + 10, num_classes=10)


def test_the_hand_written_adam_step_matches_torch_optim_adam():
    import torch

    from components.evaluation.augmentation import _adam_step

    torch.manual_seed(0)
    ours = torch.randn(5, 3, requires_grad=True)
    ref = ours.detach().clone().requires_grad_(True)
    opt, moments = torch.optim.Adam([ref], lr=1e-2), [(torch.zeros(5, 3), torch.zeros(5, 3))]
    for t in range(1, 21):
        x = torch.randn(4, 5)
        _adam_step([ours], torch.autograd.grad((x @ ours).pow(2).sum(), [ours]), moments, lr=1e-2, t=t)
        opt.zero_grad()
        (x @ ref).pow(2).sum().backward()
        opt.step()
    assert torch.allclose(ours, ref, atol=1e-6)
