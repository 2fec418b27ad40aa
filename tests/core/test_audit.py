"""certssb.core.audit: the ladder's arithmetic, the grouping rule, PGD inside its ball, gradient matching
keeping labels and budgets, the statistics, and two control learners whose worst case is known in closed form,
run through the same ladder code (``audit_ladder``): the audit must break them at c <= 1.2."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest

from certssb.core import audit
from certssb.core.certify import certify
from certssb.core.validation import ConfigError


def test_weighted_norm_by_hand():
    expected = np.sqrt(0.36 + 2.56 + 0.16)
    assert audit.weighted_norm([0.3, 0.4], [0.5, 0.25], 0.2, 0.5) == pytest.approx(expected)
    assert audit.weighted_norm([], [], 0.5, 0.25) == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [[], [2, 1], [0, 1], [0.95, 0.95], "2", [True, 2]])
def test_a_bad_ladder_is_refused_naming_the_parameter(bad):
    with pytest.raises(ConfigError, match=r"parameter 'factors' = .* is invalid: .*increasing"):
        audit.check_factors("factors", bad)


def test_groups_never_scale_a_point_below_min_share_of_its_budget():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.2, 1.2, size=60)
    b[:20] = 1.07  # many points at the Clopper-Pearson ceiling share one group
    groups = audit.group_by_budget(b, 0.9)
    assert sorted(np.concatenate(groups).tolist()) == list(range(60))
    for g in groups:
        assert b[g].min() >= 0.9 * b[g].max() - 1e-12
    assert any(set(range(20)) <= set(g.tolist()) for g in groups)
    assert len(audit.group_by_budget(b, 1.0)) == len(np.unique(b))


# ------------------------------------------------------------------ a toy learner that records what it saw
class Recorder:
    """Never flips; records every retrain's training set and every prediction's inputs."""

    def __init__(self, x_train, y_train, sigma_train, nets):
        self.x_train, self.y_train, self.nets = x_train, y_train, nets
        self.sigma_train = np.asarray(sigma_train)
        self.seen: list[dict] = []
        self.parent = self

    def surrogates(self):
        return self.nets

    def retrain(self, x_train, sigma_train, tag):
        child = Recorder(self.x_train, self.y_train, sigma_train, self.nets)
        child.parent, child.trained_on = self, x_train.clone()
        return child

    def predict(self, ids, x_points, sigma_x):
        root = self
        while root.parent is not root:
            root = root.parent
        root.seen.append(
            {
                "ids": np.asarray(ids).copy(),
                "x": x_points.clone(),
                "x_train": getattr(self, "trained_on", self.x_train).clone(),
            }
        )
        return np.zeros(len(ids), dtype=np.int64)  # the audited points' prediction: class 0

    def resigma(self, x_train, moved, x_points):
        return self.sigma_train, np.full(len(x_points), 0.5)


def _toy(seed=0, n_train=60, n_pts=5):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    nets = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 3)).eval() for _ in range(2)]
    x_train = torch.rand(n_train, 1, 3, 3, generator=g)
    y_train = torch.arange(n_train) % 3
    sigma_train = np.random.default_rng(seed).uniform(0.25, 0.5, n_train)
    x_pts = torch.rand(n_pts, 1, 3, 3, generator=g)
    r1 = np.array([1.0, 1.0, 0.97, 0.6, 0.3])[:n_pts]
    sigma_x = np.array([0.3, 0.45, 0.5, 0.4, 0.35])[:n_pts]
    return Recorder(x_train, y_train, sigma_train, nets), x_pts, r1, sigma_x


@pytest.mark.parametrize("strategy", ["pgd", "brew_pgd"])
def test_ladder_arithmetic_every_point_gets_c_times_its_certificate_in_its_column_norm(strategy):
    """Measured from what the learner was actually given (the retrain's training set and the predicted
    inputs): ||Delta|| in the column's norm = c * R1 within 1e-6 for every point and rung, 0.95 inside."""
    learner, x_pts, r1, sx = _toy()
    ids = np.arange(len(r1))
    cfg = audit.LadderConfig(factors=(0.95, 2, 8), strategies=(strategy,), k=3, brew_steps=3, pgd_steps=3)
    rep = audit.audit_ladder(learner, ids, x_pts, np.zeros(len(r1), np.int64), r1, sx, cfg)
    seen = learner.seen
    assert len(rep) == 2 * 3 * len(r1) and set(rep["factor"]) == {0.95, 2.0, 8.0}
    rungs = [(col, c) for col in audit.COLUMNS for c in (0.95, 2.0, 8.0)]
    k = 0
    for col, c in rungs:
        calls = []
        while sum(len(s["ids"]) for s in calls) < len(r1):
            calls.append(seen[k])
            k += 1
        for call in calls:
            dtrain = (call["x_train"] - learner.x_train).double()
            moved = np.flatnonzero(dtrain.flatten(1).norm(dim=1).numpy() > 0)
            tn = dtrain[moved].flatten(1).norm(dim=1).numpy()
            if strategy == "pgd":
                assert len(moved) == 0
            for jj, j in enumerate(call["ids"]):
                xn = float((call["x"][jj] - x_pts[j]).double().norm())
                w = learner.sigma_train[moved] if col == "radius" else np.full(len(moved), sx[j])
                assert audit.weighted_norm(tn, w, xn, sx[j]) == pytest.approx(c * r1[j], rel=1e-6, abs=1e-9)
    assert rep["norm_over_budget"].to_numpy() == pytest.approx(1.0, rel=1e-6)


