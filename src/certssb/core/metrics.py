"""Metrics on certificates and predictions.

Certified accuracy at radius r (Cohen et al.): the fraction of ALL certified rows that are predicted
correctly, not abstained, and have certified radius ``>= r``. It reads the sound ``radius`` column by
default (``radius_column="radius_published"`` gives Cert-SSB as published, not a poisoning certificate).

Certified against a realised attack (docs/methods.md#what-a-certificate-claims). Only a **label-preserving
feature** attack (no point relabelled, none inserted or removed) lies inside the certified threat model. For
such an attack with training perturbations ``delta_i`` and test perturbation ``delta_x`` the certificate of
sample j covers it iff ``r1_j > ||Delta||_Sigma,j`` with

    ||Delta||_Sigma,j = sqrt(sum_i ||delta_i||^2 / sigma_i^2 + ||delta_xj||^2 / sigma_xj^2)

(:func:`weighted_attack_norm`, :func:`fraction_certified_against`). This is sound for a fixed Sigma and
tighter than comparing ``radius = sigma_min * r1`` with the plain l2 norm when the attack touches points
with a large sigma. Dirty-label and inserting attacks lie outside the model: report their feature norm
and label-change / insertion counts, never a "certified against" fraction.

On a radius grid, :func:`smallest_radius_covering` (the smallest grid r with ``r > ||Delta||``) gives a
conservative reading of the certified-accuracy table for an l2 norm.

Metric key names carry no dots: :func:`radius_key` (0.5 -> ``"r050"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from certssb.core.validation import ConfigError, fail, number, sorted_radii

_CERT_NEEDS = ("correct", "abstained")


def radius_key(r: float) -> str:
    """Key suffix of a grid radius without dots: 0.5 -> ``"r050"``, 1.0 -> ``"r100"``, 0.25 -> ``"r025"``."""
    number("radius", r, low=0)
    return f"r{round(r * 100):03d}"


def _grid(radii) -> list[float]:
    """Validate a radius grid as ``evaluation.radii`` (numpy arrays accepted)."""
    if isinstance(radii, np.ndarray):
        radii = radii.tolist()
    return sorted_radii("radii", radii)


def _check_certs(certs: pd.DataFrame, radius_column: str = "radius") -> None:
    if not isinstance(certs, pd.DataFrame):
        fail("certs", type(certs).__name__, "must be the pandas DataFrame returned by certify()")
    missing = [c for c in (*_CERT_NEEDS, radius_column) if c not in certs.columns]
    if missing:
        raise ConfigError(f"certificate table lacks columns {missing}; has {list(certs.columns)}")
    if len(certs) == 0:
        raise ConfigError("certificate table has no rows")


def _masks(certs: pd.DataFrame, radius_column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = ~certs["abstained"].to_numpy(dtype=bool)
    correct = certs["correct"].to_numpy(dtype=bool) & ok
    rad = np.where(ok, certs[radius_column].to_numpy(dtype=np.float64), 0.0)
    return ok, correct, rad


def certified_accuracy(
    certs: pd.DataFrame, radii: Sequence[float], *, radius_column: str = "radius"
) -> pd.DataFrame:
    """Per grid radius r (validated as ``evaluation.radii``: non-empty, non-negative, strictly
    increasing):

    * ``certified_accuracy`` = #(correct, not abstained, radius >= r) / #rows (r = 0: correct and not
      abstained);
    * ``certified_ratio`` = #(not abstained, radius >= r) / #rows;
    * ``conditional_accuracy`` = certified_accuracy / certified_ratio (NaN when the ratio is 0).

    ``radius_column="radius_published"`` gives Cert-SSB's published radius (not a poisoning certificate).
    """
    grid = _grid(radii)
    _check_certs(certs, radius_column)
    ok, correct, rad = _masks(certs, radius_column)
    n = len(certs)
    r = np.asarray(grid)[:, None]
    covered = rad[None, :] >= r  # (R, N); at r = 0 every row qualifies
    acc = (covered & correct[None, :]).sum(axis=1) / n
    ratio = (covered & ok[None, :]).sum(axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = np.where(ratio > 0, acc / np.where(ratio > 0, ratio, 1.0), np.nan)
    return pd.DataFrame(
        {
            "radius": np.asarray(grid, dtype=np.float64),
            "certified_accuracy": acc.astype(np.float64),
            "certified_ratio": ratio.astype(np.float64),
            "conditional_accuracy": cond.astype(np.float64),
        }
    )


def _pair(a, b, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a).reshape(-1)
    b = np.asarray(b)
    b = np.full(a.shape, b.item()) if b.ndim == 0 else b.reshape(-1)
    if a.shape != b.shape:
        raise ConfigError(f"mismatched shapes: {name_a} {a.shape} and {name_b} {b.shape}")
    if a.size == 0:
        raise ConfigError(f"{name_a} is empty: no samples to score")
    return a, b


def clean_accuracy(pred, labels) -> float:
    """Fraction of clean inputs with ``pred == labels`` (an abstention, -1, counts as wrong)."""
    p, y = _pair(pred, labels, "pred", "labels")
    return float(np.mean(p == y))


def attack_success_rate(pred, target_labels) -> float:
    """Fraction of triggered inputs predicted as the target. ``pred``: predictions on triggered inputs;
    ``target_labels``: the target class (scalar or per sample). The caller passes non-target inputs only
    (the triggered test set drops target-class images)."""
    p, t = _pair(pred, target_labels, "pred", "target_labels")
    return float(np.mean(p == t))


def abstain_rate(certs: pd.DataFrame) -> float:
    """Fraction of rows that abstained."""
    _check_certs(certs)
    return float(np.mean(certs["abstained"].to_numpy(dtype=bool)))


def mean_radius(certs: pd.DataFrame, *, radius_column: str = "radius") -> float:
    """Mean certified radius over ALL rows, abstained rows counting 0."""
    _check_certs(certs, radius_column)
    _, _, rad = _masks(certs, radius_column)
    return float(np.mean(rad))


def weighted_attack_norm(train_norms, train_sigma, test_norms, test_sigma) -> np.ndarray:
    """Per test sample j, the Sigma-weighted norm of a realised label-preserving feature attack:

        ||Delta||_Sigma,j = sqrt(sum_i train_norms_i^2 / train_sigma_i^2 + test_norms_j^2 / test_sigma_j^2).

    Args:
        train_norms: (n,) realised l2 norms ``||delta_i||`` of the touched training points (may be empty).
        train_sigma: scalar or (n,) the training sigma of each touched point.
        test_norms: (N,) realised l2 norms ``||delta_xj||`` of the test-time trigger (0 for no trigger).
        test_sigma: scalar or (N,) sigma_xj of each test sample (its own input-noise sigma).

    Returns (N,) float64, in sigma units: compare with the certificate's ``r1``.
    """
    tn = np.asarray(train_norms, dtype=np.float64).reshape(-1)
    ts = np.asarray(train_sigma, dtype=np.float64)
    ts = np.full(tn.shape, float(ts)) if ts.ndim == 0 else ts.reshape(-1)
    xn = np.asarray(test_norms, dtype=np.float64).reshape(-1)
    xs = np.asarray(test_sigma, dtype=np.float64)
    xs = np.full(xn.shape, float(xs)) if xs.ndim == 0 else xs.reshape(-1)
    if ts.shape != tn.shape:
        raise ConfigError(f"mismatched shapes: train_norms {tn.shape} and train_sigma {ts.shape}")
    if xs.shape != xn.shape:
        raise ConfigError(f"mismatched shapes: test_norms {xn.shape} and test_sigma {xs.shape}")
    for name, v in (("train_norms", tn), ("test_norms", xn)):
        if v.size and (not np.all(np.isfinite(v)) or v.min() < 0):
            fail(name, "array with negative or non-finite values", "realised norms are finite and >= 0")
    for name, v in (("train_sigma", ts), ("test_sigma", xs)):
        if v.size and (not np.all(np.isfinite(v)) or v.min() <= 0):
            fail(name, "array with non-positive or non-finite values", "sigma must be finite and > 0")
    train_part = float(np.sum((tn / ts) ** 2))
    return np.sqrt(train_part + (xn / xs) ** 2)


def fraction_certified_against(certs: pd.DataFrame, weighted_norm) -> float:
    """Fraction of the rows of ``certs`` that are correct, not abstained and have ``r1 > weighted_norm``
    (scalar or one value per row, from :func:`weighted_attack_norm`): the samples whose certificate
    covers the realised label-preserving feature attack, ``||Delta||_Sigma < R1``. Pass the certificate
    rows of the clean test samples that have a triggered version, in the order of ``weighted_norm``.
    Only meaningful for attacks inside the threat model (no relabelled or inserted point)."""
    _check_certs(certs, "r1")
    w = np.asarray(weighted_norm, dtype=np.float64)
    w = np.full(len(certs), float(w)) if w.ndim == 0 else w.reshape(-1)
    if w.shape != (len(certs),):
        raise ConfigError(f"mismatched shapes: {len(certs)} certificate rows and weighted_norm {w.shape}")
    if not np.all(np.isfinite(w)) or w.min() < 0:
        fail("weighted_norm", "array with negative or non-finite values", "norms are finite and >= 0")
    _, correct, r1 = _masks(certs, "r1")
    return float(np.mean(correct & (r1 > w)))


def smallest_radius_covering(norm: float, radii: Sequence[float]) -> float | None:
    """Smallest grid radius r with ``r > norm`` (strictly), or None when no grid radius exceeds it.
    Certified accuracy at that r counts only samples whose certificate covers an l2 attack of ``norm``."""
    number("norm", norm, low=0)
    grid = _grid(radii)
    above = [r for r in grid if r > norm]
    return above[0] if above else None


def certificate_reach(radius: float, point_norm: float, test_norm: float) -> dict[str, float | int | bool]:
    r"""How much of an attack made of equal poisoned points a certified radius ``R`` covers (issue 13).

    An attack that perturbs ``k`` training points by ``point_norm`` (δ) each and the test input by
    ``test_norm`` (δ_x) has the joint l2 norm :math:`\sqrt{k δ^2 + δ_x^2}`; a certificate of radius R covers
    it iff :math:`\sqrt{k δ^2 + δ_x^2} < R`, i.e. :math:`k < (R^2 - δ_x^2) / δ^2`. Returns

    - ``points_covered``: the largest such integer k (inf when δ = 0; 0 when only the clean training set is
      covered, and 0 with ``covers_test_trigger = False`` when even the test trigger alone has ``δ_x >= R``);
    - ``covers_test_trigger``: ``δ_x < R``;
    - ``points_ratio``: :math:`(R/δ)^2`, the number of poisoned points R covers with no test trigger.
    """
    for name, v in (("radius", radius), ("point_norm", point_norm), ("test_norm", test_norm)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} = {v!r}: must be a finite number >= 0")
    covers_test = test_norm < radius
    if point_norm == 0:
        return {
            "points_covered": float("inf") if covers_test else 0,
            "covers_test_trigger": bool(covers_test),
            "points_ratio": float("inf"),
        }
    t = (radius**2 - test_norm**2) / point_norm**2
    k = max(int(np.ceil(t)) - 1, 0) if covers_test else 0
    if covers_test:  # settle the rounding of t on the inequality itself
        while k > 0 and np.sqrt(k * point_norm**2 + test_norm**2) >= radius:
            k -= 1
        while np.sqrt((k + 1) * point_norm**2 + test_norm**2) < radius:
            k += 1
    return {
        "points_covered": k,
        "covers_test_trigger": bool(covers_test),
        "points_ratio": float((radius / point_norm) ** 2),
    }


def degenerate_members(member_accuracy, class_prior, margin: float = 0.05) -> np.ndarray:
    """Flag ensemble members that collapsed to a (near-)constant prediction: accuracy
    ``<= max(class_prior) + margin`` (a constant predictor of the majority class scores max(prior)).
    Returns a bool array shaped like ``member_accuracy``."""
    number("margin", margin, low=0, high=1)
    acc = np.asarray(member_accuracy, dtype=np.float64)
    prior = np.asarray(class_prior, dtype=np.float64).reshape(-1)
    if prior.size == 0 or np.any(prior < 0) or not np.isclose(prior.sum(), 1.0, atol=1e-6):
        fail("class_prior", prior.tolist(), "must be non-negative class frequencies summing to 1")
    if np.any(~np.isfinite(acc)) or np.any(acc < 0) or np.any(acc > 1):
        fail("member_accuracy", acc.tolist(), "accuracies must lie in [0, 1]")
    return acc <= prior.max() + margin
