"""Soundness regressions (docs/methods.md#what-a-certificate-claims): what the library calls certified must
hold.

a. A base learner that reads one training pixel breaks Cert-SSB's published radius sigma_x * R1 but not
   the sound radius sigma_min * R1.
b. K > 1 input draws: the mode of K argmaxes certified with the single-draw radius overshoots the exact
   flip distance of a linear model; the per-model fractions with Hoeffding do not.
c. Dirty-label poisoning with zero feature norm is reported outside the threat model, without a
   "certified against" fraction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

from certssb.config import DataBlock, EvaluationBlock, NoiseBlock, block
from certssb.core import summary as run_summary
from certssb.core.certify import certify
from certssb.core.validation import ConfigError
from certssb.pipelines.data_engineering import nodes as de

# ------------------------------------------------------------------ a. the one-pixel-reading learner


def test_one_pixel_reading_learner_breaks_the_published_radius_not_the_sound_one():
    """h(D, x) = 1 iff training point i0's pixel (plus its training noise) exceeds the test feature x.

    Training sigma_i in [0.25, 0.5], sigma_{i0} = 0.25, sigma_x = 0.5. The exact smoothed classifier is
    g(D, x) = 1 iff P(v + sigma_{i0} eps > x) = Phi((v - x) / sigma_{i0}) > 1/2, i.e. iff v > x: moving the
    pixel v by |v - x| (or more) towards x flips it, any smaller move does not.
    """
    rng = np.random.default_rng(0)
    n_train, i0, v = 50, 7, 0.5
    sigma_train = rng.uniform(0.25, 0.5, size=n_train)
    sigma_train[i0] = 0.25
    sigma_x = 0.5
    gaps = rng.uniform(0.05, 0.35, size=20) * rng.choice([-1.0, 1.0], size=20)
    x = v - gaps  # test features; v - x = gaps
    labels = (v > x).astype(np.int64)  # the exact smoothed prediction
    m = 1000
    eps = rng.standard_normal(m)  # model k's training noise on pixel i0 (its noise plan)
    votes = ((v + sigma_train[i0] * eps)[:, None] > x[None, :]).astype(
        np.int64
    )  # (M, N) closed form per model
    probs = np.eye(2, dtype=np.float32)[votes]
    sigma_min = min(sigma_x, float(sigma_train.min()))
    assert sigma_min == 0.25
    certs = certify(
        votes,
        probs,
        np.full(20, sigma_x),
        labels=labels,
        num_classes=2,
        n0=10,
        sigma_min=np.full(20, sigma_min),
    )
    ok = (~certs["abstained"] & certs["correct"]).to_numpy()
    assert ok.sum() >= 15
    flip = np.abs(v - x)  # exact distance (training pixel) at which g flips

    def g(pixel: np.ndarray) -> np.ndarray:  # exact smoothed classifier, closed form
        return (norm.cdf((pixel - x) / sigma_train[i0]) > 0.5).astype(np.int64)

    towards = -np.sign(v - x)  # direction that moves the pixel towards the threshold
    rad = certs["radius"].to_numpy()
    pub = certs["radius_published"].to_numpy()
    # sound: every certified point survives every training perturbation of norm < radius (the worst one)
    assert np.all(g(v + towards * rad * (1 - 1e-9))[ok] == labels[ok])
    assert np.all(rad[ok] <= flip[ok])
    # the Sigma-weighted form: ||Delta||_Sigma = |delta| / sigma_{i0} < r1 never flips
    assert np.all(certs["r1"].to_numpy()[ok] * sigma_train[i0] <= flip[ok])
    # published: a move of norm < radius_published flips most certified points
    move = (flip + pub) / 2  # strictly between the flip distance and the published radius where pub > flip
    broken = (pub > flip) & (g(v + towards * move) != labels)
    assert broken[ok].mean() >= 0.8
    assert np.all(move[broken] < pub[broken])


# ------------------------------------------------------------------ b. the K-draw probe


def _linear_probe(k: int = 25, m: int = 200, n: int = 40, d: int = 10, sigma: float = 0.5, seed: int = 0):
    """f(x) = argmax(W x) with two rows: class 1 iff w . x > 0, w = W[1] - W[0]. Input-only smoothing
    (the model is fixed); model k predicts K noisy copies of every test input."""
    rng = np.random.default_rng(seed)
    wmat = rng.standard_normal((2, d))
    w = wmat[1] - wmat[0]
    u = w / np.linalg.norm(w)
    margins = rng.uniform(0.05, 0.5, size=n) * rng.choice([-1.0, 1.0], size=n)
    base = rng.standard_normal((n, d))
    base -= (base @ u)[:, None] * u
    x = base + margins[:, None] * u  # w . x / ||w|| = margin exactly
    noise = rng.standard_normal((m, k, n, d)) * sigma
    pred = ((x[None, None] + noise) @ w > 0).astype(np.int64)  # (M, K, N)
    fractions = np.stack([(pred == 0).mean(1), (pred == 1).mean(1)], axis=-1)  # (M, N, 2)
    mode = (pred.sum(1) * 2 > k).astype(np.int64)  # old path: the mode of the K argmaxes (K odd: no ties)
    labels = (margins > 0).astype(np.int64)
    return fractions, mode, labels, np.abs(margins), sigma


def test_k_draw_mode_vote_overshoots_and_hoeffding_on_fractions_does_not():
    fractions, mode, labels, flip, sigma = _linear_probe()
    probs = fractions.astype(np.float32)
    # the old unsound path: mode of K argmaxes, one "vote" per model, single-draw Clopper-Pearson radius
    old = certify(mode, np.eye(2, dtype=np.float32)[mode], sigma, labels=labels, num_classes=2, n0=10)
    old_ok = (~old["abstained"] & old["correct"]).to_numpy()
    assert old_ok.sum() >= 10
    overshoot = old["radius"].to_numpy() > flip  # certified beyond the exact flip distance |w.x| / ||w||
    assert overshoot[old_ok].mean() > 0.5
    # the new path refuses Clopper-Pearson on K > 1 fractions ...
    with pytest.raises(ConfigError, match=r"^parameter 'num_draws'"):
        certify(fractions, probs, sigma, labels=labels, num_classes=2, n0=10)
    # ... and Hoeffding on the fractions never certifies beyond the flip distance (failure rate <= alpha)
    new = certify(fractions, probs, sigma, labels=labels, num_classes=2, n0=10, bound="hoeffding")
    new_ok = (~new["abstained"] & new["correct"]).to_numpy()
    assert new_ok.sum() >= 10
    assert np.all(new["radius"].to_numpy()[new_ok] <= flip[new_ok])


# ------------------------------------------------------------------ c. the dirty-label probe


def _raw_dataset(n_train: int = 200, n_test: int = 40, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    y_train = torch.arange(n_train) % 4
    y_test = torch.arange(n_test) % 4
    return {
        "x_train": torch.rand(n_train, 1, 12, 12, generator=g),
        "y_train": y_train,
        "x_test": torch.rand(n_test, 1, 12, 12, generator=g),
        "y_test": y_test,
        "num_classes": 4,
        "class_names": ["a", "b", "c", "d"],
        "fingerprint": "probe",
    }


#: poison's noise and evaluation blocks: read only by the radius-collapse attack, which these tests skip
UNUSED = (NoiseBlock.model_construct(), EvaluationBlock.model_construct())


def _attack(**kw) -> dict:
    return {
        "name": "onepixel",
        "trigger": "onepixel",
        "poison_rate": 0.1,
        "target": 0,
        "delta": 0.0,
        "pattern_seed": 1234,
        "badnets_size": 3,
        "blend_alpha": 0.2,
        "label_mode": "dirty",
        **kw,
    }


def _certs_and_sigma(n: int, n_train: int) -> tuple[pd.DataFrame, dict]:
    certs = pd.DataFrame(
        {
            "split": "clean",
            "r1": np.linspace(0.5, 2.0, n),
            "radius": np.full(n, 0.5),
            "correct": np.ones(n, bool),
            "abstained": np.zeros(n, bool),
        }
    )
    sigma = {"train": torch.full((n_train,), 0.25), "clean": torch.full((n,), 0.25)}
    return certs, sigma


def test_dirty_label_with_zero_feature_norm_is_outside_the_threat_model():
    raw = _raw_dataset()
    data = DataBlock.model_construct(certify_size=None)  # the one data field poison reads
    _, clean, trig, report, summary = de.poison(raw, data, block("attack", _attack()), 0, *UNUSED)
    # feature norm 0, yet 20 labels changed: a relabelling the l2 certificate does not cover
    assert summary["feature_norm"] == 0.0 and summary["joint_norm"] == 0.0
    assert summary["label_changes"] == 20 > 0 and summary["inserted"] == 0
    assert summary["in_threat_model"] is False and summary["threat_model"] == run_summary.OUTSIDE
    certs, sigma = _certs_and_sigma(len(clean["y"]), 200)
    out = run_summary.attack_metrics(certs, trig, sigma, summary, [0.0, 0.5])
    assert out["attack_in_threat_model"] is False and out["attack_threat_model"] == run_summary.OUTSIDE
    assert out["attack_label_changes"] == 20 and out["attack_feature_norm"] == 0.0
    assert "fraction_certified_against_attack" not in out  # no fraction outside the model
    # contrast: the same attack with clean labels (target-class points, labels kept) is inside the model
    clean_label = block("attack", _attack(label_mode="clean", delta=0.05))
    _, clean2, trig2, _, summary2 = de.poison(raw, data, clean_label, 0, *UNUSED)
    assert summary2["in_threat_model"] is True and summary2["label_changes"] == 0
    out2 = run_summary.attack_metrics(certs, trig2, sigma, summary2, [0.0, 0.5])
    w = np.sqrt(
        sum((np.array(summary2["train_poisoned_norms"]) / 0.25) ** 2) + (trig2["norms"].numpy() / 0.25) ** 2
    )
    r1 = certs["r1"].to_numpy()[trig2["source_index"].numpy()]
    assert out2["fraction_certified_against_attack"] == pytest.approx(np.mean(r1 > w))
    assert 0 < out2["fraction_certified_against_attack"] < 1  # the probe can tell covered from not covered


@pytest.mark.parametrize(
    "attack, inside",
    [
        (_attack(), False),
        (_attack(name="abstain", delta=1.0), False),
        (_attack(label_mode="clean", delta=0.05), True),
    ],
)
def test_reach_metrics_are_emitted_only_for_attacks_inside_the_threat_model(attack, inside):
    """A dirty-label backdoor and a certifier attack (inserted copies) get no coverage metric: nothing that
    reads as "certified against" an attack the certificate does not cover; a clean-label attack does."""
    data = DataBlock.model_construct(certify_size=None)
    _, clean, trig, _, summary = de.poison(_raw_dataset(), data, block("attack", attack), 0, *UNUSED)
    certs, sigma = _certs_and_sigma(len(clean["y"]), 200)
    out = run_summary.attack_metrics(certs, trig, sigma, summary, [0.0, 0.5])
    assert out["attack_in_threat_model"] is inside
    assert summary["in_threat_model"] is inside
    present = [k for k in run_summary.REACH_KEYS if k in out]
    assert present == (
        ["attack_norm_covered", "attack_points_covered", "certificate_covers_test_trigger"] if inside else []
    )
    assert "certified_radius_median" in out  # the radius itself is no claim about the attack