def test_training_only_rungs_stay_inside_every_budget_and_give_each_point_90_percent():
    learner, x_pts, r1, sx = _toy()
    cfg = audit.LadderConfig(factors=(0.95, 4), strategies=("brew",), k=2, brew_steps=3)
    rep = audit.audit_ladder(learner, np.arange(5), x_pts, np.zeros(5, np.int64), r1, sx, cfg)
    ratio = rep["norm_over_budget"].to_numpy()
    assert ratio.max() <= 1 + 1e-6 and ratio.min() >= 0.9 - 1e-9
    binding = rep.groupby(["column", "factor", "group"])["norm_over_budget"].max().to_numpy()
    assert binding == pytest.approx(1.0)
    # labels are never changed (nothing but x_train reaches a retrain, y_train is untouched), and the moved
    # points carry the runner-up class of the surrogates at the audited points, never their prediction (0)
    assert torch.equal(learner.y_train, torch.arange(60) % 3)
    with torch.no_grad():
        p = torch.stack([torch.softmax(n(x_pts), 1) for n in learner.nets]).mean(0)
    p[:, 0] = -1
    runner_up = set(p.argmax(1).tolist())
    for call in learner.seen:
        moved = np.flatnonzero((call["x_train"] - learner.x_train).flatten(1).norm(dim=1).numpy() > 0)
        assert 0 < len(moved) <= 2 * 5 and set(learner.y_train[moved].tolist()) <= runner_up


def test_pgd_stays_on_its_sphere_and_lowers_the_smoothed_probability():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 2)).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 3, 3, generator=g)
    with torch.no_grad():
        a = net(x).argmax(1).numpy()
    budget = np.linspace(0.05, 0.5, 6)
    d = audit.pgd_smoothed([net], x, a, np.full(6, 0.25), budget, steps=8, draws=16, seed=0)
    assert d.flatten(1).norm(dim=1).double().numpy() == pytest.approx(budget, rel=1e-6)
    w = (net[1].weight[1] - net[1].weight[0]).detach().view(1, 1, 3, 3)  # logit gap: class 1 minus class 0
    toward_other = torch.where(torch.as_tensor(a == 1).view(-1, 1, 1, 1), -w, w)
    cos = (d * toward_other).flatten(1).sum(1) / (d.flatten(1).norm(dim=1) * w.norm())
    assert (cos > 0.95).all()  # the optimal l2 direction of a linear model, found through the noise


