"""Cert-SSB's storage-update certification (ALGORITHMS.md §5).

With a sample-specific sigma, two certificates can contradict each other: a point ``x'`` inside the
certified ball of ``x`` may itself be certified with another label. The storage update processes the
certified test samples in a fixed, recorded order with a memory ``S = {(x_j, c_j, R_j)}``. For a new
certificate ``(x, c, R)``:

1. ``d_j = ||x - x_j||_2`` for every stored ``j``; conflicts ``C = {j : d_j < R + R_j and c_j != c}``.
2. ``C`` empty -> stored unchanged (action ``"none"``).
3. Else ``r* = min_{j in C} (d_j - R_j)``, ``j*`` its argmin:
   - ``r* >= 0`` -> ``"trim"``: ``R <- r*`` (the ball touches, never overlaps, every conflicting ball);
   - ``r* < 0`` (``x`` lies inside ball ``j*``) -> ``"align"``: ``c <- c_{j*}``, ``R <- R_{j*} - d_{j*}``
     (the new ball is contained in ball ``j*``).
4. Append; stored entries never change.

Invariant: no two stored (open) balls with different labels overlap. Trim keeps ``R + R_j <= d_j`` for
every conflict; align puts the ball inside ball ``j*``, which overlaps no ball of another label.
Trim only shrinks a radius; align can *enlarge* it (``R_{j*} - d_{j*}`` may exceed the original ``R``
when ``x`` lies deep inside a large ball) -- the enlarged ball is still inside a stored certified ball.
Abstained samples (prediction -1) are skipped and never stored. The result depends on the order, which
is always recorded. This is the memory-based rule of data-dependent smoothing (Alfarra et al.); the exact
Cert-SSB rule is not published in code. Input-dependent-sigma certificates are not sound in general
(Sukenik et al., ICML 2022): report the conservative radius too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from certssb.core.validation import ConfigError, fail, number

ACTIONS = ("none", "trim", "align", "abstain")


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

    def summary(self) -> dict:
        """Counts of each action plus ``order_seed`` (the seed, or ``"given"``)."""
        out: dict = {a: int(np.sum(self.action == a)) for a in ACTIONS}
        out["order_seed"] = "given" if self.order_seed is None else int(self.order_seed)
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


def storage_update(x, prediction, radius, *, order=None, seed: int = 0) -> StorageResult:
    """Run the storage-update rule over all samples (see the module docstring).

    Args:
        x: (N, ...) test inputs (torch or numpy); flattened to (N, D) and compared in float64.
        prediction: (N,) certified predictions, -1 = abstained (skipped, action ``"abstain"``).
        radius: (N,) certified radii.
        order: a permutation of ``0..N-1`` to process in, or None for a permutation drawn from
            ``numpy.random.default_rng(seed)``.
        seed: seed of the random order (ignored when ``order`` is given).
    """
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
    )


def overlapping_pairs(x, prediction, radius, *, tol: float = 1e-9, block: int = 256) -> int:
    """Number of pairs ``i < j`` of non-abstained samples with different predictions whose open balls
    overlap: ``d_ij < R_i + R_j - tol``. ``tol`` absorbs floating-point rounding of balls that were
    trimmed to touch (``R_i = d_ij - R_j`` exactly in real arithmetic). Computed blockwise
    (``block`` rows at a time) so N = 2000 high-dimensional inputs fit in memory."""
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
        hit = (d < rk[s:e, None] + rk[None, :] - tol) & (ck[s:e, None] != ck[None, :])
        upper = torch.arange(s, e)[:, None] < torch.arange(nk)[None, :]  # i < j
        total += int((hit & upper).sum())
    return total
