"""Tests for certssb.core.sigma: the radius objective against scipy, gradients in closed form,
gradient ascent on a small trained model (objective rises, bounds hold, prefactor never lowers sigma),
determinism and validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from certssb.core.ensemble import TrainConfig, load_member, train_one
from certssb.core.noise import make_noise_plan
from certssb.core.sigma import SigmaConfig, optimise_sigma, radius_from_psi, smoothed_psi
from certssb.core.validation import ConfigError

N, SHAPE, C = 192, (1, 8, 8), 3
CLAMP = (0.02, 0.98)


def make_data():
    """Three classes, each a faint band (+0.15) in its own rows over uniform [0, 0.5] background:
    separable but not trivially, so psi is clamped for some samples and not for others."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(N) % C
    x = torch.rand(N, *SHAPE, generator=g) * 0.5
    for c in range(C):
        x[y == c, :, 2 * c : 2 * c + 3, :] += 0.15
    return x, y


@pytest.fixture(scope="module")
def trained():
    x, y = make_data()
    plan = make_noise_plan(seed=0, num_models=1, sigma=0.25, num_draws=1, n_train=N, input_shape=SHAPE)
    cfg = TrainConfig("mlp", epochs=5, batch_size=32, lr=3e-3)
    res = train_one(x, y, torch.full((N,), 0.25), plan, 0, cfg, C, torch.device("cpu"))
    return x, y, res.params


def net_of(params):
    return load_member("mlp", SHAPE, C, params, 0)


def scfg(**kw):
    args = dict(steps=15, draws=8, lr=0.04, gradient="reparam", sigma_min=0.25, sigma_max=1.5, batch_size=64)
    args.update(kw)
    return SigmaConfig(**args)