def test_gradient_matching_keeps_labels_budget_and_aligns_the_gradients():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 3)).eval()
    g = torch.Generator().manual_seed(2)
    xp, yp = torch.rand(6, 1, 3, 3, generator=g), torch.full((6,), 2)
    xt, yadv = torch.rand(1, 1, 3, 3, generator=g), torch.tensor([2])
    w = 1 / np.array([0.25, 0.3, 0.5, 0.5, 0.4, 0.25])
    d = audit.gradient_matching([net], xp, yp, xt, yadv, w, 0.8, steps=40, seed=0)
    whitened = np.sqrt(np.sum((d.flatten(1).norm(dim=1).double().numpy() * w) ** 2))
    assert whitened == pytest.approx(0.8, rel=1e-6)
    assert torch.equal(yp, torch.full((6,), 2))

    def cos(delta):
        ps = list(net.parameters())
        pg = torch.autograd.grad(torch.nn.functional.cross_entropy(net(xp + delta), yp, reduction="sum"), ps)
        tg = torch.autograd.grad(torch.nn.functional.cross_entropy(net(xt), yadv, reduction="sum"), ps)
        dot = sum((a * b).sum() for a, b in zip(pg, tg))
        pn, tn = torch.sqrt(sum((a * a).sum() for a in pg)), torch.sqrt(sum((b * b).sum() for b in tg))
        return float(dot / pn / tn)

    rnd = torch.randn(xp.shape, generator=g)
    rnd = rnd * (0.8 / np.sqrt(np.sum((rnd.flatten(1).norm(dim=1).numpy() * w) ** 2)))
    assert cos(d) > cos(torch.zeros_like(xp)) and cos(d) > cos(rnd)


def test_brew_poisons_only_points_of_the_runner_up_class_lowest_sigma_first():
    x_train = torch.zeros(10, 1, 1, 1)
    y = torch.tensor([0, 1, 1, 1, 2, 2, 1, 0, 1, 2])
    sigma = np.array([0.3, 0.5, 0.25, 0.4, 0.25, 0.3, 0.3, 0.2, 0.45, 0.3])
    idx = audit.poison_candidates(x_train, y, sigma, torch.zeros(1, 1, 1), 1, 3, set(), same_label=True)
    assert idx.tolist() == [2, 6, 3] and (y[idx] == 1).all()
    idx = audit.poison_candidates(x_train, y, sigma, torch.zeros(1, 1, 1), 1, 2, {7}, same_label=False)
    assert idx.tolist() == [4, 0]


def test_summary_ladder_break_factor_and_statistics_that_fit_the_design():
    rows = []
    for c, flips in ((0.95, 0), (2.0, 1), (4.0, 3)):  # 10 points, shared retrain (group_size 10)
        rows += [
            {
                "column": "radius",
                "strategy": "brew",
                "part": "training",
                "factor": c,
                "group": 0,
                "group_size": 10,
                "flipped": i < flips,
                "abstained_after": False,
                "norm_over_budget": 1.0,
                "sigma_norm_over_r1": c,
            }
            for i in range(10)
        ]
    rows += [
        {
            "column": "radius",
            "strategy": "lowsigma",
            "part": "training",
            "factor": c,
            "group": i,
            "group_size": 1,
            "flipped": False,
            "abstained_after": False,
            "norm_over_budget": 1.0,
            "sigma_norm_over_r1": c,
        }
        for c in (0.95, 2.0)
        for i in range(4)
    ]
    s = audit.summarise(pd.DataFrame(rows), 0.001, [0.95, 2, 4])
    brew = s["columns"]["radius"]["brew"]
    assert brew["break_factor"] == 2.0 and [r["flips"] for r in brew["ladder"]] == [0, 1, 3]
    assert all(r["p_value_2alpha"] is None and not r["independent"] for r in brew["ladder"])
    assert brew["ladder"][0]["expected_flips_bound"] == pytest.approx(0.02)
    assert brew["ladder"][0]["retrains"] == 1
    low = s["columns"]["radius"]["lowsigma"]
    assert low["break_factor"] is None and low["ladder"][0]["retrains"] == 4
    p_own = binomtest(0, 4, 0.002, alternative="greater").pvalue
    assert low["ladder"][0]["p_value_2alpha"] == pytest.approx(p_own)
    assert s["break_factor"]["radius"] == {"any": 2.0, "training_only": 2.0, "input_only": None}
    assert s["flips_inside_radius"] == 0
    assert s["power"]["radius"] == (
        "radius: 0/14 flips inside (c < 1); first broken at c = 2 "
        "(training only: c = 2; input only: not broken up to c = 4)"
    )


