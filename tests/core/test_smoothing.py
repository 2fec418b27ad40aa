"""Tests for certssb.core.smoothing (Cohen et al.'s inference-time smoothing) and certify.certify_counts.

Closed form: for a linear base classifier f(x) = [w.x > b] and Gaussian noise N(0, sigma^2 I),
P(f(x + eps) = 1) = Phi((w.x - b) / (sigma ||w||)), so the smoothed classifier's exact radius
sigma * Phi^-1(p_A) equals the distance |w.x - b| / ||w|| of x to the hyperplane.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm

from certssb.core import certify, ensemble, noise, smoothing
from certssb.core.validation import ConfigError


class Linear(torch.nn.Module):
    """Two logits [0, w.x - b]: class 1 iff w.x > b."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w.clone(), requires_grad=False)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w.flatten() - self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


def _linear_case(n: int = 6, sigma: float = 0.5):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 4, 4, generator=g)
    x = torch.rand(n, 1, 4, 4, generator=g)
    b = float((x.flatten(1) @ w.flatten()).median())
    dist = ((x.flatten(1) @ w.flatten() - b) / w.norm()).numpy()  # signed distance to the hyperplane
    return Linear(w, b).eval(), x, torch.full((n,), sigma), dist


def test_counts_match_the_closed_form_smoothed_probability():
    model, x, sigma, dist = _linear_case()
    n_draws = 20000
    out = smoothing.noise_counts(
        model, x, sigma, seed=1, split="clean", stage="estimation", num_draws=n_draws, num_classes=2
    )
    p1 = norm.cdf(dist / 0.5)  # Phi((w.x - b) / (sigma ||w||))
    assert out["counts"].sum(1).tolist() == [n_draws] * len(dist)
    frac = out["counts"][:, 1].numpy() / n_draws
    se = np.sqrt(p1 * (1 - p1) / n_draws)
    assert np.all(np.abs(frac - p1) <= 5 * se + 1e-9)


def test_certificate_is_below_the_exact_radius_and_close_to_it():
    model, x, sigma, dist = _linear_case(sigma=0.5)
    v = smoothing.certify_votes(
        model, x, sigma, seed=3, split="clean", n0=100, num_draws=20000, num_classes=2
    )
    labels = (dist > 0).astype(np.int64)
    df = certify.certify_counts(
        v["selection"].numpy(), v["estimation"].numpy(), sigma.numpy(), labels=labels, alpha=0.001
    )
    exact = np.abs(dist)  # sigma * Phi^-1(p_A) of the smoothed linear classifier
    ok = ~df["abstained"].to_numpy()
    assert ok.sum() >= 4 and (df["correct"].to_numpy()[ok]).all()
    assert np.all(df["radius"].to_numpy()[ok] <= exact[ok] + 1e-9)  # holds w.p. >= 1 - alpha per sample
    assert np.all(exact[ok] - df["radius"].to_numpy()[ok] < 0.1)  # N = 20,000 draws: a tight bound
    # the radius is sigma * Phi^-1 of the Clopper-Pearson bound on k_A of the N draws (scipy)
    i = int(np.flatnonzero(ok)[0])
    k = int(v["estimation"][i, df["prediction"].iloc[i]])
    low = binomtest(k, 20000, alternative="greater").proportion_ci(0.999, "exact").low
    assert df["p_lower_a"].iloc[i] == pytest.approx(low, rel=1e-9)
    assert df["radius"].iloc[i] == pytest.approx(0.5 * norm.ppf(low), rel=1e-9)
    np.testing.assert_allclose(df["radius"], df["radius_published"])
    assert (df["n_estimation"] == 20000).all()  # the bound counts draws (i.i.d. given the fixed model)


def test_certify_counts_abstains_at_one_half_and_reaches_the_ceiling_when_unanimous():
    sel = np.array([[5, 0], [0, 5], [3, 2]])
    est = np.array([[100, 0], [50, 50], [0, 100]])  # unanimous / a tie / selection picked the loser
    df = certify.certify_counts(sel, est, 0.25, labels=np.array([0, 1, 0]), alpha=0.001)
    assert df["radius"].iloc[0] == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 100)))
    assert df["radius"].iloc[0] == pytest.approx(0.25 * certify.radius_ceiling(100, 0.001, "clopper_pearson"))
    assert df["abstained"].tolist() == [False, True, True] and df["prediction"].tolist() == [0, -1, -1]
    with pytest.raises(ConfigError, match="estimation_counts"):
        certify.certify_counts(sel, np.array([[100, 0], [50, 40], [0, 100]]), 0.25, labels=np.zeros(3))


