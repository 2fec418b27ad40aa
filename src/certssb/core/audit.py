r"""Auditing certificates: craft a label-preserving perturbation inside a certificate's radius, retrain the
ensemble on it with the same noise plan, and count the certified predictions that change (ALGORITHMS.md §0).

A certificate with :math:`R_1` (``r1``) claims: for every perturbation of the training features and the test
input with :math:`\|\Delta\|_\Sigma = \sqrt{\sum_i \|\delta_i\|^2/\sigma_i^2 + \|\delta_x\|^2/\sigma_x^2} < R_1`
(labels unchanged, no point inserted or removed) the smoothed prediction stays, with probability
:math:`\ge 1-\alpha` over the Monte-Carlo draws. Each radius column is audited in its own norm:

- ``radius`` (sound): the weighted norm with every point's own sigma_i (uniform sigma: :math:`\|\Delta\|/\sigma`);
- ``radius_published`` (Cert-SSB as published, :math:`\sigma_x R_1`): the plain l2 norm
  :math:`\|\Delta\| < \sigma_x R_1`, i.e. the weighted norm with sigma_x in place of every sigma_i.

The budget is ``fraction`` (default 0.95) of the certificate, :math:`\|\Delta\|_{w} = \text{fraction}\cdot R_1`.

Batching. Retraining the ensemble is the cost, so one retrain serves a batch of points: the batch's training
perturbation is shared (the union of the points' own training moves, on disjoint training points) and each
point adds its own test perturbation. Point j then sees the WHOLE training perturbation, so the training part
is scaled so that, for every j of the batch, its norm under j's weights is at most
:math:`\sqrt{\text{train\_share}}\cdot\text{fraction}\cdot R_{1,j}`, and j's test perturbation takes the
rest: :math:`\|\Delta_{train}\|_{w_j}^2 + \|\delta_{x_j}\|^2/\sigma_{x_j}^2 = (\text{fraction}\cdot R_{1,j})^2`.
A batch of one point gives each point its whole budget; larger batches trade attack strength for retrains.

Strategies (each returns directions; :func:`scale_to_budget` sets their size):

- ``trigger``: the configured trigger pattern on the k training points nearest to x that carry another
  label than x's certified prediction, and on x itself;
- ``gradient``: x moves along the input gradient of the pilot model's loss at x (away from its predicted
  class A); its k nearest other-label training points move along minus the gradient of the pilot's loss for
  class A at each of them (they come to look like A while keeping their label: the poisoning direction that
  pulls the decision at x away from A), with more weight on low-sigma points (the ellipsoid's weak axis);
- ``lowsigma``: the whole budget on the k training points with the smallest sigma_i among those of another
  label, each moved towards x (no test perturbation).

A flip is a certified prediction that changes to another class. Under a sound certificate a flip needs the
certificate or the re-certification to fail, so flips happen with probability at most 2 alpha per point; the
summary gives the one-sided binomial p-value of the flips against alpha and against 2 alpha. Sigma is held
fixed while retraining (the theorem's assumption); the audit does not test Cert-SSB recomputing sigma on the
poisoned data (Sukenik et al.).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

from certssb.core.validation import choice, number, positive

STRATEGIES = ("trigger", "gradient", "lowsigma")
COLUMNS = ("radius", "radius_published")


def weighted_norm(train_norms, train_sigma, test_norm: float, test_sigma: float) -> float:
    """:math:`\\sqrt{\\sum_i (n_i/\\sigma_i)^2 + (t/\\sigma_x)^2}` for per-point perturbation norms ``n_i``."""
    n = np.asarray(train_norms, dtype=np.float64)
    s = np.asarray(train_sigma, dtype=np.float64)
    return float(np.sqrt(np.sum((n / s) ** 2) + (float(test_norm) / float(test_sigma)) ** 2))


@dataclass
class Attack:
    """One batch's perturbation: a shared training part and one test perturbation per audited point."""

    train_index: np.ndarray  # (k,) training indices moved (disjoint per point of the batch)
    train_delta: torch.Tensor  # (k, C, H, W)
    test_delta: torch.Tensor  # (B, C, H, W)


def _norms(t: torch.Tensor) -> np.ndarray:
    return t.double().flatten(1).norm(dim=1).numpy() if t.numel() else np.zeros(t.shape[0])


def scale_to_budget(train_index: np.ndarray, train_dir: torch.Tensor, test_dir: torch.Tensor, *, r1: np.ndarray,
                    sigma_train: np.ndarray, sigma_x: np.ndarray, column: str, fraction: float,
                    train_share: float = 0.5) -> Attack:
    """Scale directions to the batch's budget (module docstring): the training part to at most
    ``sqrt(train_share) * fraction * r1_j`` under every point's weights, the test part of point j to the rest.
    ``train_share = 1`` with zero test directions spends the whole budget on training points."""
    choice("audit.columns[]", column, COLUMNS)
    number("audit.fraction", fraction, low=0, high=1, low_open=True)
    number("train_share", train_share, low=0, high=1)
    r1, sigma_x = np.asarray(r1, np.float64), np.asarray(sigma_x, np.float64)
    budget = fraction * r1
    tn = _norms(train_dir)
    s_k = np.asarray(sigma_train, np.float64)[train_index] if len(train_index) else np.zeros(0)
    # norm of the unscaled training part under point j's weights
    per_j = np.array([np.sqrt(np.sum((tn / (s_k if column == "radius" else sx)) ** 2)) for sx in sigma_x])
    a = float(np.min(np.sqrt(train_share) * budget / per_j)) if np.all(per_j > 0) and len(tn) else 0.0
    rest = np.sqrt(np.maximum(budget ** 2 - (a * per_j) ** 2, 0.0))  # weighted norm left for the test part
    xn = _norms(test_dir)
    scale = np.where(xn > 0, rest * sigma_x / np.where(xn > 0, xn, 1.0), 0.0)
    return Attack(np.asarray(train_index, np.int64), train_dir * a,
                  test_dir * torch.as_tensor(scale, dtype=test_dir.dtype).view(-1, *[1] * (test_dir.dim() - 1)))


