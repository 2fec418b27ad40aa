"""certssb.core.audit: norms, budgets, the batching rule, the p-value, and a synthetic audit where the optimal
attack is known (the one-pixel-reading learner): the sound radius survives, the published one breaks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest, norm

from certssb.core import audit
from certssb.core.certify import certify
from certssb.core.validation import ConfigError


def test_weighted_norm_by_hand():
    assert audit.weighted_norm([0.3, 0.4], [0.5, 0.25], 0.2, 0.5) == pytest.approx(np.sqrt(0.36 + 2.56 + 0.16))
    assert audit.weighted_norm([], [], 0.5, 0.25) == pytest.approx(2.0)


def _directions(b: int = 3, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (np.arange(k), torch.randn(k, 1, 3, 3, generator=g), torch.randn(b, 1, 3, 3, generator=g))


@pytest.mark.parametrize("column", ["radius", "radius_published"])
def test_one_point_gets_exactly_its_budget_in_the_column_norm(column):
    idx, tdir, xdir = _directions(b=1)
    sigma_train = np.array([0.25, 0.3, 0.4, 0.5])
    atk = audit.scale_to_budget(idx, tdir, xdir, r1=np.array([0.8]), sigma_train=sigma_train,
                                sigma_x=np.array([0.45]), column=column, fraction=0.95)
    tn = atk.train_delta.flatten(1).norm(dim=1).numpy()
    w = sigma_train if column == "radius" else np.full(4, 0.45)
    total = audit.weighted_norm(tn, w, float(atk.test_delta[0].norm()), 0.45)
    assert total == pytest.approx(0.95 * 0.8, rel=1e-5)
    assert audit.weighted_norm(tn, w, 0.0, 1.0) == pytest.approx(np.sqrt(0.5) * 0.95 * 0.8, rel=1e-5)


def test_a_shared_retrain_keeps_every_point_of_the_batch_inside_its_own_budget():
    idx, tdir, xdir = _directions(b=3)
    r1, sx = np.array([0.4, 0.9, 1.5]), np.array([0.3, 0.5, 0.4])
    sigma_train = np.array([0.25, 0.3, 0.4, 0.5])
    for column in audit.COLUMNS:
        atk = audit.scale_to_budget(idx, tdir, xdir, r1=r1, sigma_train=sigma_train, sigma_x=sx, column=column,
                                    fraction=0.9)
        tn = atk.train_delta.flatten(1).norm(dim=1).numpy()
        for j in range(3):  # point j sees the WHOLE training part plus its own test part
            w = sigma_train if column == "radius" else np.full(4, sx[j])
            total = audit.weighted_norm(tn, w, float(atk.test_delta[j].norm()), sx[j])
            assert total <= 0.9 * r1[j] * (1 + 1e-6)
            assert total == pytest.approx(0.9 * r1[j], rel=1e-5)  # the test part takes what is left
    with pytest.raises(ConfigError, match="audit.fraction"):
        audit.scale_to_budget(idx, tdir, xdir, r1=r1, sigma_train=sigma_train, sigma_x=sx, column="radius",
                              fraction=1.5)


def test_summary_counts_flips_and_tests_them_against_alpha():
    rep = pd.DataFrame({"column": ["radius"] * 10 + ["radius_published"] * 10, "strategy": "lowsigma",
                        "flipped": [False] * 10 + [True] * 7 + [False] * 3, "abstained_after": False,
                        "weighted_norm": 0.95, "r1": 1.0})
    s = audit.summarise(rep, 0.01)
    assert s["flips_radius"] == 0 and s["flips_radius_published"] == 7
    pub = s["columns"]["radius_published"]["lowsigma"]
    assert pub["p_value"] == pytest.approx(binomtest(7, 10, 0.01, alternative="greater").pvalue)
    assert s["columns"]["radius"]["lowsigma"]["p_value"] == pytest.approx(1.0)
    assert pub["expected_under_bound"] == pytest.approx(0.1)


def test_synthetic_audit_breaks_the_published_radius_and_never_the_sound_one():
    """The learner predicts 1 iff training point i0's pixel v (plus its training noise sigma_{i0} eps) exceeds
    the test feature x; the exact smoothed classifier is 1 iff v > x. sigma_{i0} = 0.25 is the smallest training
    sigma, sigma_x = 0.5. ``lowsigma`` moves the lowest-sigma other-label training point towards x with the
    whole budget of each column; after the move the exact classifier says whether the certificate held."""
    rng = np.random.default_rng(1)
    n_train, i0, v, m = 30, 4, 0.6, 1000
    sigma_train = rng.uniform(0.3, 0.5, size=n_train)
    sigma_train[i0] = 0.25
    x_train = torch.as_tensor(rng.uniform(0, 1, size=(n_train, 1, 1, 1)), dtype=torch.float64)
    x_train[i0] = v
    y_train = torch.ones(n_train, dtype=torch.long)
    y_train[i0] = 0  # the only training point of another label than the audited points' prediction (1)
    x = v - rng.uniform(0.05, 0.3, size=25)  # test features below v: the smoothed prediction is 1
    eps = rng.standard_normal(m)
    votes = ((v + sigma_train[i0] * eps)[:, None] > x[None, :]).astype(np.int64)
    certs = certify(votes, np.eye(2)[votes], np.full(25, 0.5), labels=np.ones(25, dtype=np.int64), num_classes=2,
                    n0=10, sigma_min=np.full(25, 0.25))
    ok = np.flatnonzero(~certs["abstained"].to_numpy() & certs["correct"].to_numpy())
    assert len(ok) >= 15
    rows = []
    for column in audit.COLUMNS:
        for j in ok:  # one point per retrain: its whole budget
            xp = torch.full((1, 1, 1, 1), float(x[j]), dtype=torch.float64)
            idx, tdir, xdir, share = audit.craft("lowsigma", xp, np.array([1]), x_train, y_train, sigma_train, k=1)
            assert list(idx) == [i0] and share == 1.0 and float(xdir.abs().sum()) == 0.0
            atk = audit.scale_to_budget(idx, tdir, xdir, r1=certs["r1"].to_numpy()[[j]], sigma_train=sigma_train,
                                        sigma_x=np.array([0.5]), column=column, fraction=0.95, train_share=share)
            moved = v + float(atk.train_delta.sum())
            after = int(norm.cdf((moved - x[j]) / sigma_train[i0]) > 0.5)  # exact smoothed classifier
            w = sigma_train[idx] if column == "radius" else np.array([0.5])
            rows.append({"column": column, "strategy": "lowsigma", "flipped": after != 1, "abstained_after": False,
                         "weighted_norm": audit.weighted_norm([abs(float(atk.train_delta.sum()))], w, 0.0, 0.5),
                         "r1": float(certs["r1"].iloc[j])})
    s = audit.summarise(pd.DataFrame(rows), 0.001)
    assert s["flips_radius"] == 0  # the sound radius is never broken
    assert s["flips_radius_published"] >= 0.8 * len(ok)  # the published one is, for most certified points
    assert s["columns"]["radius_published"]["lowsigma"]["p_value"] < 1e-6


def _linear_pilot(seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 3))

    def loss_grad(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        xg = x.float().clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(net(xg), labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, xg)
        return g

    return net, loss_grad


def test_gradient_moves_other_label_points_towards_the_predicted_class():
    """The poisoning direction: the moved training points (labelled B) come to look like x's class A to the
    pilot, i.e. its loss for A at them falls (the direction taken before this was the opposite)."""
    net, grad = _linear_pilot()
    g = torch.Generator().manual_seed(3)
    x_train, y_train = torch.rand(30, 1, 3, 3, generator=g), torch.randint(0, 3, (30,), generator=g)
    x_points = torch.rand(4, 1, 3, 3, generator=g)
    pred = net(x_points).argmax(1).numpy()
    idx, tdir, xdir, share = audit.craft("gradient", x_points, pred, x_train, y_train, np.full(30, 0.3), k=3,
                                         loss_grad=grad)
    a = torch.as_tensor(np.repeat(pred, 3))
    ce = torch.nn.functional.cross_entropy
    before = ce(net(x_train[idx].float()), a, reduction="none")
    after = ce(net((x_train[idx] + 0.05 * tdir).float()), a, reduction="none")
    assert (after < before).all() and (y_train[idx].numpy() != pred.repeat(3)).all()
    after_x = ce(net((x_points + 0.05 * xdir).float()), torch.as_tensor(pred), reduction="none")
    assert (after_x > ce(net(x_points), torch.as_tensor(pred), reduction="none")).all()  # x moves away from A


def test_lowsigma_with_equal_sigmas_takes_the_nearest_other_label_points():
    x_train = torch.arange(10, dtype=torch.float64).view(10, 1, 1, 1)
    y_train = torch.tensor([0, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    idx, *_ = audit.craft("lowsigma", torch.full((1, 1, 1, 1), 7.2, dtype=torch.float64), np.array([0]), x_train,
                          y_train, np.full(10, 0.25), k=2)
    assert sorted(idx.tolist()) == [7, 8]


def test_the_summary_shows_how_much_of_its_budget_a_batched_point_used():
    """lowsigma moves no input, so in a shared retrain the points with larger certificates use less of theirs."""
    idx, tdir = np.arange(3), torch.ones(3, 1, 2, 2)
    r1 = np.array([0.5, 1.0, 2.0])
    atk = audit.scale_to_budget(idx, tdir, torch.zeros(3, 1, 2, 2), r1=r1, sigma_train=np.full(3, 0.25),
                                sigma_x=np.full(3, 0.5), column="radius", fraction=0.95, train_share=1.0)
    tn = atk.train_delta.flatten(1).norm(dim=1).numpy()
    used = np.array([audit.weighted_norm(tn, np.full(3, 0.25), 0.0, 0.5) for _ in r1]) / r1
    assert used == pytest.approx([0.95, 0.475, 0.2375])
    rep = pd.DataFrame({"column": "radius", "strategy": "lowsigma", "flipped": False, "abstained_after": False,
                        "weighted_norm": used * r1, "r1": r1})
    s = audit.summarise(rep, 0.001)["columns"]["radius"]["lowsigma"]
    assert s["norm_over_budget_max"] == pytest.approx(0.95) and s["norm_over_budget_min"] == pytest.approx(0.2375)
    assert s["norm_over_budget_median"] == pytest.approx(0.475)
    assert s["p_value_2alpha"] == pytest.approx(1.0)
