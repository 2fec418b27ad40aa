"""Cert-SSB's storage-update certification (docs/methods.md#storage-update).

With a sample-specific sigma, two certificates can contradict each other: a point ``x'`` inside the
certified ball of ``x`` may itself be certified with another label. The storage update processes the
certified test samples in a fixed, recorded order with a memory ``S = {(x_j, c_j, R_j)}``. For a new
certificate ``(x, c, R)``:

1. ``d_j = ||x - x_j||_2`` for every stored ``j``; conflicts ``C = {j : d_j < R + R_j and c_j != c}``.
2. ``C`` empty -> stored unchanged (action ``"none"``).
3. Else ``r* = min_{j in C} (d_j - R_j)``, ``j*`` its argmin:
   - ``r* >= 0`` -> ``"trim"``: ``R <- r*`` (the ball touches, never overlaps, every conflicting ball);
   - ``r* < 0`` (``x`` lies inside ball ``j*``), by ``rule``:
     * ``rule="trim"`` (default, sound) -> ``"zeroed"``: ``x`` keeps its own label ``c`` with ``R <- 0``.
       Nothing is claimed around ``x`` and no label is changed, so the stored certificates are a subset
       of the sound ones the smoothed classifier produced (radii only shrink).
     * ``rule="paper"`` -> ``"align"``: ``c <- c_{j*}``, ``R <- R_{j*} - d_{j*}`` (the new ball is
       contained in ball ``j*``). This is the figure's "Trim Region + Align Label" and is **unsound under
       poisoning**: the relabel depends on ball ``j*``'s Monte-Carlo radius and on the processing order,
       so a memory rebuilt from another Monte-Carlo run or order can revert it, and the aligned label is
       not what the smoothed classifier predicts at ``x``. Align can also *enlarge* a radius
       (``R_{j*} - d_{j*}`` may exceed the original ``R``).
4. Append; stored entries never change.

Invariant (both rules): no two stored (open) balls with different labels overlap. Trim keeps
``R + R_j <= d_j`` for every conflict; a zeroed ball is empty; align puts the ball inside ball ``j*``,
which overlaps no ball of another label. What trim does not hide: a zeroed sample's centre lies inside
ball ``j*`` of another label, i.e. the smoothed classifier at ``x`` (with ``x``'s own sigma) disagrees
with the certificate of ``j*`` (made with ``x_{j*}``'s sigma) at that very point -- the contradiction
sample-specific sigma creates; align relabels it away, trim keeps it visible (count: action
``"zeroed"``) and certifies nothing at ``x``.

Abstention convention: abstained samples (prediction -1) are skipped and never stored (action
``"abstain"``). Alfarra et al.'s code instead stores them as label -1 with ``R = 0``; such an entry is an
empty ball, so it changes nothing for the invariant (it only trims later balls to stop at the abstained
point). The result depends on the order, which is always recorded. This is the memory-based rule of
data-dependent smoothing (Alfarra et al.); the exact Cert-SSB rule is not published in code. The update
must run on the sound ``radius`` (``certify``), over ONE memory for every input certified together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from certssb.core.metrics import certified_accuracy, radius_key
from certssb.core.validation import ConfigError, choice, fail, number

log = logging.getLogger(__name__)
SPLITS = ("clean", "triggered")
ACTIONS = ("none", "trim", "zeroed", "align", "abstain")
RULES = ("trim", "paper")


@dataclass
class StorageResult:
    """Outcome of :func:`storage_update`, indexed by sample (not by processing step).

    prediction: (N,) int64, -1 for abstained samples; radius: (N,) float64 (0 for abstained);
    action: (N,) str in ``ACTIONS``; order: (N,) int64, the processing order used (a permutation of
    ``0..N-1``); order_seed: the seed that drew ``order``, or None when the order was given.
    """

    prediction: np.ndarray
    radius: np.ndarray
    action: np.ndarray
    order: np.ndarray
    order_seed: int | None = field(default=None)
    rule: str = "trim"

    def summary(self) -> dict:
        """Counts of each action plus ``order_seed`` (the seed, or ``"given"``) and ``rule``."""
        out: dict = {a: int(np.sum(self.action == a)) for a in ACTIONS}
        out["order_seed"] = "given" if self.order_seed is None else int(self.order_seed)
        out["rule"] = self.rule
        return out


def _as_matrix(x) -> torch.Tensor:
    """(N, ...) tensor/array -> (N, D) float64 CPU tensor."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim < 1:
        fail("x", f"tensor of shape {tuple(t.shape)}", "must be (N, ...) inputs")
    return t.to(device="cpu", dtype=torch.float64).reshape(t.shape[0], -1)