# ------------------------------------------------------------------ controls with a closed-form worst case
class LinearControl:
    """Input-linear base classifier, independent of the training set: class 1 iff w.x + b > 0. Its smoothed
    version keeps the decision boundary, so x flips exactly at l2 distance |w.x + b| / ||w|| from it, and
    the certificate sigma Phi^-1(p_A_lower) is just below that: the audit must break it at c <= 1.2."""

    def __init__(self, w, b, m=5000):
        self.w, self.b, self.m = w, b, m
        net = torch.nn.Linear(w.numel(), 2)
        with torch.no_grad():
            net.weight.copy_(torch.stack([torch.zeros_like(w.flatten()), w.flatten()]))
            net.bias.copy_(torch.tensor([0.0, b]))
        self.net = torch.nn.Sequential(torch.nn.Flatten(), net).eval()
        self.x_train, self.y_train = torch.zeros(4, *w.shape), torch.zeros(4, dtype=torch.long)
        self.sigma_train = np.full(4, 0.5)

    def surrogates(self):
        return [self.net]

    def retrain(self, x_train, sigma_train, tag):
        return self

    def certs(self, ids, x, sigma_x):
        g = torch.Generator().manual_seed(7)
        z = torch.randn(self.m, *x.shape, generator=g, dtype=torch.float64)
        s = torch.as_tensor(sigma_x).view(1, -1, *[1] * (x.dim() - 1))
        logit = (x.double().unsqueeze(0) + s * z).flatten(2) @ self.w.flatten().double() + self.b
        votes = (logit > 0).long().numpy()
        return certify(
            votes, np.eye(2)[votes], np.asarray(sigma_x), labels=np.ones(len(ids), int), num_classes=2, n0=200
        )

    def predict(self, ids, x, sigma_x):
        return self.certs(ids, x, sigma_x)["prediction"].to_numpy()

    def resigma(self, x_train, moved, x_points):
        raise AssertionError("not used")


def test_control_linear_classifier_is_broken_at_c_at_most_1_2_and_never_inside():
    rng = np.random.default_rng(0)
    w, b, sigma = torch.tensor(rng.standard_normal((1, 4, 4))), 0.1, 0.5
    u = (w / w.norm()).double()
    margins = rng.uniform(0.3, 1.0, size=20) * sigma  # distance to the boundary, class 1 side
    base = torch.tensor(rng.standard_normal((20, 1, 4, 4)))
    base = base - (base.flatten(1) @ u.flatten()).view(-1, 1, 1, 1) * u
    x = base + ((torch.tensor(margins) - b / float(w.norm())).view(-1, 1, 1, 1)) * u
    ctl = LinearControl(w.float(), b)
    certs = ctl.certs(np.arange(20), x, np.full(20, sigma))
    ok = np.flatnonzero(certs["prediction"].to_numpy() == 1)
    assert len(ok) == 20 and np.all(certs["radius"].to_numpy() <= margins)  # sound, and tight:
    assert np.median(margins / certs["radius"].to_numpy()) < 1.15
    cfg = audit.LadderConfig(
        factors=(0.95, 1.2, 2), strategies=("pgd",), columns=("radius",), pgd_steps=10, pgd_draws=16
    )
    rep = audit.audit_ladder(
        ctl, np.arange(20), x.float(), np.ones(20, np.int64), certs["r1"].to_numpy(), np.full(20, sigma), cfg
    )
    s = audit.summarise(rep, 0.001, cfg.factors)
    assert s["flips_inside_radius"] == 0
    assert s["break_factor"]["radius"]["input_only"] is not None
    assert s["break_factor"]["radius"]["input_only"] <= 1.2
    assert set(rep["factor"]) == {0.95, 1.2, 2.0}  # no retrain: pgd climbs every rung
    assert s["columns"]["radius"]["pgd"]["ladder"][-1]["flip_rate"] >= 0.5


