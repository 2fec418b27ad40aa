"""Tests for certssb.core.certify: bounds against scipy, closed forms, hand-made votes, validation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, norm

from certssb.core import certify as certify_module
from certssb.core.certify import (
    certify,
    clopper_pearson_lower,
    hoeffding_margin,
    radius,
    radius_ceiling,
    smoothed_prediction,
)
from certssb.core.validation import ConfigError


def one_hot_probs(votes: np.ndarray, c: int, p: float = 0.9) -> np.ndarray:
    """probs consistent with votes: p on the voted class, the rest spread evenly."""
    m, n = votes.shape
    probs = np.full((m, n, c), (1 - p) / (c - 1), dtype=np.float32)
    np.put_along_axis(probs, votes[..., None], p, axis=2)
    return probs


# ---------------------------------------------------------------- bounds and radius


@pytest.mark.parametrize("n", [1, 7, 45, 200])
@pytest.mark.parametrize("alpha", [0.001, 0.01, 0.05, 0.3])
def test_clopper_pearson_matches_scipy_binomtest(n, alpha):
    ks = np.unique(np.linspace(0, n, 9).astype(int))
    got = clopper_pearson_lower(ks, n, alpha)
    want = [
        binomtest(int(k), n, alternative="greater")
        .proportion_ci(confidence_level=1 - alpha, method="exact")
        .low
        for k in ks
    ]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert got[ks == 0].tolist() == [0.0] * int((ks == 0).sum())
    assert np.all(np.diff(got) > 0)  # increasing in k


def test_clopper_pearson_all_agree_closed_form():
    # k = n: Beta(n, 1) quantile is alpha^(1/n)
    assert clopper_pearson_lower(50, 50, 0.001) == pytest.approx(0.001 ** (1 / 50), rel=1e-12)


def test_hoeffding_margin_closed_form():
    for n, a in [(50, 0.001), (1000, 0.0005), (3, 0.2)]:
        assert hoeffding_margin(n, a) == pytest.approx(math.sqrt(math.log(1 / a) / (2 * n)), rel=1e-14)


def test_radius_formula_and_abstain():
    assert radius(0.5, 0.9, 0.1) == pytest.approx(0.5 * norm.ppf(0.9))
    assert radius(1.0, 0.8, 0.3) == pytest.approx(0.5 * (norm.ppf(0.8) - norm.ppf(0.3)))
    r = radius(np.array([1.0, 2.0, 1.0]), np.array([0.4, 0.6, 0.5]), np.array([0.6, 0.4, 0.5]))
    assert r[0] == 0.0 and r[2] == 0.0 and r[1] == pytest.approx(2 * norm.ppf(0.6))
    # out-of-range / extreme probabilities give finite radii, never inf/nan
    r = radius(1.0, np.array([1.0, 1.2, 0.7]), np.array([0.0, -0.3, -0.1]))
    assert np.all(np.isfinite(r)) and np.all(r > 0)


def test_ceilings_and_which_alpha_split_matches_the_design_numbers():
    assert radius_ceiling(50, 0.001, "clopper_pearson") == pytest.approx(1.13, abs=0.005)
    assert radius_ceiling(50, 0.001, "clopper_pearson") == pytest.approx(norm.ppf(0.001 ** (1 / 50)))
    # docs/methods.md#ceilings: hoeffding caps at 1.57 sigma (M=1000) and 0.63 sigma (M=50):
    # the per_bound numbers
    assert radius_ceiling(1000, 0.001, "hoeffding", "per_bound") == pytest.approx(1.57, abs=0.006)
    assert radius_ceiling(50, 0.001, "hoeffding", "per_bound") == pytest.approx(0.63, abs=0.006)
    # the valid Bonferroni split is somewhat lower
    assert radius_ceiling(1000, 0.001, "hoeffding", "bonferroni") == pytest.approx(1.541, abs=0.001)
    assert radius_ceiling(50, 0.001, "hoeffding", "bonferroni") == pytest.approx(0.596, abs=0.001)
    # h >= 1/2: nothing can be certified
    assert radius_ceiling(2, 0.001, "hoeffding") == 0.0


@pytest.mark.parametrize(
    "bound,aggregation,alpha_split",
    [
        ("clopper_pearson", "hard", "bonferroni"),
        ("hoeffding", "hard", "bonferroni"),
        ("hoeffding", "hard", "per_bound"),
    ],
)
def test_all_agree_reaches_the_ceiling(bound, aggregation, alpha_split):
    m, c = 55, 3
    votes = np.tile(np.array([0, 1, 2, 1]), (m, 1))
    sigma = np.array([0.25, 0.5, 1.0, 0.12])
    df = certify(
        votes,
        one_hot_probs(votes, c),
        sigma,
        labels=np.array([0, 1, 2, 0]),
        num_classes=c,
        bound=bound,
        aggregation=aggregation,
        n0=5,
        alpha_split=alpha_split,
    )
    ceil = radius_ceiling(50, 0.001, bound, alpha_split)
    np.testing.assert_allclose(df["radius"], sigma * ceil, rtol=1e-10)
    assert (df["n_estimation"] == 50).all()
    assert df["prediction"].tolist() == [0, 1, 2, 1]
    assert df["correct"].tolist() == [True, True, True, False]


# ---------------------------------------------------------------- certify on hand-made votes


def test_certify_split_clopper_pearson_hand_made():
    # sample 0: first 3 (selection) models vote 1, then 17 of 20 estimation models vote 1
    # sample 1: selection votes 2, but estimation votes mostly 0 -> k small -> abstain
    # sample 2: 50/50 split in estimation -> abstain
    m, c = 23, 3
    votes = np.zeros((m, 3), dtype=np.int64)
    votes[:3, 0] = 1
    votes[3:20, 0] = 1
    votes[20:, 0] = 2
    votes[:3, 1] = 2
    votes[3:, 1] = 0
    votes[:3, 2] = 1
    votes[3:13, 2] = 1
    votes[13:, 2] = 0
    df = certify(
        votes, one_hot_probs(votes, c), 0.5, labels=np.array([1, 0, 1]), num_classes=c, alpha=0.01, n0=3
    )
    p0 = clopper_pearson_lower(17, 20, 0.01)
    assert df.loc[0, "p_lower_a"] == pytest.approx(p0)
    assert df.loc[0, "p_upper_b"] == pytest.approx(1 - p0)
    assert df.loc[0, "radius"] == pytest.approx(0.5 * norm.ppf(p0))
    assert df.loc[0, "prediction"] == 1 and bool(df.loc[0, "correct"])
    assert df["abstained"].tolist() == [False, True, True]
    assert df.loc[1, "prediction"] == -1 and df.loc[1, "radius"] == 0.0 and not df.loc[1, "correct"]
    assert df.loc[2, "radius"] == 0.0
    assert list(df.columns) == [
        "sample_id",
        "label",
        "prediction",
        "p_lower_a",
        "p_upper_b",
        "r1",
        "sigma",
        "sigma_min",
        "radius",
        "radius_published",
        "abstained",
        "correct",
        "n_estimation",
    ]
    assert df.loc[0, "r1"] == pytest.approx(norm.ppf(p0))
    np.testing.assert_array_equal(df["radius"], df["radius_published"])  # uniform sigma: the same
    assert (df["n_estimation"] == 20).all()


def test_certify_same_uses_all_models_and_differs_from_split():
    m, c = 20, 2
    votes = np.zeros((m, 1), dtype=np.int64)
    votes[:4, 0] = 1  # selection sample (n0=4) says 1, the rest says 0
    probs = one_hot_probs(votes, c)
    split = certify(votes, probs, 1.0, labels=np.array([0]), num_classes=c, n0=4, alpha=0.05)
    same = certify(votes, probs, 1.0, labels=np.array([0]), num_classes=c, selection="same", alpha=0.05)
    assert bool(split.loc[0, "abstained"])  # class 1 selected, 0 of 16 estimation votes
    assert same.loc[0, "prediction"] == 0 and same.loc[0, "n_estimation"] == 20
    assert same.loc[0, "p_lower_a"] == pytest.approx(clopper_pearson_lower(16, 20, 0.05))


def test_split_tie_break_by_summed_prob_then_index():
    c = 3
    votes = np.array([[0, 0], [2, 2], [2, 2], [2, 2]])  # n0 = 2: one vote each for 0 and 2
    probs = one_hot_probs(votes, c).astype(np.float64)
    probs[1, 0] = [0.05, 0.05, 0.9]  # sample 0: class 2 has more summed prob -> A = 2
    probs[0, 1] = [0.9, 0.05, 0.05]
    probs[1, 1] = [0.05, 0.05, 0.9]  # sample 1: exact tie in prob too -> smaller index 0
    df = certify(
        votes,
        probs,
        1.0,
        labels=np.array([2, 0]),
        num_classes=c,
        n0=2,
        bound="hoeffding",
        alpha=0.4,
        alpha_split="per_bound",
    )
    h = hoeffding_margin(2, 0.4)
    assert df.loc[0, "p_lower_a"] == pytest.approx(1 - h)  # A = 2, both estimation models vote 2
    assert df.loc[1, "p_lower_a"] == pytest.approx(0 - h)  # A = 0, nobody votes 0 -> abstain
    assert df["abstained"].tolist() == [False, True]


def test_hoeffding_soft_and_hard_values():
    m, c = 100, 3
    votes = np.zeros((m, 1), dtype=np.int64)
    votes[70:, 0] = 1
    probs = np.zeros((m, 1, c))
    probs[:70, 0] = [0.7, 0.2, 0.1]
    probs[70:, 0] = [0.3, 0.6, 0.1]
    kw = dict(labels=np.array([0]), num_classes=c, bound="hoeffding", selection="same", alpha=0.2)
    h = hoeffding_margin(100, 0.1)  # bonferroni: alpha / 2
    soft = certify(votes, probs, 0.5, aggregation="soft", **kw)
    pa, pb = 0.7 * 0.7 + 0.3 * 0.3, 0.7 * 0.2 + 0.3 * 0.6
    assert soft.loc[0, "p_lower_a"] == pytest.approx(pa - h)
    assert soft.loc[0, "p_upper_b"] == pytest.approx(pb + h)
    assert pa - h > pb + h and not soft.loc[0, "abstained"]
    assert soft.loc[0, "radius"] == pytest.approx(0.25 * (norm.ppf(pa - h) - norm.ppf(pb + h)))
    hard = certify(votes, probs, 0.5, aggregation="hard", **kw)
    assert hard.loc[0, "p_lower_a"] == pytest.approx(0.7 - h)
    assert hard.loc[0, "p_upper_b"] == pytest.approx(0.3 + h)


def test_abstain_on_even_split_for_every_bound():
    votes = np.array([[0], [1]] * 25)  # 50 models, 25 / 25
    for bound, agg in [("clopper_pearson", "hard"), ("hoeffding", "hard"), ("hoeffding", "soft")]:
        df = certify(
            votes,
            one_hot_probs(votes, 2),
            1.0,
            labels=np.array([0]),
            num_classes=2,
            bound=bound,
            aggregation=agg,
            selection="same",
        )
        assert bool(df.loc[0, "abstained"]) and df.loc[0, "prediction"] == -1 and df.loc[0, "radius"] == 0


def test_sigma_min_gives_the_sound_radius_and_sigma_the_published_one():
    votes = np.zeros((30, 2), dtype=np.int64)
    df = certify(
        votes,
        one_hot_probs(votes, 2),
        np.array([0.5, 0.3]),
        labels=np.array([0, 0]),
        num_classes=2,
        sigma_min=np.array([0.25, 0.3]),
    )
    np.testing.assert_allclose(df["radius"], df["r1"] * np.array([0.25, 0.3]), rtol=1e-14)
    np.testing.assert_allclose(df["radius_published"], df["r1"] * np.array([0.5, 0.3]), rtol=1e-14)
    np.testing.assert_allclose(df["radius"], df["radius_published"] * np.array([0.5, 1.0]))
    np.testing.assert_array_equal(df["sigma_min"], [0.25, 0.3])
    assert (df["radius"] <= df["radius_published"]).all()
    df2 = certify(votes, one_hot_probs(votes, 2), 0.5, labels=np.array([0, 0]), num_classes=2)
    np.testing.assert_array_equal(df2["radius"], df2["radius_published"])
    np.testing.assert_array_equal(df2["sigma_min"], df2["sigma"])
    with pytest.raises(ConfigError, match="sigma_min"):
        certify(votes, one_hot_probs(votes, 2), 0.2, labels=np.array([0, 0]), num_classes=2, sigma_min=0.3)


def test_fractions_and_int_votes_give_the_same_certificate():
    """One-hot fractions (K = 1) and the old (M, N) int votes are the same input."""
    rng = np.random.default_rng(0)
    votes = rng.choice(3, size=(40, 6), p=[0.8, 0.15, 0.05])
    fractions = np.eye(3)[votes]
    for kw in ({}, {"bound": "hoeffding"}, {"bound": "hoeffding", "selection": "same"}):
        a = certify(votes, one_hot_probs(votes, 3), 0.5, labels=np.zeros(6, int), num_classes=3, **kw)
        b = certify(fractions, one_hot_probs(votes, 3), 0.5, labels=np.zeros(6, int), num_classes=3, **kw)
        pd.testing.assert_frame_equal(a, b)


def test_k_draw_fractions_refused_by_clopper_pearson_and_bounded_by_hoeffding():
    m, k = 30, 4
    fractions = np.zeros((m, 1, 2))
    fractions[:, 0, 0] = 3 / k  # every model: 3 of its 4 draws vote 0
    fractions[:, 0, 1] = 1 / k
    probs = fractions.astype(np.float32)
    with pytest.raises(ConfigError, match=r"^parameter 'num_draws'.*hoeffding"):
        certify(fractions, probs, 0.5, labels=np.array([0]), num_classes=2)
    df = certify(fractions, probs, 0.5, labels=np.array([0]), num_classes=2, bound="hoeffding", n0=5)
    h = hoeffding_margin(25, 0.0005)
    assert df.loc[0, "p_lower_a"] == pytest.approx(0.75 - h)  # the mean fraction, not 1 (the mode's vote)
    assert df.loc[0, "p_upper_b"] == pytest.approx(0.25 + h)
    with pytest.raises(ConfigError, match="votes"):
        certify(fractions * 2, probs, 0.5, labels=np.array([0]), num_classes=2, bound="hoeffding")


def test_smoothed_prediction_of_fractions():
    f = np.array([[[0.6, 0.4]], [[0.0, 1.0]], [[0.6, 0.4]]])  # summed: 1.2 vs 1.8
    assert smoothed_prediction(f, 2).tolist() == [1]


def test_smoothed_prediction_majority_ties_to_smaller_index():
    votes = np.array([[2, 1, 0], [2, 0, 0], [1, 1, 2], [1, 0, 2]])
    assert smoothed_prediction(votes, 3).tolist() == [1, 0, 0]


# ---------------------------------------------------------------- validation


def _ok_inputs(m=10, n=3, c=3):
    votes = np.zeros((m, n), dtype=np.int64)
    return votes, one_hot_probs(votes, c), np.full(n, 0.5), np.zeros(n, dtype=np.int64)


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan")])
def test_bad_alpha(alpha):
    v, p, s, y = _ok_inputs()
    with pytest.raises(ConfigError, match=r"^parameter 'alpha'"):
        certify(v, p, s, labels=y, num_classes=3, alpha=alpha)


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"bound": "bernstein"}, "bound"),
        ({"aggregation": "median"}, "aggregation"),
        ({"selection": "both"}, "selection"),
        ({"alpha_split": "holm"}, "alpha_split"),
        ({"n0": 10}, "n0"),
        ({"n0": 0}, "n0"),
        ({"n0": -1}, "n0"),
        ({"n0": 2.5}, "n0"),
    ],
)
def test_bad_parameters_named(kw, name):
    v, p, s, y = _ok_inputs()
    with pytest.raises(ConfigError, match=rf"^parameter '{name}' = "):  # core names its own arguments
        certify(v, p, s, labels=y, num_classes=3, **kw)


def test_clopper_pearson_on_soft_votes_rejected():
    v, p, s, y = _ok_inputs()
    with pytest.raises(ConfigError, match="not a valid"):
        certify(v, p, s, labels=y, num_classes=3, aggregation="soft")


def test_mismatched_shapes():
    v, p, s, y = _ok_inputs()
    with pytest.raises(ConfigError, match=r"mismatched shapes.*\(10, 3\).*\(10, 4, 3\)"):
        certify(v, p[:, :1].repeat(4, axis=1), s, labels=y, num_classes=3)
    with pytest.raises(ConfigError, match=r"mismatched shapes.*sigma"):
        certify(v, p, s[:2], labels=y, num_classes=3)
    with pytest.raises(ConfigError, match=r"mismatched shapes.*labels"):
        certify(v, p, s, labels=y[:1], num_classes=3)
    with pytest.raises(ConfigError, match=r"mismatched shapes.*probs"):
        certify(v, p, s, labels=y, num_classes=4)
    with pytest.raises(ConfigError, match="votes"):
        certify(v + 5, p, s, labels=y, num_classes=3)


# ---------------------------------------------------------------------------------------------------
# radius_collapse: the second-class share per certifier (issue 19)


def test_min_certifying_count_is_the_first_count_whose_cp_bound_passes_one_half():
    for n in (45, 1000):
        k = certify_module.min_certifying_count(n, 0.001)
        low = certify_module.clopper_pearson_lower
        assert low(k, n, 0.001) > 0.5 >= low(k - 1, n, 0.001)
    assert certify_module.min_certifying_count(45, 0.001) == 34
    assert certify_module.min_certifying_count(5, 0.001) is None  # 0.001^(1/5) = 0.25: unanimity abstains


def test_collapse_share_certifies_a_small_radius_where_one_third_abstains():
    n, alpha = 45, 0.001  # M = 50, n0 = 5: the default poisoning certifiers
    s = certify_module.collapse_share(n, alpha)
    assert s == pytest.approx(8 / 45)
    k = round((1 - s) * n)
    low = certify_module.clopper_pearson_lower(k, n, alpha)
    r1 = float(norm.ppf(low))
    assert 0 < r1 < 0.3  # certified, with a small radius (sigma units)
    # one standard deviation below the expected count still certifies
    assert certify_module.clopper_pearson_lower(int(np.floor(k - np.sqrt(k * (n - k) / n))), n, alpha) > 0.5
    # the old share of 1/3 abstains (p_hat = 2/3 -> p_lower ~ 0.43), the observation
    assert certify_module.clopper_pearson_lower(30, n, alpha) == pytest.approx(0.43, abs=0.01)


def test_collapse_share_grows_with_the_number_of_votes_and_is_zero_when_only_unanimity_certifies():
    assert certify_module.collapse_share(1000, 0.001) == pytest.approx(0.434, abs=0.002)
    assert certify_module.collapse_share(45, 0.001) < certify_module.collapse_share(1000, 0.001) < 0.5
    assert certify_module.collapse_share(10, 0.001) == 0.0  # 0.001^(1/10) = 0.50: only 10/10 certifies
    assert certify_module.collapse_share(5, 0.001) == 0.0
    with pytest.raises(ConfigError, match="n_estimation"):
        certify_module.collapse_share(0, 0.001)


def test_check_selection_without_m_keeps_the_rules_that_do_not_need_it():
    """M unknown (no noise block in the run): n0 >= 1 is still required of 'split', n0 < M is left out."""
    with pytest.raises(ConfigError, match=r"parameter 'n0' = 0 .*n0 >= 1"):
        certify_module.check_selection("split", 0, None)
    certify_module.check_selection("split", 500, None)  # any n0 >= 1: M is not known
    with pytest.raises(ConfigError, match=r"n0 < M"):
        certify_module.check_selection("split", 500, 50)
