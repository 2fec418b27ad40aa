"""Tests for certssb.core.storage: the no-overlap invariant, actions, order, and a pure-Python reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from certssb.core.storage import StorageResult, overlapping_pairs, storage_update
from certssb.core.validation import ConfigError


def random_certs(seed: int, n: int = 200, dim: int = 3, classes: int = 3, abstain_frac: float = 0.1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, dim))
    pred = rng.integers(0, classes, size=n)
    rad = rng.uniform(0.05, 0.5, size=n)
    ab = rng.uniform(size=n) < abstain_frac
    pred[ab] = -1
    rad[ab] = 0.0
    return x, pred, rad


def reference(x, pred, rad, order, rule="trim"):
    """Pure-Python storage update, a direct transcription of docs/methods.md#storage-update."""
    n = len(pred)
    out_p, out_r, act = [-1] * n, [0.0] * n, ["abstain"] * n
    mem = []
    for i in order:
        c, r = int(pred[i]), float(rad[i])
        if c == -1:
            continue
        a = "none"
        conf = []
        for xj, cj, rj in mem:
            d = math.sqrt(sum((float(u) - float(v)) ** 2 for u, v in zip(x[i], xj)))
            if d < r + rj and cj != c:
                conf.append((d - rj, d, cj, rj))
        if conf:
            best = min(conf, key=lambda t: t[0])  # first minimum = smallest memory index
            if best[0] >= 0:
                r, a = best[0], "trim"
            elif rule == "trim":
                r, a = 0.0, "zeroed"
            else:
                c, r, a = best[2], best[3] - best[1], "align"
        mem.append((list(x[i]), c, r))
        out_p[i], out_r[i], act[i] = c, r, a
    return np.array(out_p), np.array(out_r), np.array(act)


@pytest.mark.parametrize("rule", ["trim", "paper"])
@pytest.mark.parametrize("seed,dim", [(0, 2), (1, 3), (2, 5), (3, 2), (4, 4)])
def test_invariant_no_overlapping_balls_with_different_labels(seed, dim, rule):
    x, pred, rad = random_certs(seed, dim=dim)
    assert overlapping_pairs(x, pred, rad) > 0
    res = storage_update(x, pred, rad, rule=rule, seed=seed)
    assert overlapping_pairs(x, res.prediction, res.radius) == 0
    s = res.summary()
    inside = "zeroed" if rule == "trim" else "align"
    other = "align" if rule == "trim" else "zeroed"
    assert s["trim"] > 0 and s[inside] > 0 and s["none"] > 0 and s[other] == 0
    assert s["none"] + s["trim"] + s[inside] + s["abstain"] == len(pred)
    assert s["order_seed"] == seed and s["rule"] == rule
    # abstained rows untouched and never stored
    ab = pred == -1
    assert (res.prediction[ab] == -1).all() and (res.radius[ab] == 0).all()
    assert (res.action[ab] == "abstain").all() and (res.action[~ab] != "abstain").all()
    # "none" rows unchanged; trim keeps the label and never grows the radius
    none, trim = res.action == "none", res.action == "trim"
    np.testing.assert_array_equal(res.prediction[none], pred[none])
    np.testing.assert_array_equal(res.radius[none], rad[none])
    np.testing.assert_array_equal(res.prediction[trim], pred[trim])
    assert (res.radius[trim] < rad[trim]).all() and (res.radius[trim] >= 0).all()
    if rule == "trim":  # sound: labels never change, radii only shrink, inside another ball -> R = 0
        np.testing.assert_array_equal(res.prediction, pred)
        assert (res.radius <= rad).all()
        assert (res.radius[res.action == "zeroed"] == 0).all()
        return
    # paper: align changes the label; its new ball lies inside an earlier stored ball of that label
    align = res.action == "align"
    assert (res.prediction[align] != pred[align]).all()
    pos = np.empty(len(pred), dtype=int)
    pos[res.order] = np.arange(len(pred))
    for i in np.flatnonzero(align):
        earlier = (pos < pos[i]) & (res.prediction == res.prediction[i])
        d = np.linalg.norm(x[earlier] - x[i], axis=1)
        assert np.any(d + res.radius[i] <= res.radius[earlier] + 1e-12)


def test_non_aligned_radii_shrink_only():
    for seed in range(3):
        x, pred, rad = random_certs(seed + 10, dim=2)
        res = storage_update(x, pred, rad, rule="paper", seed=seed)
        keep = res.action != "align"
        assert (res.radius[keep] <= rad[keep]).all()