def _check_inputs(x, prediction, radius) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    xm = _as_matrix(x)
    pred = np.asarray(prediction).astype(np.int64).reshape(-1)
    rad = np.asarray(radius, dtype=np.float64).reshape(-1)
    n = xm.shape[0]
    if pred.shape != (n,) or rad.shape != (n,):
        raise ConfigError(
            f"mismatched shapes: x has {n} samples, prediction {np.shape(prediction)}, "
            f"radius {np.shape(radius)}"
        )
    keep = pred != -1
    if np.any(~np.isfinite(rad[keep])) or np.any(rad[keep] < 0):
        fail("radius", "array with negative or non-finite values", "certified radii must be finite and >= 0")
    if np.any(pred < -1):
        fail("prediction", f"min {int(pred.min())}", "class indices >= 0, or -1 for abstain")
    return xm, pred, rad


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distances (difference-based, not the Gram-matrix shortcut), (n_a, n_b)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def storage_update(x, prediction, radius, *, rule: str = "trim", order=None, seed: int = 0) -> StorageResult:
    """Run the storage-update rule over all samples (see the module docstring).

    Args:
        x: (N, ...) test inputs (torch or numpy); flattened to (N, D) and compared in float64.
        prediction: (N,) certified predictions, -1 = abstained (skipped, action ``"abstain"``).
        radius: (N,) certified radii (the sound ``radius`` column of the certificate table).
        rule: ``"trim"`` (default, sound: a centre inside another label's ball keeps its label with
            R = 0, action ``"zeroed"``) or ``"paper"`` (relabel, action ``"align"``; unsound under
            poisoning). Parameter ``evaluation.storage_rule``.
        order: a permutation of ``0..N-1`` to process in, or None for a permutation drawn from
            ``numpy.random.default_rng(seed)``.
        seed: seed of the random order (ignored when ``order`` is given).
    """
    choice("rule", rule, RULES)
    xm, pred, rad = _check_inputs(x, prediction, radius)
    n = xm.shape[0]
    if order is None:
        number("seed", seed, integer=True)
        order_arr = np.random.default_rng(seed).permutation(n).astype(np.int64)
        order_seed: int | None = int(seed)
    else:
        order_arr = np.asarray(order).astype(np.int64).reshape(-1)
        if order_arr.shape != (n,) or not np.array_equal(np.sort(order_arr), np.arange(n)):
            fail("order", f"array of shape {np.shape(order)}", f"must be a permutation of 0..{n - 1}")
        order_seed = None

    out_pred = np.full(n, -1, dtype=np.int64)
    out_rad = np.zeros(n, dtype=np.float64)
    action = np.full(n, "abstain", dtype=object)

    # Preallocated memory: inputs, labels, radii of the stored entries; `m` entries are filled.
    mem_x = torch.empty_like(xm)
    mem_c = np.empty(n, dtype=np.int64)
    mem_r = np.empty(n, dtype=np.float64)
    m = 0
    for i in order_arr:  # sequential by definition: each decision depends on the memory so far
        c = int(pred[i])
        if c == -1:
            continue
        r = float(rad[i])
        act = "none"
        if m:
            d = _distances(xm[i : i + 1], mem_x[:m])[0].numpy()  # all stored entries at once
            conflict = (d < r + mem_r[:m]) & (mem_c[:m] != c)
            if conflict.any():
                gap = np.where(conflict, d - mem_r[:m], np.inf)
                j = int(np.argmin(gap))
                r_star = float(gap[j])
                if r_star >= 0:
                    r, act = r_star, "trim"
                elif rule == "trim":
                    r, act = 0.0, "zeroed"
                else:
                    c, r, act = int(mem_c[j]), float(mem_r[j] - d[j]), "align"
        mem_x[m] = xm[i]
        mem_c[m] = c
        mem_r[m] = r
        m += 1
        out_pred[i], out_rad[i], action[i] = c, r, act
    return StorageResult(
        prediction=out_pred,
        radius=out_rad,
        action=action.astype(str),
        order=order_arr,
        order_seed=order_seed,
        rule=rule,
    )


