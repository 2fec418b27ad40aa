"""Certification of the smoothed classifier from the ensemble's votes (ALGORITHMS.md §2-§3).

Setting. Model ``k`` (k = 1..M) is trained on ``D + E_k`` and predicts ``x + eps_k``; the pairs
``(E_k, eps_k)`` are i.i.d. across ``k``, so the M per-model outcomes for one test sample are i.i.d.
draws: a categorical vote (``votes[k, i]``) or a probability vector in the simplex (``probs[k, i]``).
The number of Monte-Carlo samples behind every bound is therefore the number of *models* used for
estimation, never ``M * K`` (the K input draws inside one model are not independent of its ``E_k``).

Certificate (Cohen et al. 2019; joint form of RAB / Wang et al. 2020). If with probability
``>= 1 - alpha``

    p_A >= p_lower_a   and   max_{c != A} p_c <= p_upper_b,   p_lower_a > p_upper_b,

then the smoothed prediction ``A`` is constant for every joint perturbation (training-set backdoor
plus test trigger) with ``||Delta||_2 < R``,

    R = sigma / 2 * (Phi^-1(p_lower_a) - Phi^-1(p_upper_b)).

Bounds (``bound``):

* ``clopper_pearson`` (hard votes only): ``p_lower_a`` is the exact one-sided Clopper-Pearson lower
  bound at level ``alpha`` on the top class's vote probability, ``p_upper_b = 1 - p_lower_a``, so
  ``R = sigma * Phi^-1(p_lower_a)``; abstain when ``p_lower_a <= 1/2``. One bound, so the whole
  certificate holds with probability ``>= 1 - alpha`` and ``alpha_split`` plays no role.
* ``hoeffding`` (paper fidelity, RAB / Cert-SSB): per-model values in [0, 1] (one-hot hard votes or
  softmax vectors), ``p_lower_a = mean_A - h``, ``p_upper_b = max_{c != A} mean_c + h`` with
  ``h = sqrt(ln(1/alpha') / (2 n))``. ``alpha_split="bonferroni"`` uses ``alpha' = alpha / 2`` for each
  of the two bounds (whole certificate ``>= 1 - alpha``); ``"per_bound"`` uses ``alpha' = alpha`` for
  each, as the released code does (``>= 1 - 2 alpha`` in total). Caveat: ``max_c mean_c + h`` bounds the
  empirical runner-up's probability; for more than two classes a bound valid simultaneously for every
  ``c != A`` would need a further union bound over the classes (neither RAB nor Cert-SSB applies it).

Top-class selection (``selection``):

* ``split`` (valid; Cohen et al.'s ``n0``): ``A`` is chosen from the first ``n0`` models only and the
  remaining ``M - n0`` models estimate, so the bound is not conditioned on a data-dependent choice.
* ``same``: ``A`` is chosen from all M models and the same M models estimate. This is what the RAB and
  Cert-SSB released code does; strictly, selecting the class on the estimation sample invalidates the
  level-``alpha`` guarantee (a small optimistic bias when the top two classes are close).

Selection score: hard aggregation ranks classes by vote counts (ties -> larger summed probability ->
smaller index); soft aggregation ranks by summed probability (ties -> larger count -> smaller index),
so that ``A`` is the argmax of the quantity that is then bounded.

Sample-specific sigma: ``sigma[i]`` is the sigma of sample i's own input noise. ``sigma_floor`` (the
smallest sigma involved: training sigmas and the sample's own) gives ``conservative_radius``, the same
formula with ``sigma_floor``; input-dependent-sigma certificates are not sound in general (Sukenik et
al., ICML 2022), so reports show both.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import beta, norm

from certssb.core.validation import ConfigError, choice, fail, number

BOUNDS = ("clopper_pearson", "hoeffding")
AGGREGATIONS = ("hard", "soft")
SELECTIONS = ("split", "same")
ALPHA_SPLITS = ("bonferroni", "per_bound")

ABSTAIN = -1

# Probabilities are clipped into [_P_MIN, _P_MAX] before Phi^-1 so that no radius is infinite.
_P_MIN = float(np.finfo(np.float64).tiny)
_P_MAX = float(np.nextafter(1.0, 0.0))

CERT_COLUMNS = (
    "sample_id",
    "label",
    "prediction",
    "p_lower_a",
    "p_upper_b",
    "sigma",
    "radius",
    "abstained",
    "correct",
    "conservative_radius",
    "n_estimation",
)


def _alpha(alpha: float) -> float:
    return float(number("evaluation.alpha", alpha, low=0, high=1, low_open=True, high_open=True))


def clopper_pearson_lower(k, n, alpha: float) -> np.ndarray:
    """One-sided exact (Clopper-Pearson) lower confidence bound for a binomial proportion.

    ``P(p >= lower) >= 1 - alpha`` with ``lower = Beta^-1(alpha; k, n - k + 1)`` for ``k >= 1`` and
    ``lower = 0`` for ``k = 0``. Identical to
    ``scipy.stats.binomtest(k, n, alternative="greater").proportion_ci(1 - alpha, "exact").low``.
    Vectorised over ``k`` (and ``n``); returns float64 of the broadcast shape.
    """
    alpha = _alpha(alpha)
    k = np.asarray(k)
    n = np.asarray(n)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        fail("k", f"counts in [{k.min()}, {k.max()}] with n in [{n.min()}, {n.max()}]",
             "need 0 <= k <= n, n >= 1")
    k_f = k.astype(np.float64)
    n_f = n.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = beta.ppf(alpha, np.maximum(k_f, 1.0), n_f - k_f + 1.0)
    return np.where(k_f == 0, 0.0, low).astype(np.float64)


def hoeffding_margin(n: int, alpha: float) -> float:
    """Hoeffding one-sided margin ``h = sqrt(ln(1/alpha) / (2 n))`` for the mean of ``n`` i.i.d.
    [0, 1]-valued draws: ``P(mean - E >= h) <= alpha``."""
    number("n", n, low=1, integer=True)
    alpha = _alpha(alpha)
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * n))


def radius(sigma, p_lower_a, p_upper_b) -> np.ndarray:
    """``R = sigma / 2 * (Phi^-1(p_lower_a) - Phi^-1(p_upper_b))``, and 0 where ``p_lower_a <= p_upper_b``
    (the caller marks those samples as abstained). Probabilities are clipped into (0, 1) first, so a
    bound of 0 or 1 (or beyond, e.g. ``p_A - h < 0``) gives a finite radius. Broadcasts its inputs."""
    sigma = np.asarray(sigma, dtype=np.float64)
    pa = np.asarray(p_lower_a, dtype=np.float64)
    pb = np.asarray(p_upper_b, dtype=np.float64)
    r = 0.5 * sigma * (norm.ppf(np.clip(pa, _P_MIN, _P_MAX)) - norm.ppf(np.clip(pb, _P_MIN, _P_MAX)))
    return np.where(pa > pb, np.maximum(r, 0.0), 0.0)


def _split_alpha(alpha: float, alpha_split: str) -> float:
    choice("evaluation.alpha_split", alpha_split, ALPHA_SPLITS)
    return alpha / 2.0 if alpha_split == "bonferroni" else alpha


def radius_ceiling(n: int, alpha: float, bound: str, alpha_split: str = "bonferroni") -> float:
    """Largest radius, in units of sigma, that any sample can get from ``n`` estimation models.

    * ``clopper_pearson``: all ``n`` models agree, ``p_lower_a = alpha^(1/n)``, so the ceiling is
      ``Phi^-1(alpha^(1/n))`` (``alpha_split`` is irrelevant: one bound). n=50, alpha=0.001 -> 1.131.
    * ``hoeffding``: ``p_A = 1, p_B = 0``, so the ceiling is ``(Phi^-1(1 - h) - Phi^-1(h)) / 2`` with
      ``h = hoeffding_margin(n, alpha')``. ALGORITHMS.md's numbers (n=1000 -> 1.57, n=50 -> 0.63 at
      alpha=0.001) are the ``per_bound`` ones (1.565, 0.634); ``bonferroni`` gives 1.541 and 0.596.

    0 when even unanimous votes cannot certify (e.g. ``h >= 1/2``).
    """
    choice("evaluation.bound", bound, BOUNDS)
    alpha = _alpha(alpha)
    number("n", n, low=1, integer=True)
    if bound == "clopper_pearson":
        _split_alpha(alpha, alpha_split)  # validated for a uniform error, unused
        p = float(clopper_pearson_lower(n, n, alpha))
        return float(radius(1.0, p, 1.0 - p))
    h = hoeffding_margin(n, _split_alpha(alpha, alpha_split))
    return float(radius(1.0, 1.0 - h, h))


def smoothed_prediction(votes, num_classes: int) -> np.ndarray:
    """Plain majority vote of the M models per sample, no abstention; ties go to the smaller class
    index. ``votes`` (M, N) int -> (N,) int64. For clean accuracy and attack success rate."""
    number("num_classes", num_classes, low=1, integer=True)
    votes = np.asarray(votes)
    if votes.ndim != 2:
        fail("votes", f"array of shape {votes.shape}", "must be a 2-D (M models, N samples) array")
    _check_votes_range(votes, num_classes)
    counts = _counts(votes, num_classes)
    return counts.argmax(axis=1).astype(np.int64)  # argmax returns the first (smallest) maximum


def _check_votes_range(votes: np.ndarray, num_classes: int) -> None:
    if votes.size and (votes.min() < 0 or votes.max() >= num_classes):
        fail(
            "votes",
            f"values in [{int(votes.min())}, {int(votes.max())}]",
            f"class indices must lie in [0, {num_classes - 1}]",
        )


def _counts(votes: np.ndarray, num_classes: int) -> np.ndarray:
    """(M, N) votes -> (N, C) int64 counts, without a Python loop over samples."""
    m, n = votes.shape
    flat = (np.arange(n)[None, :] * num_classes + votes.astype(np.int64)).ravel()
    return np.bincount(flat, minlength=n * num_classes).reshape(n, num_classes).astype(np.int64)


def _select(counts: np.ndarray, prob_sums: np.ndarray, aggregation: str) -> np.ndarray:
    """Top class per sample by a lexicographic key: (primary, secondary, -index)."""
    if aggregation == "hard":
        primary, secondary = counts.astype(np.float64), prob_sums
    else:
        primary, secondary = prob_sums, counts.astype(np.float64)
    n, c = primary.shape
    best = np.zeros(n, dtype=np.int64)
    # Scan classes in index order; a later class wins only when strictly better -> smaller index on ties.
    bp, bs = primary[:, 0].copy(), secondary[:, 0].copy()
    for j in range(1, c):  # loop over classes (small), vectorised over samples
        better = (primary[:, j] > bp) | ((primary[:, j] == bp) & (secondary[:, j] > bs))
        best = np.where(better, j, best)
        bp = np.where(better, primary[:, j], bp)
        bs = np.where(better, secondary[:, j], bs)
    return best


def _per_sample(name: str, value, n: int, votes_shape) -> np.ndarray:
    """A scalar or (N,) array of finite, positive per-sample values (sigma, sigma_floor) as float64 (N,)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ConfigError(
            f"mismatched shapes: votes {votes_shape} and {name} {arr.shape}; {name} must be a scalar or (N,)"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        fail(name, "array with non-positive or non-finite values", "every value must be finite and > 0")
    return arr


def certify(
    votes,
    probs,
    sigma,
    *,
    labels,
    num_classes: int,
    bound: str = "clopper_pearson",
    aggregation: str = "hard",
    alpha: float = 0.001,
    selection: str = "split",
    n0: int = 5,
    alpha_split: str = "bonferroni",
    sigma_floor=None,
) -> pd.DataFrame:
    """Certify every test sample from the ensemble's votes.

    Args:
        votes: (M, N) int -- model k's hard vote for sample i.
        probs: (M, N, C) float -- model k's softmax for sample i (averaged over its input draws).
        sigma: (N,) or scalar -- the sigma of each sample's input noise (the radius scale).
        labels: (N,) int -- true labels (for ``correct``).
        num_classes: C.
        bound, aggregation, alpha, selection, n0, alpha_split: see the module docstring. ``n0`` is the
            number of selection models for ``selection="split"`` (``1 <= n0 < M``: at least one to
            select, at least one to estimate); ignored for ``"same"``.
        sigma_floor: None, scalar or (N,) -- smallest sigma involved per sample; gives
            ``conservative_radius`` (``= radius`` when None). Must not exceed ``sigma``.

    Returns:
        One row per sample: sample_id, label, prediction (-1 = abstain), p_lower_a, p_upper_b, sigma,
        radius (0 if abstained), abstained, correct (prediction == label), conservative_radius,
        n_estimation.
    """
    choice("evaluation.bound", bound, BOUNDS)
    choice("evaluation.aggregation", aggregation, AGGREGATIONS)
    alpha = _alpha(alpha)
    choice("evaluation.selection", selection, SELECTIONS)
    choice("evaluation.alpha_split", alpha_split, ALPHA_SPLITS)
    number("num_classes", num_classes, low=2, integer=True)
    if bound == "clopper_pearson" and aggregation != "hard":
        fail(
            "evaluation.aggregation",
            aggregation,
            "bound 'clopper_pearson' needs aggregation 'hard': a binomial (Clopper-Pearson) bound on "
            "averaged soft votes is not a valid confidence bound; use bound 'hoeffding' for soft votes",
        )

    votes = np.asarray(votes)
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if votes.ndim != 2:
        raise ConfigError(f"mismatched shapes: votes {votes.shape} must be (M, N)")
    m, n = votes.shape
    if probs.shape != (m, n, num_classes):
        raise ConfigError(
            f"mismatched shapes: votes {votes.shape} and probs {probs.shape}; "
            f"probs must be (M, N, num_classes) = {(m, n, num_classes)}"
        )
    if labels.shape != (n,):
        raise ConfigError(
            f"mismatched shapes: votes {votes.shape} and labels {labels.shape}; labels must be (N,)"
        )
    sigma_arr = _per_sample("sigma", sigma, n, votes.shape)
    if sigma_floor is None:
        floor_arr = sigma_arr
    else:
        floor_arr = _per_sample("sigma_floor", sigma_floor, n, votes.shape)
        if np.any(floor_arr > sigma_arr * (1 + 1e-12)):
            fail("sigma_floor", "array exceeding sigma", "the floor is the smallest sigma involved: <= sigma")
    _check_votes_range(votes, num_classes)

    if selection == "split":
        number("evaluation.n0", n0, low=0, integer=True)
        if not 1 <= n0 <= m - 1:
            fail(
                "evaluation.n0",
                n0,
                f"selection 'split' needs 1 <= n0 <= M - 1 = {m - 1} with M = {m} models (at least one model "
                "to select the top class and one to estimate it); use selection 'same' to use all models",
            )
        sel_votes, sel_probs = votes[:n0], probs[:n0]
        est_votes, est_probs = votes[n0:], probs[n0:]
    else:
        number("evaluation.n0", n0, low=0, integer=True)  # unused with 'same'
        if m < 1:
            raise ConfigError("mismatched shapes: votes has no models (M = 0)")
        sel_votes, sel_probs = votes, probs
        est_votes, est_probs = votes, probs
    n_est = est_votes.shape[0]

    top = _select(_counts(sel_votes, num_classes), sel_probs.sum(axis=0), aggregation)
    idx = np.arange(n)
    est_counts = _counts(est_votes, num_classes)

    if bound == "clopper_pearson":
        k_a = est_counts[idx, top]
        p_low = clopper_pearson_lower(k_a, n_est, alpha)
        p_up = 1.0 - p_low
    else:
        if aggregation == "hard":
            means = est_counts.astype(np.float64) / n_est
        else:
            means = est_probs.mean(axis=0)
        p_a = means[idx, top]
        others = means.copy()
        others[idx, top] = -np.inf
        p_b = others.max(axis=1)
        h = hoeffding_margin(n_est, _split_alpha(alpha, alpha_split))
        p_low = p_a - h
        p_up = p_b + h

    abstained = ~(p_low > p_up)
    rad = np.where(abstained, 0.0, radius(sigma_arr, p_low, p_up))
    cons = np.where(abstained, 0.0, radius(floor_arr, p_low, p_up))
    pred = np.where(abstained, ABSTAIN, top).astype(np.int64)
    return pd.DataFrame(
        {
            "sample_id": np.arange(n, dtype=np.int64),
            "label": labels.astype(np.int64),
            "prediction": pred,
            "p_lower_a": p_low.astype(np.float64),
            "p_upper_b": p_up.astype(np.float64),
            "sigma": sigma_arr,
            "radius": rad,
            "abstained": abstained.astype(bool),
            "correct": (pred == labels.astype(np.int64)),
            "conservative_radius": cons,
            "n_estimation": np.full(n, n_est, dtype=np.int64),
        },
        columns=list(CERT_COLUMNS),
    )