@pytest.mark.parametrize("rule", ["trim", "paper"])
def test_matches_pure_python_reference(rule):
    x, pred, rad = random_certs(7, n=60, dim=3)
    res = storage_update(x, pred, rad, rule=rule, seed=3)
    p, r, a = reference(x, pred, rad, res.order, rule)
    np.testing.assert_array_equal(res.prediction, p)
    np.testing.assert_allclose(res.radius, r, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(res.action, a)
    assert set(a) >= {"none", "trim", "zeroed" if rule == "trim" else "align", "abstain"}


def test_conflict_free_clusters_unchanged():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    lab = rng.integers(0, 3, size=90)
    x = centers[lab] + rng.normal(scale=0.3, size=(90, 2))
    rad = rng.uniform(0.5, 3.0, size=90)  # large radii, but same-label balls only meet each other
    assert overlapping_pairs(x, lab, rad) == 0
    res = storage_update(torch.as_tensor(x, dtype=torch.float32), lab, rad, seed=1)
    assert (res.action == "none").all()
    np.testing.assert_array_equal(res.prediction, lab)
    np.testing.assert_array_equal(res.radius, rad)


def test_order_recorded_given_order_respected_and_seed_reproducible():
    x, pred, rad = random_certs(5, n=80, dim=2)
    a = storage_update(x, pred, rad, seed=11)
    b = storage_update(x, pred, rad, seed=11)
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_array_equal(a.radius, b.radius)
    assert sorted(a.order.tolist()) == list(range(80))
    given = np.arange(80)[::-1].copy()
    g = storage_update(x, pred, rad, order=given)
    np.testing.assert_array_equal(g.order, given)
    assert g.summary()["order_seed"] == "given"
    p, r, act = reference(x, pred, rad, given)
    np.testing.assert_array_equal(g.prediction, p)
    np.testing.assert_allclose(g.radius, r, rtol=1e-12)
    # the first processed sample is always stored unchanged
    assert g.action[given[pred[given] != -1][0]] == "none"


def test_hand_made_trim_zeroed_and_align():
    # processed in order 0, 1, 2: ball 0 = B((0,0), 1) label 0
    x = np.array([[0.0, 0.0], [1.5, 0.0], [0.2, 0.0]])
    pred = np.array([0, 1, 1])
    rad = np.array([1.0, 1.0, 0.5])
    sound = storage_update(x, pred, rad, order=[0, 1, 2])
    assert sound.action.tolist() == ["none", "trim", "zeroed"]
    assert sound.prediction.tolist() == [0, 1, 1] and sound.radius[2] == 0.0  # keeps its label, R = 0
    assert overlapping_pairs(x, sound.prediction, sound.radius) == 0
    res = storage_update(x, pred, rad, rule="paper", order=[0, 1, 2])
    assert isinstance(res, StorageResult)
    assert res.action.tolist() == ["none", "trim", "align"]
    assert res.radius[1] == pytest.approx(0.5)  # d - R_0 = 1.5 - 1
    assert res.prediction[2] == 0 and res.radius[2] == pytest.approx(0.8)  # inside ball 0: 1 - 0.2
    assert overlapping_pairs(x, res.prediction, res.radius) == 0


def test_overlapping_pairs_counts_and_blocks():
    x = np.array([[0.0], [1.0], [1.5], [10.0]])
    pred = np.array([0, 1, 0, -1])
    rad = np.array([0.6, 0.6, 0.1, 100.0])
    # (0,1): d=1 < 1.2, labels differ -> 1; (1,2): d=.5 < .7 -> 1; (0,2) same label; 3 abstained
    assert overlapping_pairs(x, pred, rad) == 2
    assert overlapping_pairs(x, pred, rad, block=1) == 2
    # an open ball of radius 0 is empty: a centre inside another label's ball is no overlap
    assert overlapping_pairs(np.array([[0.0], [0.1]]), np.array([0, 1]), np.array([1.0, 0.0])) == 0
    assert overlapping_pairs(np.array([[0.0], [0.1]]), np.array([0, 1]), np.array([1.0, 1e-3])) == 1
    x, pred, rad = random_certs(3, n=150, dim=3)
    assert overlapping_pairs(x, pred, rad, block=7) == overlapping_pairs(x, pred, rad, block=1000)


def test_mnist_sized_input_is_fast_enough():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(size=(2000, 1, 28, 28)), dtype=torch.float32)
    pred = rng.integers(0, 10, size=2000)
    rad = rng.uniform(5.0, 9.0, size=2000)  # typical distances ~ 11.4: many conflicts
    res = storage_update(x, pred, rad, seed=0)
    assert overlapping_pairs(x, res.prediction, res.radius) == 0


def test_validation():
    x, pred, rad = random_certs(0, n=10)
    with pytest.raises(ConfigError, match="mismatched shapes"):
        storage_update(x, pred[:5], rad)
    with pytest.raises(ConfigError, match="'order'"):
        storage_update(x, pred, rad, order=[0] * 10)
    with pytest.raises(ConfigError, match=r"parameter 'rule' = "):
        storage_update(x, pred, rad, rule="align")
    with pytest.raises(ConfigError, match="'radius'"):
        storage_update(x, np.zeros(10, dtype=int), -np.ones(10))