def overlapping_pairs(x, prediction, radius, *, tol: float = 1e-9, block: int = 256) -> int:
    """Number of pairs ``i < j`` of non-abstained samples with different predictions whose open balls
    overlap: ``d_ij < R_i + R_j - tol`` with ``R_i, R_j > 0`` (an open ball of radius 0 is empty and
    overlaps nothing; a ``"zeroed"`` sample's centre may lie inside another label's ball). ``tol`` absorbs
    floating-point rounding of balls that were trimmed to touch (``R_i = d_ij - R_j`` exactly in real
    arithmetic). Computed blockwise (``block`` rows at a time) so N = 2000 high-dimensional inputs fit in
    memory."""
    number("tol", tol, low=0)
    number("block", block, low=1, integer=True)
    xm, pred, rad = _check_inputs(x, prediction, radius)
    keep = np.flatnonzero(pred != -1)
    xk = xm[torch.as_tensor(keep)]
    ck = torch.as_tensor(pred[keep])
    rk = torch.as_tensor(rad[keep])
    nk = len(keep)
    total = 0
    for s in range(0, nk, block):
        e = min(s + block, nk)
        d = _distances(xk[s:e], xk)
        hit = (
            (d < rk[s:e, None] + rk[None, :] - tol)
            & (ck[s:e, None] != ck[None, :])
            & (rk[s:e, None] > 0)
            & (rk[None, :] > 0)
        )
        upper = torch.arange(s, e)[:, None] < torch.arange(nk)[None, :]  # i < j
        total += int((hit & upper).sum())
    return total


def _acc_by_radius(certs: pd.DataFrame, radii: list[float]) -> dict[str, float]:
    ca = certified_accuracy(certs, radii)["certified_accuracy"].round(4).tolist()
    return {radius_key(r): v for r, v in zip(radii, ca)}


def update_certificates(
    certificates: pd.DataFrame,
    x_clean: torch.Tensor,
    x_triggered: torch.Tensor,
    *,
    rule: str,
    seed: int,
    radii: list[float],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cert-SSB's storage update over ONE memory for the clean and triggered inputs, on the sound ``radius``.

    The two test sets are concatenated (clean first), processed in one seeded order
    (``seed``, parameter ``evaluation.storage_order_seed``) with ``rule`` (``evaluation.storage_rule``: trim |
    paper), and split back.
    The report records the rule, the order and, per split and overall, what changed. The updated table
    drops ``radius_published`` (the update did not run on it); ``r1`` stays the certificate's own R1.
    """
    before = certificates.reset_index(drop=True)
    parts = {split: np.flatnonzero(before["split"].to_numpy() == split) for split in SPLITS}
    order_rows = np.concatenate([parts[s] for s in SPLITS])  # clean rows, then triggered rows
    before = before.iloc[order_rows].reset_index(drop=True)
    x_all = torch.cat([x_clean, x_triggered]).flatten(1)
    if x_all.shape[0] != len(before):
        raise ConfigError(
            f"the certificate table has {len(before)} rows but the test sets have {x_all.shape[0]} "
            "inputs: they come from different runs"
        )
    res = storage_update(
        x_all, before["prediction"].to_numpy(), before["radius"].to_numpy(), rule=rule, seed=seed
    )
    after = before.copy()
    after["prediction"], after["radius"], after["action"] = res.prediction, res.radius, res.action
    after["abstained"] = after["prediction"] == -1
    after["correct"] = after["prediction"] == after["label"]
    # the update ran on the sound radius; the published radius of the input table says nothing after it
    after = after.drop(columns=["radius_published"])
    report: dict[str, Any] = {
        "order_seed": seed,
        "rule": rule,
        "memory": "one memory over clean + triggered inputs",
        "radius": "radius (sound)",
        "abstained": "skipped, never stored",
        "order": res.order.tolist(),
    }
    n_clean = len(parts["clean"])
    for split, rows in (
        ("clean", slice(0, n_clean)),
        ("triggered", slice(n_clean, None)),
        ("all", slice(None)),
    ):
        b, a = before.iloc[rows], after.iloc[rows]
        xs = x_all[rows]
        report[split] = {
            **{k: int(np.sum(a["action"].to_numpy() == k)) for k in ACTIONS},
            "overlapping_pairs_before": int(
                overlapping_pairs(xs, b["prediction"].to_numpy(), b["radius"].to_numpy())
            ),
            "overlapping_pairs_after": int(
                overlapping_pairs(xs, a["prediction"].to_numpy(), a["radius"].to_numpy())
            ),
            "certified_accuracy_before": _acc_by_radius(b, radii),
            "certified_accuracy_after": _acc_by_radius(a, radii),
        }
    log.debug(
        "storage update (rule %s, one memory): %s; overlapping pairs %d -> %d",
        rule,
        res.summary(),
        report["all"]["overlapping_pairs_before"],
        report["all"]["overlapping_pairs_after"],
    )
    return after, report