def _other_label_nearest(x_train: torch.Tensor, y_train: torch.Tensor, x: torch.Tensor, label: int, k: int,
                         used: set[int], key: np.ndarray | None = None) -> np.ndarray:
    """k training indices of another label than ``label``, not in ``used``: nearest to x, or smallest ``key``
    (ties, e.g. uniform sigma, broken by the distance to x)."""
    ok = (y_train.numpy() != label) & ~np.isin(np.arange(len(y_train)), list(used))
    cand = np.flatnonzero(ok)
    dist = (x_train[cand].flatten(1) - x.flatten().to(x_train.dtype)).norm(dim=1).numpy()
    order = np.lexsort((dist, key[cand])) if key is not None else np.argsort(dist, kind="stable")
    return cand[order[:k]]


def craft(strategy: str, x_points: torch.Tensor, pred: np.ndarray, x_train: torch.Tensor, y_train: torch.Tensor,
          sigma_train: np.ndarray, *, k: int, trigger: torch.Tensor | None = None,
          loss_grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
          ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, float]:
    """Unscaled directions of ``strategy`` for a batch of points: (train indices, train directions, test
    directions, train_share). ``trigger``: the (C, H, W) pattern; ``loss_grad(x, labels)``: the pilot's input
    gradient of its loss."""
    choice("audit.strategies[]", strategy, STRATEGIES)
    positive("audit.k", k, integer=True)
    used: set[int] = set()
    idx, tdir = [], []
    grads = loss_grad(x_points, torch.as_tensor(pred)) if strategy == "gradient" else None
    for j in range(len(x_points)):
        if strategy == "lowsigma":
            ii = _other_label_nearest(x_train, y_train, x_points[j], int(pred[j]), k, used, key=sigma_train)
            d = x_points[j].unsqueeze(0) - x_train[ii]
            d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        else:
            ii = _other_label_nearest(x_train, y_train, x_points[j], int(pred[j]), k, used)
            if strategy == "trigger":
                d = trigger.unsqueeze(0).expand(len(ii), *trigger.shape).to(x_train.dtype)
            else:  # make the other-label points look like x's class A to the pilot: -grad of CE(f(x_i), A)
                d = -loss_grad(x_train[ii], torch.full((len(ii),), int(pred[j]))).to(x_train.dtype)
                d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (d.dim() - 1))
            w = torch.as_tensor(1.0 / sigma_train[ii], dtype=x_train.dtype)
            d = d * (w / w.mean()).view(-1, *[1] * (d.dim() - 1))
        used.update(int(i) for i in ii)
        idx.append(ii)
        tdir.append(d)
    test = torch.zeros_like(x_points) if strategy == "lowsigma" else (
        trigger.unsqueeze(0).expand_as(x_points).clone() if strategy == "trigger" else grads)
    return np.concatenate(idx), torch.cat(tdir), test, (1.0 if strategy == "lowsigma" else 0.5)


def summarise(report: pd.DataFrame, alpha: float) -> dict:
    """Per (column, strategy): points, flips, abstentions after, expected flips under the bound (alpha * n),
    the one-sided binomial p-values of the flips against alpha and 2 alpha, and how much of its budget each
    point's Delta used (min / median / max of its column norm over r1; batching lowers it, see above)."""
    out: dict = {"alpha": alpha, "columns": {}}
    for (column, strategy), g in report.groupby(["column", "strategy"], sort=True):
        n, flips = len(g), int(g["flipped"].sum())
        out["columns"].setdefault(column, {})[strategy] = {
            "points": n, "flips": flips, "abstained_after": int(g["abstained_after"].sum()),
            "expected_under_bound": alpha * n,
            "p_value": float(binomtest(flips, n, alpha, alternative="greater").pvalue) if n else 1.0,
            # a flip needs the certificate or its re-certification to fail: at most 2 alpha per point
            "p_value_2alpha": float(binomtest(flips, n, min(1.0, 2 * alpha), alternative="greater").pvalue)
            if n else 1.0,
        }
        ratio = (g["weighted_norm"] / g["r1"]).to_numpy() if n else np.zeros(1)
        out["columns"][column][strategy].update(
            {"norm_over_budget_min": float(ratio.min()), "norm_over_budget_median": float(np.median(ratio)),
             "norm_over_budget_max": float(ratio.max())})
        if "sigma_norm_over_r1" in g:
            out["columns"][column][strategy]["sigma_norm_over_r1_max"] = float(g["sigma_norm_over_r1"].max())
    for column, per in out["columns"].items():
        out[f"flips_{column}"] = sum(v["flips"] for v in per.values())
    return out
