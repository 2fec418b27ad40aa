"""Certification of the smoothed classifier from the ensemble's votes (docs/methods.md:
#what-a-certificate-claims, #certification).

Threat model (the one this library certifies; README "What is certified")
-------------------------------------------------------------------------
An attacker perturbs the *features* of training points and of the test input, with **labels unchanged**
and **no point inserted or removed**: ``Delta = (delta_1, ..., delta_n, delta_x)``. Dirty-label poisoning
(relabelled points) and appended copies (the certifier attacks) lie outside this model; the library
reports their feature norm and label-change / insertion counts and never calls them "certified against".

Certificate (Neyman-Pearson for Gaussian smoothing with a FIXED covariance
``Sigma = diag(sigma_1^2 I, ..., sigma_n^2 I, sigma_x^2 I)``; Cohen et al. 2019, joint form of RAB /
Wang et al. 2020). If with probability ``>= 1 - alpha``

    p_A >= p_lower_a   and   max_{c != A} p_c <= p_upper_b,   p_lower_a > p_upper_b,

then the smoothed prediction ``A`` is constant for every Delta with

    ||Delta||_Sigma = sqrt(sum_i ||delta_i||^2 / sigma_i^2 + ||delta_x||^2 / sigma_x^2) < R1,
    R1 = 1/2 (Phi^-1(p_lower_a) - Phi^-1(p_upper_b))      (column ``r1``, in sigma units).

The largest l2 ball inside that ellipsoid has radius ``sigma_min * R1`` with ``sigma_min`` the smallest
sigma over the test input and every training point the attacker may touch. Hence the columns:

* ``radius = sigma_min * r1`` -- the HEADLINE, sound under the threat model above. For uniform sigma
  ``sigma_min = sigma`` and ``radius = sigma * R1`` (RAB). For Cert-SSB it is sound **only if sigma is
  fixed before poisoning** -- an assumption the method does not enforce: Cert-SSB computes sigma from
  the (poisoned) training data and from x itself, so Sigma moves with the attack and Neyman-Pearson no
  longer applies (Sukenik et al., ICML 2022).
* ``radius_published = sigma_x * r1`` -- the radius Cert-SSB publishes (paper and released code). It is
  NOT a poisoning certificate when some training sigma_i < sigma_x: a base learner that reads one
  training point with small sigma_i flips inside it (tests/core/test_soundness.py). Equal to ``radius``
  for uniform sigma.

Monte-Carlo samples. Model ``k`` (k = 1..M) is trained on ``D + E_k`` and predicts ``x + eps_k``; the pairs
``(E_k, eps_k)`` are i.i.d. across ``k``, so the M per-model outcomes for one test sample are i.i.d. draws.
With K > 1 input draws per model the K outcomes share ``E_k``: they are not K independent votes, and the
mode of the K argmaxes is not a single-draw vote (certifying it with the single-draw radius is unsound).
The per-model outcome is therefore the *fraction* ``votes[k, i, c]`` in [0, 1] of the K draws whose
argmax is ``c`` (one-hot when K = 1); its mean is an unbiased estimate of the single-draw probability
``p_c``. The number of samples behind every bound is the number of estimation *models*, never ``M * K``.

Bounds (``bound``):

* ``clopper_pearson`` (hard votes, **K = 1 only**): ``p_lower_a`` is the exact one-sided Clopper-Pearson
  lower bound at level ``alpha`` on the top class's vote count, ``p_upper_b = 1 - p_lower_a``, so
  ``R1 = Phi^-1(p_lower_a)``; abstain when ``p_lower_a <= 1/2``. Needs one vote per model; fractional
  votes (K > 1) are refused with a ConfigError naming ``num_draws``.
* ``hoeffding`` (RAB / Cert-SSB): per-model values in [0, 1] -- the vote fractions (hard aggregation) or
  the softmax averaged over the K draws (soft) -- with ``p_lower_a = mean_A - h``,
  ``p_upper_b = max_{c != A} mean_c + h``, ``h = sqrt(ln(1/alpha') / (2 n))`` and ``n`` the **actual**
  number of estimation models. ``alpha_split="bonferroni"`` uses ``alpha' = alpha / 2`` for each of the
  two bounds (whole certificate ``>= 1 - alpha``); ``"per_bound"`` uses ``alpha' = alpha`` for each, as
  the released code does (``>= 1 - 2 alpha``). Caveat: ``max_c mean_c + h`` bounds the empirical
  runner-up; for more than two classes a bound valid for every ``c != A`` at once would need a further
  union bound over the classes (neither RAB nor Cert-SSB applies it). Peer bug: Cert-SSB's released
  evaluation hard-codes ``N = 1000`` in the Hoeffding margin, so its radii are overstated whenever the
  actual number of models differs from 1000 (fewer models -> too small a margin).

Top-class selection (``selection``):

* ``split`` (valid; Cohen et al.'s ``n0``): ``A`` is chosen from the first ``n0`` models only and the
  remaining ``M - n0`` models estimate, so the bound is not conditioned on a data-dependent choice.
* ``same``: ``A`` is chosen from all M models and the same M models estimate. This is what the RAB and
  Cert-SSB released code does; strictly, selecting the class on the estimation sample invalidates the
  level-``alpha`` guarantee (a small optimistic bias when the top two classes are close).

Selection score: hard aggregation ranks classes by summed vote fractions (ties -> larger summed
probability -> smaller index); soft aggregation ranks by summed probability (ties -> larger summed
fraction -> smaller index), so that ``A`` is the argmax of the quantity that is then bounded.

Length: one theorem and its estimators: the bounds, the top-class selection and the certificate table
belong together (splitting them would scatter the assumptions each relies on).
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
    "r1",
    "sigma",
    "sigma_min",
    "radius",
    "radius_published",
    "abstained",
    "correct",
    "n_estimation",
)
"""Columns of the certificate table, in order (see the module docstring for ``radius`` vs
``radius_published``)."""


def _alpha(alpha: float) -> float:
    return float(number("alpha", alpha, low=0, high=1, low_open=True, high_open=True))


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
        fail(
            "k",
            f"counts in [{k.min()}, {k.max()}] with n in [{n.min()}, {n.max()}]",
            "need 0 <= k <= n, n >= 1",
        )
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
    choice("alpha_split", alpha_split, ALPHA_SPLITS)
    return alpha / 2.0 if alpha_split == "bonferroni" else alpha


def radius_ceiling(n: int, alpha: float, bound: str, alpha_split: str = "bonferroni") -> float:
    """Largest radius, in units of sigma, that any sample can get from ``n`` estimation models.

    * ``clopper_pearson``: all ``n`` models agree, ``p_lower_a = alpha^(1/n)``, so the ceiling is
      ``Phi^-1(alpha^(1/n))`` (``alpha_split`` is irrelevant: one bound). n=50, alpha=0.001 -> 1.131.
    * ``hoeffding``: ``p_A = 1, p_B = 0``, so the ceiling is ``(Phi^-1(1 - h) - Phi^-1(h)) / 2`` with
      ``h = hoeffding_margin(n, alpha')``. docs/methods.md#ceilings' numbers (n=1000 -> 1.57, n=50 -> 0.63 at
      alpha=0.001) are the ``per_bound`` ones (1.565, 0.634); ``bonferroni`` gives 1.541 and 0.596.

    0 when even unanimous votes cannot certify (e.g. ``h >= 1/2``).
    """
    choice("bound", bound, BOUNDS)
    alpha = _alpha(alpha)
    number("n", n, low=1, integer=True)
    if bound == "clopper_pearson":
        _split_alpha(alpha, alpha_split)  # validated for a uniform error, unused
        p = float(clopper_pearson_lower(n, n, alpha))
        return float(radius(1.0, p, 1.0 - p))
    h = hoeffding_margin(n, _split_alpha(alpha, alpha_split))
    return float(radius(1.0, 1.0 - h, h))


def min_certifying_count(n: int, alpha: float) -> int | None:
    """Smallest top-class count ``k`` of ``n`` estimation votes that certifies under Clopper-Pearson:
    ``clopper_pearson_lower(k, n, alpha) > 1/2`` (a positive radius). None when no ``k <= n`` does.
    n = 45, alpha = 0.001 -> 34 (p_hat = 0.756); n = 1,000 -> 550."""
    number("n", n, low=1, integer=True)
    k = np.arange(n + 1)
    ok = np.flatnonzero(clopper_pearson_lower(k, n, alpha) > 0.5)
    return int(ok[0]) if ok.size else None


def collapse_share(n_estimation: int, alpha: float) -> float:
    """The share of second-class labels for the ``radius_collapse`` attack against a Clopper-Pearson
    certifier with ``n_estimation`` estimation votes at level ``alpha``: the largest share ``s`` whose
    expected top-class count ``k = (1 - s) n`` still certifies (a small positive radius, not an abstention)
    one binomial standard deviation below its expectation.

    With ``k_min = min_certifying_count(n, alpha)``, ``k*`` is the smallest ``k`` with
    ``k - sqrt(k (n - k) / n) >= k_min`` (capped at ``n - 1`` so that the share is positive whenever a
    non-unanimous count certifies) and the share is ``(n - k*) / n``. If the model's vote on a triggered
    input follows the label mix, ``p_hat_A ~ 1 - s``: the radius ``sigma Phi^-1(p_lower_A)`` collapses to a
    small positive value. n = 45, alpha = 0.001 -> 8/45 = 0.178 (p_hat = 37/45, R1 = 0.24 at the expected
    count; a share of 1/3, p_hat = 2/3, abstains: p_lower_A = 0.43); n = 1,000 -> 0.434.
    0.0 when only unanimous votes certify (e.g. n = 10): no share places a radius collapse there.
    """
    n = int(number("n_estimation", n_estimation, low=1, integer=True))
    k_min = min_certifying_count(n, alpha)
    if k_min is None or k_min >= n:
        return 0.0
    k = np.arange(k_min, n + 1, dtype=np.float64)
    ok = k - np.sqrt(k * (n - k) / n) >= k_min
    k_star = min(int(k[np.flatnonzero(ok)[0]]), n - 1)
    return (n - k_star) / n


def vote_fractions(votes, num_classes: int) -> np.ndarray:
    """Per-model vote fractions (M, N, C) float64 from either form of the votes artifact.

    * (M, N) integer class indices (one vote per model; K = 1 or an artifact written before K > 1 was
      handled) -> one-hot fractions;
    * (M, N, C) fractions in [0, 1] summing to 1 over C (``votes.predict_votes``) -> returned as float64.
    """
    number("num_classes", num_classes, low=1, integer=True)
    v = np.asarray(votes)
    if v.ndim == 2:
        if v.dtype.kind not in "iu":
            fail("votes", f"(M, N) array of dtype {v.dtype}", "2-D votes must be integer class indices")
        _check_votes_range(v, num_classes)
        return np.eye(num_classes, dtype=np.float64)[v.astype(np.int64)]
    if v.ndim != 3 or v.shape[2] != num_classes:
        fail(
            "votes",
            f"array of shape {v.shape}",
            f"must be (M models, N samples) class indices or (M, N, {num_classes}) vote fractions",
        )
    f = v.astype(np.float64)
    if f.size and (
        not np.all(np.isfinite(f))
        or f.min() < 0
        or f.max() > 1
        or not np.allclose(f.sum(axis=2), 1.0, atol=1e-5)
    ):
        fail(
            "votes",
            "fractions outside [0, 1] or not summing to 1 over the classes",
            "per-model vote fractions must lie in [0, 1] and sum to 1 over the classes",
        )
    return f


def one_vote_per_model(fractions: np.ndarray) -> bool:
    """True when every per-model fraction is one-hot (exactly 0 or 1): K = 1 input draw per model."""
    f = np.asarray(fractions)
    return bool(np.all((f == 0.0) | (f == 1.0)))


def smoothed_prediction(votes, num_classes: int) -> np.ndarray:
    """Plain majority of the M models per sample (the class with the largest summed vote fraction), no
    abstention; ties go to the smaller class index. ``votes``: (M, N) int or (M, N, C) fractions -> (N,)
    int64. For clean accuracy and attack success rate."""
    f = vote_fractions(votes, num_classes)
    return f.sum(axis=0).argmax(axis=1).astype(np.int64)  # argmax returns the first (smallest) maximum


def _check_votes_range(votes: np.ndarray, num_classes: int) -> None:
    if votes.size and (votes.min() < 0 or votes.max() >= num_classes):
        fail(
            "votes",
            f"values in [{int(votes.min())}, {int(votes.max())}]",
            f"class indices must lie in [0, {num_classes - 1}]",
        )


def _select(primary_hard: np.ndarray, prob_sums: np.ndarray, aggregation: str) -> np.ndarray:
    """Top class per sample by a lexicographic key: (primary, secondary, -index)."""
    if aggregation == "hard":
        primary, secondary = primary_hard, prob_sums
    else:
        primary, secondary = prob_sums, primary_hard
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
    """A scalar or (N,) array of finite, positive per-sample values (sigma, sigma_min) as float64 (N,)."""
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


def check_bound(bound: str, aggregation: str = "hard", num_draws: int = 1) -> None:
    """The bound's own requirements (the one place they are stated; ``certssb.config`` maps the names).

    ``clopper_pearson`` bounds a binomial count, so it needs hard votes (a binomial bound on averaged soft
    votes is no confidence bound) and ONE vote per model: the ``num_draws`` > 1 input draws of one model
    share its training noise, so neither their mode nor their count is a binomial sample. ``hoeffding``
    bounds the per-model values in [0, 1] and takes either.
    """
    choice("bound", bound, BOUNDS)
    choice("aggregation", aggregation, AGGREGATIONS)
    if bound != "clopper_pearson":
        return
    if aggregation != "hard":
        fail(
            "aggregation",
            aggregation,
            "the Clopper-Pearson bound needs hard votes (a binomial bound on averaged soft votes is not a "
            "valid confidence bound); use aggregation 'hard' or bound 'hoeffding'",
        )
    if num_draws > 1:
        fail(
            "num_draws",
            num_draws,
            "bound 'clopper_pearson' needs one vote per model: the K > 1 input draws of one model share its "
            "training noise, so their votes are fractions, not a binomial count; use num_draws = 1 or "
            "bound 'hoeffding' (it bounds the per-model fractions)",
        )


def check_selection(selection: str, n0: int, num_models: int | None) -> None:
    """Top-class selection ``split`` needs ``1 <= n0 < M``: at least one model to select the top class and
    one to estimate it (n0 < M); ``same`` ignores ``n0``. ``num_models=None`` (M not known yet): the rules
    that need M are left out."""
    choice("selection", selection, SELECTIONS)
    number("n0", n0, low=0, integer=True)
    if selection == "split" and n0 < 1:
        fail("n0", n0, "selection 'split' needs n0 >= 1 selection models")
    if num_models is None:
        return
    if selection == "split" and n0 >= num_models:
        fail(
            "n0",
            n0,
            f"must leave at least one of the M = {num_models} models for estimation (n0 < M); "
            "use selection 'same' to use all models",
        )
    if num_models < 1:
        raise ConfigError("mismatched shapes: votes has no models (M = 0)")


def sound_sigma_min(sigma, sigma_train) -> np.ndarray:
    """The sound per-sample floor ``sigma_min(x) = min(sigma_x, min_i sigma_i)`` over ALL training points.

    An attacker may perturb any training point, and a base learner may read the one with the smallest
    sigma_i, so the certified l2 radius of ``x`` is ``sigma_min(x) * R1`` (docs/methods.md#sound-radius);
    the mean (or sigma_x alone) would overstate it whenever some sigma_i < sigma_x.
    """
    train = np.asarray(sigma_train, dtype=np.float64).reshape(-1)
    if train.size == 0 or not np.all(np.isfinite(train)) or np.any(train <= 0):
        fail("sigma_train", "empty or non-positive array", "a non-empty array of finite sigma_i > 0")
    return np.minimum(np.asarray(sigma, dtype=np.float64), float(train.min()))


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
    sigma_min=None,
    sigma_train=None,
) -> pd.DataFrame:
    """Certify every test sample from the ensemble's votes.

    Args:
        votes: (M, N, C) float -- model k's fraction of its K input draws whose argmax is class c
            (one-hot when K = 1), as ``votes.predict_votes`` returns; (M, N) int class indices (one vote
            per model) are accepted too.
        probs: (M, N, C) float -- model k's softmax for sample i (averaged over its K input draws).
        sigma: (N,) or scalar -- sigma_x, the sigma of each sample's own input noise.
        labels: (N,) int -- true labels (for ``correct``).
        num_classes: C.
        bound, aggregation, alpha, selection, n0, alpha_split: see the module docstring. ``n0`` is the
            number of selection models for ``selection="split"`` (``1 <= n0 < M``: at least one to
            select, at least one to estimate); ignored for ``"same"``.
        sigma_min: None, scalar or (N,) -- the smallest sigma involved per sample,
            ``min(sigma_x, min_i sigma_i)`` over the test input and every training point; None means
            ``sigma`` (uniform sigma). Must not exceed ``sigma``.
        sigma_train: None or (n_train,) -- the training points' sigma_i; when given, ``sigma_min`` is
            :func:`sound_sigma_min` of ``sigma`` and these (give one of ``sigma_min`` and ``sigma_train``).

    Returns:
        One row per sample with the columns ``CERT_COLUMNS``: sample_id, label, prediction (-1 =
        abstain), p_lower_a, p_upper_b, r1 (R1 in sigma units, 0 if abstained), sigma, sigma_min,
        radius (= sigma_min * r1, the sound headline), radius_published (= sigma * r1, Cert-SSB as
        published), abstained, correct (prediction == label), n_estimation.

    Raises:
        ConfigError for a bad parameter or shape, and for ``bound="clopper_pearson"`` with fractional
        votes (K > 1 input draws: ``num_draws`` must be 1, or use bound ``hoeffding``).
    """
    check_bound(bound, aggregation)
    alpha = _alpha(alpha)
    choice("alpha_split", alpha_split, ALPHA_SPLITS)
    number("num_classes", num_classes, low=2, integer=True)

    raw = np.asarray(votes)
    if raw.ndim not in (2, 3):
        raise ConfigError(f"mismatched shapes: votes {raw.shape} must be (M, N) or (M, N, C)")
    fractions = vote_fractions(raw, num_classes)
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    m, n = fractions.shape[:2]
    if probs.shape != (m, n, num_classes):
        raise ConfigError(
            f"mismatched shapes: votes {raw.shape} and probs {probs.shape}; "
            f"probs must be (M, N, num_classes) = {(m, n, num_classes)}"
        )
    if labels.shape != (n,):
        raise ConfigError(
            f"mismatched shapes: votes {raw.shape} and labels {labels.shape}; labels must be (N,)"
        )
    if bound == "clopper_pearson" and not one_vote_per_model(fractions):
        check_bound(bound, aggregation, num_draws=2)  # fractional votes: K > 1 draws per model
    sigma_arr = _per_sample("sigma", sigma, n, raw.shape)
    if sigma_train is not None:
        if sigma_min is not None:
            raise ConfigError("give sigma_min or sigma_train, not both")
        sigma_min = sound_sigma_min(sigma_arr, sigma_train)
    if sigma_min is None:
        min_arr = sigma_arr
    else:
        min_arr = _per_sample("sigma_min", sigma_min, n, raw.shape)
        if np.any(min_arr > sigma_arr * (1 + 1e-12)):
            fail(
                "sigma_min",
                "array exceeding sigma",
                "sigma_min is the smallest sigma involved (test input included): <= sigma",
            )

    check_selection(selection, n0, m)
    if selection == "split":
        sel_f, sel_probs = fractions[:n0], probs[:n0]
        est_f, est_probs = fractions[n0:], probs[n0:]
    else:
        sel_f, sel_probs = fractions, probs
        est_f, est_probs = fractions, probs
    n_est = est_f.shape[0]

    top = _select(sel_f.sum(axis=0), sel_probs.sum(axis=0), aggregation)
    idx = np.arange(n)

    if bound == "clopper_pearson":
        k_a = np.rint(est_f[:, idx, top].sum(axis=0)).astype(np.int64)  # one-hot: exact integer counts
        p_low = clopper_pearson_lower(k_a, n_est, alpha)
        p_up = 1.0 - p_low
    else:
        means = est_f.mean(axis=0) if aggregation == "hard" else est_probs.mean(axis=0)
        p_a = means[idx, top]
        others = means.copy()
        others[idx, top] = -np.inf
        p_b = others.max(axis=1)
        h = hoeffding_margin(n_est, _split_alpha(alpha, alpha_split))
        p_low = p_a - h
        p_up = p_b + h

    return _table(labels, top, p_low, p_up, sigma_arr, min_arr, n_est)


def _table(labels, top, p_low, p_up, sigma_arr, min_arr, n_est: int) -> pd.DataFrame:
    """The certificate table (``CERT_COLUMNS``) from the top class and the two bounds per sample."""
    n = len(top)
    abstained = ~(p_low > p_up)
    r1 = np.where(abstained, 0.0, radius(1.0, p_low, p_up))
    pred = np.where(abstained, ABSTAIN, top).astype(np.int64)
    return pd.DataFrame(
        {
            "sample_id": np.arange(n, dtype=np.int64),
            "label": labels.astype(np.int64),
            "prediction": pred,
            "p_lower_a": p_low.astype(np.float64),
            "p_upper_b": p_up.astype(np.float64),
            "r1": r1,
            "sigma": sigma_arr,
            "sigma_min": min_arr,
            "radius": min_arr * r1,
            "radius_published": sigma_arr * r1,
            "abstained": abstained.astype(bool),
            "correct": (pred == labels.astype(np.int64)),
            "n_estimation": np.full(n, n_est, dtype=np.int64),
        },
        columns=list(CERT_COLUMNS),
    )


def certify_counts(
    selection_counts, estimation_counts, sigma, *, labels, alpha: float = 0.001
) -> pd.DataFrame:
    """Cohen et al.'s CERTIFY from class counts over i.i.d. noise draws of ONE fixed base classifier.

    ``selection_counts`` (N, C): how often each class won among the n0 selection draws; the top class ``A``
    is their argmax (ties -> smaller index). ``estimation_counts`` (N, C) over the separate N estimation
    draws (every row sums to N): ``p_lower_a`` = the one-sided Clopper-Pearson bound at level ``alpha`` on
    ``k_A`` of N, ``p_upper_b = 1 - p_lower_a``, ``R1 = Phi^-1(p_lower_a)``, abstain when
    ``p_lower_a <= 1/2``; radius = ``sigma * R1`` (``sigma_min = sigma``, ``radius_published = radius``).
    Valid because the draws are i.i.d. given the fixed model -- unlike the K draws of one model in the
    poisoning certifiers (:func:`certify`), which share that model's training noise. Same table as
    :func:`certify`.
    """
    alpha = _alpha(alpha)
    sel = np.asarray(selection_counts)
    est = np.asarray(estimation_counts)
    labels = np.asarray(labels)
    if sel.ndim != 2 or est.shape != sel.shape or labels.shape != (sel.shape[0],):
        raise ConfigError(
            f"mismatched shapes: selection counts {sel.shape}, estimation counts {est.shape}, "
            f"labels {labels.shape}; expected (N, C), (N, C), (N,)"
        )
    totals = est.sum(axis=1)
    if est.size and (est.min() < 0 or not np.all(totals == totals[0]) or totals[0] < 1):
        fail(
            "estimation_counts",
            f"row sums in [{totals.min()}, {totals.max()}]",
            "every sample needs the same number N >= 1 of estimation draws, counts >= 0",
        )
    n, n_est = sel.shape[0], int(totals[0]) if est.size else 1
    top = sel.argmax(axis=1).astype(np.int64)  # argmax: first (smallest) maximum
    k_a = est[np.arange(n), top].astype(np.int64)
    p_low = clopper_pearson_lower(k_a, n_est, alpha)
    sigma_arr = _per_sample("sigma", sigma, n, est.shape)
    return _table(labels, top, p_low, 1.0 - p_low, sigma_arr, sigma_arr, n_est)