def eval_radius(net, x, y, sigma, draws=64, seed=123):
    """The objective re-estimated with many common draws (independent of the optimiser's noise)."""
    eps = torch.randn(draws, *x.shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return radius_from_psi(smoothed_psi(net, x, sigma, eps), y, sigma, CLAMP)


# ---------------------------------------------------------------- radius_from_psi against scipy


PSI = torch.tensor(
    [
        [0.60, 0.30, 0.10],  # A = 0 wins, nothing clamped
        [0.30, 0.50, 0.20],  # A = 0 loses: negative radius
        [0.995, 0.004, 0.001],  # both clamped: 0.98 / 0.02
        [0.001, 0.001, 0.998],  # anchor 1: psi_A clamped low, psi_B = class 2 clamped high
        [0.45, 0.10, 0.45],  # tie between A and B: radius 0
        [0.20, 0.35, 0.45],  # A = 2, B = 1
    ]
)
ANCHOR = torch.tensor([0, 0, 0, 1, 2, 2])


def scipy_parts(psi, anchor, clamp=CLAMP):
    p = np.clip(psi.numpy().astype(np.float64), *clamp)
    pa = p[np.arange(len(p)), anchor.numpy()]
    q = p.copy()
    q[np.arange(len(p)), anchor.numpy()] = -1
    pb = q.max(1)
    return norm.ppf(pa) - norm.ppf(pb)


def test_radius_from_psi_matches_scipy_with_clamping():
    sigma = torch.tensor([0.25, 0.5, 1.0, 0.3, 0.7, 2.0])
    r = radius_from_psi(PSI, ANCHOR, sigma, CLAMP)
    want = sigma.numpy() / 2 * scipy_parts(PSI, ANCHOR)
    np.testing.assert_allclose(r.numpy(), want, rtol=1e-5, atol=1e-6)
    # spot values: clamping gives the ceiling sigma * Phi^-1(0.98); a loss is negative; a tie is zero
    assert float(r[2]) == pytest.approx(1.0 * norm.ppf(0.98), rel=1e-5)
    assert float(r[3]) == pytest.approx(0.3 / 2 * (norm.ppf(0.02) - norm.ppf(0.98)), rel=1e-5)
    assert float(r[1]) < 0
    assert float(r[4]) == pytest.approx(0.0, abs=1e-6)


def test_radius_from_psi_other_clamp():
    sigma = torch.full((6,), 0.5)
    r = radius_from_psi(PSI, ANCHOR, sigma, (0.1, 0.9))
    want = 0.25 * scipy_parts(PSI, ANCHOR, (0.1, 0.9))
    np.testing.assert_allclose(r.numpy(), want, rtol=1e-5, atol=1e-6)


def test_prefactor_gradient_is_closed_form():
    """With psi fixed (model output detached), dR/dsigma = 1/2 (Phi^-1 psi_A - Phi^-1 psi_B)."""
    sigma = torch.tensor([0.25, 0.5, 1.0, 0.3, 0.7, 2.0], requires_grad=True)
    r = radius_from_psi(PSI, ANCHOR, sigma, CLAMP)
    (grad,) = torch.autograd.grad(r.sum(), sigma)
    np.testing.assert_allclose(grad.numpy(), 0.5 * scipy_parts(PSI, ANCHOR), rtol=1e-5, atol=1e-6)
    # and under the ReLU of the objective the gradient vanishes where R < 0
    (grad_relu,) = torch.autograd.grad(torch.relu(radius_from_psi(PSI, ANCHOR, sigma, CLAMP)).sum(), sigma)
    want = np.where(scipy_parts(PSI, ANCHOR) > 1e-6, 0.5 * scipy_parts(PSI, ANCHOR), 0.0)
    np.testing.assert_allclose(grad_relu.numpy(), want, rtol=1e-5, atol=1e-6)


def test_smoothed_psi_is_mean_softmax_over_draws():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, C))
    x = torch.rand(5, *SHAPE)
    eps = torch.randn(4, 5, *SHAPE)
    sigma = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    psi = smoothed_psi(net, x, sigma, eps)
    with torch.no_grad():
        want = torch.stack(
            [torch.softmax(net(x + sigma.view(-1, 1, 1, 1) * eps[d]), 1) for d in range(4)]
        ).mean(0)
    assert psi.shape == (5, C)
    torch.testing.assert_close(psi.detach(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(psi.sum(1).detach(), torch.ones(5))


# ---------------------------------------------------------------- the gradient ascent


def test_reparam_increases_the_objective_within_bounds(trained):
    x, y, params = trained
    cfg = scfg()
    out = optimise_sigma(net_of(params), x, y, 0.25, cfg, seed=1)
    sh, rh = out["sigma_history"], out["radius_history"]
    assert sh.shape == rh.shape == (cfg.steps + 1, N)
    assert out["sigma"].shape == (N,) and torch.equal(out["sigma"], sh[-1])
    assert torch.equal(out["anchor"], y)
    assert torch.all(sh[0] == 0.25)
    # bounds: every sample, every step
    assert float(sh.min()) >= cfg.sigma_min and float(sh.max()) <= cfg.sigma_max
    # the model is good enough for the objective to mean something
    assert (rh[0] > 0).float().mean() > 0.8
    # the objective rises: on the optimiser's own estimates ...
    assert float(rh[-1].mean()) > float(rh[0].mean()) + 0.01
    # ... and on an independent re-estimate with 64 common draws
    net = net_of(params)
    r0 = eval_radius(net, x, y, torch.full((N,), 0.25))
    r1 = eval_radius(net, x, y, out["sigma"])
    assert float(r1.mean()) > float(r0.mean()) + 0.01
    # sigma is sample-specific: it moved, and not by the same amount everywhere
    assert float(out["sigma"].max()) > 0.3
    assert float(out["sigma"].std()) > 0.01


def test_reparam_can_lower_sigma_but_prefactor_never_does(trained):
    x, y, params = trained
    re = optimise_sigma(net_of(params), x, y, 0.5, scfg(), seed=2)
    assert bool((re["sigma_history"].diff(dim=0) < -1e-4).any())  # the true gradient can be negative
    pre = optimise_sigma(net_of(params), x, y, 0.5, scfg(gradient="prefactor"), seed=2)
    sh, rh = pre["sigma_history"], pre["radius_history"]
    assert bool((sh.diff(dim=0) >= 0).all())
    assert float(sh.min()) >= 0.25 and float(sh.max()) <= 1.5
    # samples with R > 0 at the start grew in the first step
    grew = sh[1] > sh[0]
    assert torch.equal(grew, rh[0] > 0)


def test_prefactor_step_is_closed_form(trained):
    """sigma_{t+1} = clip(sigma_t + lr * ReLU(R_t) / sigma_t): the prefactor is R / sigma."""
    x, y, params = trained
    cfg = scfg(gradient="prefactor", steps=6, lr=0.1)
    out = optimise_sigma(net_of(params), x, y, 0.3, cfg, seed=3)
    sh, rh = out["sigma_history"], out["radius_history"]
    want = (sh[:-1] + cfg.lr * torch.relu(rh[:-1]) / sh[:-1]).clamp(cfg.sigma_min, cfg.sigma_max)
    torch.testing.assert_close(sh[1:], want, rtol=1e-5, atol=1e-6)


def test_steps_zero_returns_sigma0(trained):
    x, y, params = trained
    out = optimise_sigma(net_of(params), x[:10], y[:10], 0.4, scfg(steps=0), seed=0)
    assert out["sigma_history"].shape == (1, 10)
    assert torch.all(out["sigma"] == 0.4)


def test_same_seed_same_result_other_seed_other(trained):
    x, y, params = trained
    a = optimise_sigma(net_of(params), x[:64], y[:64], 0.25, scfg(steps=5), seed=7)
    b = optimise_sigma(net_of(params), x[:64], y[:64], 0.25, scfg(steps=5), seed=7)
    c = optimise_sigma(net_of(params), x[:64], y[:64], 0.25, scfg(steps=5), seed=8)
    for key in ("sigma", "anchor", "sigma_history", "radius_history"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["radius_history"], c["radius_history"])


def test_anchor_none_uses_the_smoothed_prediction(trained):
    x, y, params = trained
    net = net_of(params)
    out = optimise_sigma(net, x, None, 0.25, scfg(steps=1), seed=0)
    with torch.no_grad():
        clean_pred = net(x).argmax(1)
    assert out["anchor"].dtype == torch.int64
    # the anchor is the smoothed prediction at sigma_0 (8 draws): it agrees with a 64-draw estimate of
    # that prediction and, at sigma_0 = 0.25, with the clean prediction almost everywhere
    eps = torch.randn(64, *x.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        smoothed = smoothed_psi(net, x, torch.full((N,), 0.25), eps).argmax(1)
    assert (out["anchor"] == smoothed).float().mean() > 0.9
    assert (out["anchor"] == clean_pred).float().mean() > 0.85
    # it is not simply the label: the model is wrong on some training samples
    assert not torch.equal(out["anchor"], y)


def test_progress_reports_every_sample_once(trained):
    x, y, params = trained
    seen = []
    optimise_sigma(
        net_of(params), x[:150], y[:150], 0.25, scfg(steps=1, batch_size=64), seed=0, progress=seen.append
    )
    assert seen == [64, 64, 22]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(steps=-1), "parameter 'steps'"),
        (dict(draws=0), "parameter 'draws'"),
        (dict(lr=0.0), "parameter 'lr'"),
        (dict(lr=-0.1), "parameter 'lr'"),
        (dict(gradient="adam"), "parameter 'gradient'"),
        (dict(sigma_min=0.0), "parameter 'sigma_min'"),
        (dict(sigma_min=0.6, sigma_max=0.5), "bounds are inverted: sigma_min"),
        (dict(psi_clamp=(0.5, 0.4)), "parameter 'psi_clamp'"),
        (dict(psi_clamp=(0.0, 0.9)), "parameter 'psi_clamp'"),
        (dict(psi_clamp=(0.1, 1.0)), "parameter 'psi_clamp'"),
        (dict(batch_size=0), "parameter 'batch_size'"),
    ],
)
def test_bad_config(kw, name):
    with pytest.raises(ConfigError, match=name):
        scfg(**kw)