def test_draws_are_reproducible_and_independent_of_the_batch_size():
    model, x, sigma, _ = _linear_case(n=11)  # two chunks of SAMPLE_CHUNK and a partial one
    kw = {"seed": 5, "split": "triggered", "n0": 7, "num_draws": 60, "num_classes": 2}
    a = smoothing.certify_votes(model, x, sigma, batch_size=13, **kw)
    b = smoothing.certify_votes(model, x, sigma, batch_size=1000, **kw)
    for key in ("selection", "estimation", "votes"):
        assert torch.equal(a[key], b[key])
    c = smoothing.certify_votes(model, x, sigma, **{**kw, "seed": 6})
    assert not torch.equal(a["estimation"], c["estimation"])
    assert a["votes"].shape == (1, 11, 2) and torch.allclose(a["votes"].sum(-1), torch.ones(1, 11))
    with pytest.raises(ConfigError, match="parameter 'num_draws' = 0"):
        smoothing.certify_votes(model, x, sigma, **{**kw, "num_draws": 0})


def test_augmented_training_draws_fresh_noise_per_batch_reproducibly():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    plan = noise.make_noise_plan(
        seed=0, num_models=1, sigma=0.25, num_draws=1, n_train=64, input_shape=[1, 28, 28]
    )
    cfg = ensemble.TrainConfig(epochs=2, batch_size=32)
    sig = torch.full((64,), 0.25)
    a = ensemble.train_one(x, y, sig, plan, 0, cfg, 10, torch.device("cpu"), augment=True)
    b = ensemble.train_one(x, y, sig, plan, 0, cfg, 10, torch.device("cpu"), augment=True)
    fixed = ensemble.train_one(x, y, sig, plan, 0, cfg, 10, torch.device("cpu"))
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert not all(torch.equal(a.params[k], fixed.params[k]) for k in a.params)


def _reference_counts(model, x, sigma, *, seed, split, stage, num_draws, num_classes):
    """The draws as defined: one ``randn((draws, b, C, H, W))`` per chunk of SAMPLE_CHUNK samples."""
    counts = []
    for c, start in enumerate(range(0, x.shape[0], smoothing.SAMPLE_CHUNK)):
        xb, sb = x[start : start + smoothing.SAMPLE_CHUNK], sigma[start : start + smoothing.SAMPLE_CHUNK]
        g = torch.Generator().manual_seed(
            noise._derive(seed, noise.SPLIT_IDS[split], smoothing.STAGES[stage], c)
        )
        eps = torch.randn((num_draws, *xb.shape), generator=g)
        with torch.no_grad():
            logits = model((xb.unsqueeze(0) + sb.view(1, -1, 1, 1, 1) * eps).flatten(0, 1))
        counts.append(
            torch.nn.functional.one_hot(logits.argmax(1), num_classes).view(num_draws, -1, num_classes)
        )
    return torch.cat([c.sum(0) for c in counts])


@pytest.mark.parametrize("shape", [(1, 4, 4), (1, 3, 3)])  # 16 values per image; 9 (not a multiple of 16)
def test_batched_draws_and_threads_reproduce_the_defined_noise_stream(shape):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(*shape, generator=g)
    model = Linear(w, 0.1).eval()
    x, sigma = torch.rand(19, *shape, generator=g), torch.full((19,), 0.7)
    kw = {"seed": 2, "split": "clean", "stage": "estimation", "num_draws": 90, "num_classes": 2}
    ref = _reference_counts(model, x, sigma, **kw)
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            out = smoothing.noise_counts(model, x, sigma, batch_size=40, **kw)  # several forwards per chunk
            assert torch.equal(out["counts"], ref)
            assert torch.get_num_threads() == t  # the worker threads' setting does not leak
    finally:
        torch.set_num_threads(threads)


def test_the_callers_model_is_left_as_it_was():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 2, 4), torch.nn.Flatten()).train()
    x = torch.rand(5, 1, 6, 6)
    out = smoothing.noise_counts(
        net, x, torch.full((5,), 0.3), seed=0, split="clean", stage="selection", num_draws=4, num_classes=2
    )
    assert out["counts"].sum().item() == 20
    assert net.training and net[1].weight.is_contiguous()  # no eval(), no channels_last on the caller's model