class OnePixelControl:
    """The learner that reads one training pixel (tests/core/test_soundness.py): model k predicts 1 iff
    x_train[i0] + sigma_{i0} eps_k > x. The bound is tight in the Sigma-weighted norm: moving the pixel by
    |v - x| flips it, and the sound certificate is sigma_{i0} R1 just below that."""

    def __init__(self, x_train, y_train, sigma_train, i0, m=5000, params=None):
        self.x_train, self.y_train, self.sigma_train, self.i0, self.m = x_train, y_train, sigma_train, i0, m
        self.eps = np.random.default_rng(3).standard_normal(m)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 2)).eval()

    def surrogates(self):
        return [self.net]

    def retrain(self, x_train, sigma_train, tag):
        return OnePixelControl(x_train, self.y_train, sigma_train, self.i0, self.m)

    def certs(self, ids, x, sigma_x):
        v = float(self.x_train[self.i0]) + self.sigma_train[self.i0] * self.eps
        votes = (v[:, None] > x.flatten().double().numpy()[None, :]).astype(np.int64)
        return certify(
            votes,
            np.eye(2)[votes],
            np.asarray(sigma_x),
            labels=np.ones(len(ids), int),
            num_classes=2,
            n0=200,
            sigma_min=np.minimum(sigma_x, self.sigma_train.min()),
        )

    def predict(self, ids, x, sigma_x):
        return self.certs(ids, x, sigma_x)["prediction"].to_numpy()

    def resigma(self, x_train, moved, x_points):
        raise AssertionError("not used")


def test_control_one_pixel_learner_breaks_the_sound_radius_at_c_at_most_1_2_and_the_published_inside():
    rng = np.random.default_rng(1)
    n_train, i0, v = 30, 4, 0.6
    sigma_train = rng.uniform(0.3, 0.5, size=n_train)
    sigma_train[i0] = 0.25
    x_train = torch.tensor(rng.uniform(0, 1, size=(n_train, 1, 1, 1)))
    x_train[i0] = v
    y_train = torch.ones(n_train, dtype=torch.long)
    y_train[i0] = 0  # the only point of another label than the audited prediction (1)
    x = torch.tensor(v - rng.uniform(0.3, 0.6, size=12)).view(-1, 1, 1, 1)
    ctl = OnePixelControl(x_train, y_train, sigma_train, i0)
    certs = ctl.certs(np.arange(12), x, np.full(12, 0.5))
    assert (certs["prediction"] == 1).all()
    flip = v - x.flatten().numpy()  # the exact flip distance of the training pixel
    assert np.all(certs["r1"].to_numpy() * 0.25 <= flip)  # sound
    cfg = audit.LadderConfig(factors=(0.95, 1.2, 2), strategies=("lowsigma",), k=1, min_share=0.9999)
    rep = audit.audit_ladder(
        ctl,
        np.arange(12),
        x,
        np.ones(12, np.int64),
        certs["r1"].to_numpy(),
        np.full(12, 0.5),
        cfg,
        sigma_min=certs["sigma_min"].to_numpy(),
    )
    s = audit.summarise(rep, 0.001, cfg.factors)
    assert s["flips_inside_radius"] == 0  # the sound radius holds at 0.95 ...
    assert s["break_factor"]["radius"]["training_only"] <= 1.2  # ... and is tight: broken just outside
    assert s["break_factor"]["radius_published"]["training_only"] == 0.95  # the published one breaks inside
    assert (rep["group_size"] == 1).all()
    pub = s["columns"]["radius_published"]["lowsigma"]["ladder"][0]
    assert pub["independent"] and pub["p_value_2alpha"] < 1e-6