@pytest.mark.parametrize("sigma0", [0.2, 1.6])
def test_sigma0_outside_bounds(trained, sigma0):
    x, y, params = trained
    message = rf"parameter 'sigma0' = {sigma0} is invalid: must lie in \[cfg.sigma_min, cfg.sigma_max\]"
    with pytest.raises(ConfigError, match=message):
        optimise_sigma(net_of(params), x[:4], y[:4], sigma0, scfg(), seed=0)


def test_sigma0_not_positive_and_anchor_shape(trained):
    x, y, params = trained
    with pytest.raises(ConfigError, match="parameter 'sigma0' = 0.0"):
        optimise_sigma(net_of(params), x[:4], y[:4], 0.0, scfg(), seed=0)
    with pytest.raises(ConfigError, match="anchors"):
        optimise_sigma(net_of(params), x[:4], y[:3], 0.25, scfg(), seed=0)


# ---------------------------------------------------------------------------------------------------
# rule "released": the released Cert-SSB update (issue 19)


class Table(torch.nn.Module):
    """Fixed logits per sample (ignores its input): softmax rows known in closed form."""

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(probs.log(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.repeat(x.shape[0] // self.logits.shape[0], 1)


def test_released_rule_two_steps_by_hand_constant_model():
    probs = torch.tensor([[0.99, 0.005, 0.005], [0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    x = torch.zeros(3, *SHAPE)
    cfg = SigmaConfig(steps=2, lr=0.01, rule="released", sigma_min=0.25, sigma_max=0.26, batch_size=8)
    # anchors that disagree with the top class: the released gap is unanchored, sigma grows anyway
    out = optimise_sigma(Table(probs), x, torch.tensor([1, 2, 0]), 0.25, cfg, seed=0)
    gaps = np.array(
        [
            norm.ppf(0.98) - norm.ppf(0.02),  # 0.99 / 0.005 clamped to 0.98 / 0.02
            norm.ppf(0.7) - norm.ppf(0.2),
            norm.ppf(0.6) - norm.ppf(0.3),
        ]
    )
    expect = 0.25 + 2 * 0.01 * gaps / 2  # two steps of lr * gap / 2
    np.testing.assert_allclose(out["sigma"].numpy(), expect, rtol=1e-5)
    assert expect[0] == pytest.approx(0.25 + 2 * 0.01 * 2.0537, abs=1e-4)  # the saturated step 2.054 lr
    assert float(out["sigma"].max()) > cfg.sigma_max  # no clip to [sigma_min, sigma_max]
    np.testing.assert_allclose(out["sigma_history"][1].numpy(), 0.25 + 0.01 * gaps / 2, rtol=1e-5)
    np.testing.assert_allclose(out["radius_history"][2].numpy(), expect / 2 * gaps, rtol=1e-5)
    # the anchored rule (prefactor) leaves the mis-anchored samples alone and clips the first at sigma_max
    cfg_anchored = SigmaConfig(
        steps=2, lr=0.01, gradient="prefactor", sigma_min=0.25, sigma_max=0.26, batch_size=8
    )
    anchored = optimise_sigma(Table(probs), x, torch.tensor([1, 2, 0]), 0.25, cfg_anchored, seed=0)
    assert torch.all(anchored["sigma"] == 0.25)


class Linear(torch.nn.Module):
    """Two logits [0, w.x]: the noise moves the probabilities, so each step's gap differs."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_released_rule_two_steps_by_hand_with_one_noise_draw_per_step():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(int(np.prod(SHAPE)), generator=g) * 0.3
    x = torch.rand(4, *SHAPE, generator=g)
    sig0, lr = 0.5, 0.05
    cfg = SigmaConfig(steps=2, lr=lr, rule="released", sigma_min=0.5, sigma_max=0.5, batch_size=4, draws=7)
    out = optimise_sigma(Linear(w), x, torch.zeros(4, dtype=torch.long), sig0, cfg, seed=11)
    # by hand: the generator of seed 11 gives ONE draw (1, B, C, H, W) per step; p1 = sigmoid(w.(x + s eps))
    gen = torch.Generator().manual_seed(11)
    s = np.full(4, sig0)
    for _ in range(2):
        eps = torch.randn((1, 4, *SHAPE), generator=gen)[0].flatten(1).double().numpy()
        z = (x.flatten(1).double().numpy() + s[:, None] * eps) @ w.double().numpy()
        p1 = np.clip(1 / (1 + np.exp(-z)), 0.02, 0.98)
        gap = np.abs(norm.ppf(p1) - norm.ppf(np.clip(1 - 1 / (1 + np.exp(-z)), 0.02, 0.98)))
        s = s + lr * gap / 2
    np.testing.assert_allclose(out["sigma"].numpy(), s, rtol=1e-4)
    assert np.all(s > sig0)


def test_released_rule_is_a_checked_parameter():
    with pytest.raises(ConfigError, match="parameter 'rule' = 'paper'"):
        SigmaConfig(rule="paper")


@pytest.mark.parametrize("rule, anchored", [("anchored", True), ("anchored", False), ("released", True)])
def test_batches_on_two_threads_give_the_one_thread_result(trained, rule, anchored):
    x, y, params = trained
    cfg = scfg(steps=3, draws=2, batch_size=16, rule=rule)  # 6 batches: several in flight at once
    anchor = y[:90] if anchored else None
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ref = optimise_sigma(net_of(params), x[:90], anchor, 0.25, cfg, seed=3)
        torch.set_num_threads(2)
        seen = []
        out = optimise_sigma(net_of(params), x[:90], anchor, 0.25, cfg, seed=3, progress=seen.append)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert seen == [16] * 5 + [10]
    for key in ("sigma", "anchor", "sigma_history", "radius_history"):
        assert torch.equal(ref[key], out[key]), key
