"""Tests for certssb.core.metrics: hand-computed tables, monotonicity, attack-norm helpers, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from certssb.core import metrics
from certssb.core.certify import certify
from certssb.core.metrics import (
    abstain_rate,
    attack_success_rate,
    certified_accuracy,
    clean_accuracy,
    degenerate_members,
    fraction_certified_against,
    mean_radius,
    radius_key,
    smallest_radius_covering,
    weighted_attack_norm,
)
from certssb.core.validation import ConfigError


def table() -> pd.DataFrame:
    # 5 rows: correct r=0.6, correct r=0.3, wrong r=1.0, abstained, correct r=0.25
    return pd.DataFrame(
        {
            "radius": [0.6, 0.3, 1.0, 0.0, 0.25],
            "radius_published": [1.2, 0.3, 1.0, 0.0, 0.5],
            "r1": [1.2, 0.6, 2.0, 0.0, 0.5],
            "correct": [True, True, False, False, True],
            "abstained": [False, False, False, True, False],
        }
    )


def test_hand_made_table():
    out = certified_accuracy(table(), [0.0, 0.25, 0.5, 1.0, 2.0])
    assert list(out.columns) == ["radius", "certified_accuracy", "certified_ratio", "conditional_accuracy"]
    np.testing.assert_allclose(out["certified_accuracy"], [3 / 5, 3 / 5, 1 / 5, 0, 0])
    np.testing.assert_allclose(out["certified_ratio"], [4 / 5, 4 / 5, 2 / 5, 1 / 5, 0])
    np.testing.assert_allclose(out["conditional_accuracy"][:4], [3 / 4, 3 / 4, 1 / 2, 0])
    assert np.isnan(out["conditional_accuracy"].iloc[4])
    pub = certified_accuracy(table(), [0.0, 0.25, 0.5, 1.0], radius_column="radius_published")
    np.testing.assert_allclose(pub["certified_accuracy"], [3 / 5, 3 / 5, 2 / 5, 1 / 5])
    assert mean_radius(table(), radius_column="radius_published") == pytest.approx(
        (1.2 + 0.3 + 1.0 + 0.5) / 5
    )
    assert abstain_rate(table()) == pytest.approx(0.2)
    assert mean_radius(table()) == pytest.approx((0.6 + 0.3 + 1.0 + 0.25) / 5)


def test_monotone_non_increasing_on_real_certificates():
    rng = np.random.default_rng(0)
    m, n, c = 60, 300, 4
    p_true = rng.dirichlet(np.ones(c) * 0.3, size=n)
    votes = np.stack([[rng.choice(c, p=p) for p in p_true] for _ in range(m)])
    probs = np.eye(c, dtype=np.float32)[votes]
    certs = certify(
        votes, probs, rng.uniform(0.1, 1.0, size=n), labels=rng.integers(0, c, size=n), num_classes=c
    )
    radii = np.round(np.arange(0, 2.01, 0.05), 2).tolist()
    out = certified_accuracy(certs, radii)
    assert np.all(np.diff(out["certified_accuracy"]) <= 0)
    assert np.all(np.diff(out["certified_ratio"]) <= 0)
    assert np.all(out["certified_accuracy"] <= out["certified_ratio"])
    assert out["certified_accuracy"].iloc[0] > 0


def test_all_zero_radii_give_zero_beyond_zero():
    certs = pd.DataFrame({"radius": [0.0] * 4, "correct": [True] * 4, "abstained": [False] * 4})
    out = certified_accuracy(certs, [0, 0.1, 1])
    assert out["certified_accuracy"].tolist() == [1.0, 0.0, 0.0]
    assert out["certified_ratio"].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("radii", [[0.5, 0.25], [-0.1, 0.5], [], [0, 0], "0.5", [0, float("nan")]])
def test_bad_radii(radii):
    with pytest.raises(ConfigError, match=r"parameter 'radii"):
        certified_accuracy(table(), radii)


def test_missing_columns_and_empty():
    with pytest.raises(ConfigError, match="lacks columns"):
        certified_accuracy(table().drop(columns="correct"), [0])
    with pytest.raises(ConfigError, match="no rows"):
        certified_accuracy(table().iloc[:0], [0])


def test_clean_accuracy_and_attack_success_rate():
    assert clean_accuracy([0, 1, 2, -1], [0, 1, 1, 3]) == pytest.approx(0.5)
    assert attack_success_rate([0, 0, 3, 0], 0) == pytest.approx(0.75)
    assert attack_success_rate(np.array([1, 2]), np.array([1, 1])) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="mismatched shapes"):
        clean_accuracy([0, 1], [0])


def test_radius_key_has_no_dots():
    assert [radius_key(r) for r in (0.0, 0.25, 0.5, 1.0, 2.0, 1.25)] == [
        "r000",
        "r025",
        "r050",
        "r100",
        "r200",
        "r125",
    ]
    with pytest.raises(ConfigError, match="radius"):
        radius_key(-0.5)


def test_attack_norm_helpers():
    radii = [0.0, 0.25, 0.5, 1.0]
    assert smallest_radius_covering(0.3, radii) == 0.5
    assert smallest_radius_covering(0.5, radii) == 1.0  # strict: r > norm
    assert smallest_radius_covering(1.0, radii) is None
    with pytest.raises(ConfigError, match="'norm'"):
        smallest_radius_covering(-1.0, radii)


def test_weighted_attack_norm_closed_form():
    train_n, train_s = np.array([0.3, 0.4]), np.array([0.25, 0.5])
    test_n, test_s = np.array([0.0, 1.0, 0.5]), np.array([0.5, 0.25, 1.0])
    got = weighted_attack_norm(train_n, train_s, test_n, test_s)
    base = (0.3 / 0.25) ** 2 + (0.4 / 0.5) ** 2
    np.testing.assert_allclose(got, np.sqrt(base + (test_n / test_s) ** 2), rtol=1e-14)
    # uniform sigma: the plain joint l2 norm divided by sigma
    u = weighted_attack_norm(train_n, 0.5, test_n, 0.5)
    np.testing.assert_allclose(u, np.sqrt(0.3**2 + 0.4**2 + test_n**2) / 0.5, rtol=1e-14)
    # no training perturbation, no trigger: 0
    np.testing.assert_array_equal(weighted_attack_norm([], [], np.zeros(2), 0.3), [0.0, 0.0])
    # never larger than the l2 norm over sigma_min (the ball inside the ellipsoid)
    l2 = np.sqrt((train_n**2).sum() + test_n**2)
    assert np.all(got <= l2 / np.minimum(train_s.min(), test_s) + 1e-12)
    with pytest.raises(ConfigError, match="train_sigma"):
        weighted_attack_norm(train_n, [0.25, 0.0], test_n, test_s)
    with pytest.raises(ConfigError, match="mismatched shapes"):
        weighted_attack_norm(train_n, train_s, test_n, test_s[:2])


def test_fraction_certified_against_compares_r1_with_the_weighted_norm():
    t = table()  # r1 = 1.2, 0.6, 2.0 (wrong), 0 (abstained), 0.5
    assert fraction_certified_against(t, 0.6) == pytest.approx(1 / 5)  # only r1 = 1.2 (0.6 is not > 0.6)
    assert fraction_certified_against(t, 0.0) == pytest.approx(3 / 5)
    assert fraction_certified_against(t, [0.0, 1.0, 0.0, 0.0, 0.49]) == pytest.approx(2 / 5)
    with pytest.raises(ConfigError, match="mismatched shapes"):
        fraction_certified_against(t, [0.1, 0.2])


def test_degenerate_members():
    acc = np.array([0.98, 0.14, 0.165, 0.18, 0.5])
    prior = np.full(10, 0.1)
    prior[0], prior[1] = 0.12, 0.08  # a constant "class 0" predictor scores 0.12
    assert degenerate_members(acc, prior).tolist() == [False, True, True, False, False]
    assert degenerate_members(acc, prior, margin=0.0).tolist() == [False, False, False, False, False]
    with pytest.raises(ConfigError, match="class_prior"):
        degenerate_members(acc, [0.5, 0.6])
    with pytest.raises(ConfigError, match="member_accuracy"):
        degenerate_members([1.5], [0.5, 0.5])


@pytest.mark.parametrize(
    "radius, delta, delta_x", [(1.0, 0.3, 0.0), (1.0, 0.3, 0.5), (2.5, 1.0, 1.0), (0.9, 0.3, 0.3)]
)
def test_certificate_reach_is_the_largest_k_whose_joint_norm_stays_below_the_radius(radius, delta, delta_x):
    reach = metrics.certificate_reach(radius, delta, delta_x)
    k = reach["points_covered"]
    assert np.sqrt(k * delta**2 + delta_x**2) < radius  # k points are covered ...
    assert np.sqrt((k + 1) * delta**2 + delta_x**2) >= radius  # ... and k + 1 are not
    assert reach["points_ratio"] == pytest.approx((radius / delta) ** 2) and reach["covers_test_trigger"]


def test_certificate_reach_covers_nothing_when_the_test_trigger_alone_is_too_large():
    assert metrics.certificate_reach(0.5, 0.1, 3.0) == {
        "points_covered": 0,
        "covers_test_trigger": False,
        "points_ratio": pytest.approx(25.0),
    }
    with pytest.raises(ValueError, match="radius"):
        metrics.certificate_reach(float("nan"), 0.1, 0.1)
