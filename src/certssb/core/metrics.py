"""Metrics on certificates and predictions.

Certified accuracy at radius r (Cohen et al.): the fraction of ALL certified rows that are predicted
correctly, not abstained, and have certified radius ``>= r``. A certificate of radius R covers every
joint perturbation with ``||Delta|| < R``, so the row at grid radius r counts samples robust to every
perturbation of norm ``< r``.

Reading a realised attack of norm ``||Delta||`` against the table: a certificate covers the attack iff
``R > ||Delta||``. :func:`fraction_certified_against` counts exactly that. On the grid, the row at
:func:`smallest_radius_covering` (the smallest grid r with ``r > ||Delta||``) is a conservative lower
bound of it (every counted sample has ``R >= r > ||Delta||``); the row at :func:`largest_radius_below`
(the largest grid r with ``r <= ||Delta||``) is only an upper bound (it may count samples with
``r <= R <= ||Delta||``, which the certificate does not cover).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from certssb.core.validation import ConfigError, fail, number, sorted_radii

_CERT_NEEDS = ("correct", "abstained")


def _grid(radii) -> list[float]:
    """Validate a radius grid as ``evaluation.radii`` (numpy arrays accepted)."""
    if isinstance(radii, np.ndarray):
        radii = radii.tolist()
    return sorted_radii("evaluation.radii", radii)


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

    ``radius_column="conservative_radius"`` gives the table for the conservative certificates.
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


def attack_success_rate(pred, target_labels, *, labels=None) -> float:
    """Fraction of triggered non-target inputs predicted as the target.

    ``pred``: predictions on triggered inputs; ``target_labels``: the target class (scalar or per
    sample). Pass the inputs' true ``labels`` to exclude inputs whose true class is the target (they
    would count as successes without any attack); without ``labels`` the caller guarantees the set is
    non-target only.
    """
    p, t = _pair(pred, target_labels, "pred", "target_labels")
    if labels is not None:
        _, y = _pair(p, labels, "pred", "labels")
        keep = y != t
        if not keep.any():
            raise ConfigError(
                "attack_success_rate: every input's true label is the target; no non-target inputs"
            )
        p, t = p[keep], t[keep]
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


def fraction_certified_against(certs: pd.DataFrame, norm: float, *, radius_column: str = "radius") -> float:
    """Fraction of ALL rows that are correct, not abstained, and have radius ``> norm``: the samples whose
    certificate covers a realised attack of joint norm ``||Delta|| = norm``."""
    number("norm", norm, low=0)
    _check_certs(certs, radius_column)
    _, correct, rad = _masks(certs, radius_column)
    return float(np.mean(correct & (rad > norm)))


def smallest_radius_covering(norm: float, radii: Sequence[float]) -> float | None:
    """Smallest grid radius r with ``r > norm`` (strictly), or None when no grid radius exceeds it.
    Certified accuracy at that r lower-bounds :func:`fraction_certified_against` at ``norm``."""
    number("norm", norm, low=0)
    grid = _grid(radii)
    above = [r for r in grid if r > norm]
    return above[0] if above else None


def largest_radius_below(norm: float, radii: Sequence[float]) -> float | None:
    """Largest grid radius r with ``r <= norm``, or None when every grid radius exceeds ``norm``.
    Certified accuracy at that r UPPER-bounds the fraction covering the attack (a certificate with
    ``r <= R <= norm`` is counted but does not cover it); use :func:`smallest_radius_covering` for the
    claim "certified against this attack"."""
    number("norm", norm, low=0)
    grid = _grid(radii)
    below = [r for r in grid if r <= norm]
    return below[-1] if below else None


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
