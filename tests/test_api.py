"""The Python API: README example runs; abstention, radius (scipy), user modules, bad sigma."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm
from torch import nn

import certssb
from certssb.core.validation import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    m = re.search(r"## Python API.*?```python\n(.*?)```", README.read_text(), re.S)
    assert m, "README has no ## Python API section with a python code block"
    return m.group(1)


def test_readme_example_runs():
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 10
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - the documented example itself
    pred, radius = ns["pred"], ns["radius"]
    assert pred.shape == radius.shape == (8,)
    ok = pred != certssb.ABSTAIN
    assert ok.all() and (pred == ns["y"][:8]).all()  # separable blobs: every input certified, correctly
    ceiling = 0.25 * norm.ppf(0.001 ** (1 / 15))
    assert torch.all(radius > 0) and torch.all(radius <= ceiling + 1e-12)
    assert "tensor" in out.getvalue()


class Constant(nn.Module):
    """A user module that always outputs ``cls`` (ignores its input)."""

    def __init__(self, cls: int, num_classes: int = 3) -> None:
        super().__init__()
        self.cls, self.c = cls, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.c)
        out[:, self.cls] = 5.0
        return out


@pytest.mark.parametrize(("m", "n0", "alpha"), [(20, 5, 0.001), (12, 2, 0.01), (50, 10, 0.05)])
def test_unanimous_radius_is_sigma_times_phi_inv_of_cp_bound(m, n0, alpha):
    sigma = 0.37
    ens = certssb.SmoothedEnsemble([Constant(2) for _ in range(m)], sigma=sigma)
    pred, radius = ens.certify(torch.zeros(4, 1, 3, 3), n0=n0, alpha=alpha)
    n = m - n0
    p_low = (
        binomtest(n, n, alternative="greater").proportion_ci(confidence_level=1 - alpha, method="exact").low
    )
    assert (pred == 2).all()
    np.testing.assert_allclose(radius.numpy(), sigma * norm.ppf(p_low), rtol=1e-9)


def test_abstains_when_models_disagree():
    models = [Constant(k % 2) for k in range(20)]  # 10 vote 0, 10 vote 1
    ens = certssb.SmoothedEnsemble(models, sigma=0.25)
    pred, radius = ens.certify(torch.zeros(5, 4), n0=2, alpha=0.001)
    assert (pred == certssb.ABSTAIN).all() and (radius == 0).all()
    assert (ens.predict(torch.zeros(5, 4), alpha=0.001) == certssb.ABSTAIN).all()
    assert (certssb.SmoothedEnsemble([Constant(1)] * 20, sigma=0.25).predict(torch.zeros(3, 4)) == 1).all()


def test_hoeffding_bound_matches_its_closed_form():
    ens = certssb.SmoothedEnsemble([Constant(0, 2) for _ in range(30)], sigma=0.5)
    _, radius = ens.certify(torch.zeros(2, 3), n0=5, alpha=0.001, bound="hoeffding")
    h = np.sqrt(np.log(2 / 0.001) / (2 * 25))  # bonferroni: alpha / 2 per bound
    np.testing.assert_allclose(radius.numpy(), 0.5 * 0.5 * (norm.ppf(1 - h) - norm.ppf(h)), rtol=1e-9)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 2, 2, generator=g) * 0.2 + (2.0 * y - 1.0).view(-1, 1, 1, 1)
    return x, y


def test_user_module_trains_certifies_and_is_reproducible():
    x, y = _blobs(120, 0)
    rng_before = torch.get_rng_state()
    models = certssb.train_ensemble(x, y, 8, torch.tensor(0.3), TinyNet, epochs=15, batch_size=32, seed=1)
    assert torch.equal(rng_before, torch.get_rng_state())  # the global RNG is left alone
    assert all(isinstance(m, TinyNet) and not m.training for m in models)
    again = certssb.train_ensemble(x, y, 8, 0.3, TinyNet, epochs=15, batch_size=32, seed=1)
    for a, b in zip(models, again):
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa, pb)
    # different models: each saw its own noisy copy and its own initial weights
    assert not torch.equal(models[0].body[1].weight, models[1].body[1].weight)
    xt, yt = _blobs(40, 5)
    ens = certssb.SmoothedEnsemble(models, sigma=0.3, seed=3)
    pred, radius = ens.certify(xt, n0=2, alpha=0.1)  # 6 estimation models: alpha = 0.001 certifies nothing
    assert ens.num_classes == 2
    assert (pred == yt).float().mean() > 0.9
    assert torch.all(radius <= 0.3 * norm.ppf(0.1 ** (1 / 6)) + 1e-12)
    p2, r2 = certssb.SmoothedEnsemble(models, sigma=0.3, seed=3).certify(xt, n0=2, alpha=0.1)
    assert torch.equal(pred, p2) and torch.equal(radius, r2)  # input noise reproducible from the seed
    v3, _ = certssb.SmoothedEnsemble(models, sigma=0.3, seed=4).votes(torch.zeros(200, 1, 2, 2))
    v4, _ = certssb.SmoothedEnsemble(models, sigma=0.3, seed=3).votes(torch.zeros(200, 1, 2, 2))
    assert (v3 != v4).any()  # on the decision boundary the votes follow the noise


@pytest.mark.parametrize(
    "bad", [0.0, -0.25, float("nan"), float("inf"), torch.tensor([0.25, 0.5]), "0.25", True]
)
def test_bad_sigma_is_refused(bad):
    with pytest.raises(ConfigError, match="sigma"):
        certssb.SmoothedEnsemble([Constant(0)], sigma=bad)
    x, y = _blobs(10, 0)
    with pytest.raises(ConfigError, match="sigma"):
        certssb.train_ensemble(x, y, 2, bad, TinyNet)


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="models"):
        certssb.SmoothedEnsemble([], sigma=0.25)
    with pytest.raises(ConfigError, match="n0"):
        certssb.SmoothedEnsemble([Constant(0)] * 4, sigma=0.25).certify(torch.zeros(2, 3), n0=4)
    with pytest.raises(ConfigError, match="'y'"):
        certssb.train_ensemble(torch.zeros(4, 2), torch.zeros(3), 2, 0.25, TinyNet)
