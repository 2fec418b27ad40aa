r"""Auditing certificates with power: a ladder of budgets, real attacks, and the statistics that fit them
(the threat model and the claim are in ``docs/methods.md``).

A certificate with :math:`R_1` (``r1``) claims: for every perturbation of the training features and the test
input with
:math:`\|\Delta\|_\Sigma = \sqrt{\sum_i \|\delta_i\|^2/\sigma_i^2 + \|\delta_x\|^2/\sigma_x^2} < R_1`
(labels unchanged, no point inserted or removed) the smoothed prediction stays, with probability
:math:`\ge 1-\alpha` over the Monte-Carlo draws. Each radius column is audited in its own norm:

- ``radius`` (sound): the weighted norm with every point's own sigma_i (uniform sigma:
  :math:`\|\Delta\|/\sigma`);
- ``radius_published`` (Cert-SSB as published, :math:`\sigma_x R_1`): the plain l2 norm
  :math:`\|\Delta\| \le \sigma_x R_1`, i.e. the weighted norm with sigma_x in place of every sigma_i;
- ``radius_resigma`` (Cert-SSB end to end): the ``radius`` budget, but sigma is recomputed on the perturbed
  training points and input before retraining (the theorem assumes a fixed sigma; Cert-SSB's moves with
  Delta).

The ladder. An audit that finds no flip is evidence only if it finds flips where a certificate is too large.
Every point is attacked at :math:`\|\Delta\|_{column} = c\,R_1` for each factor c of ``factors`` (0.95: inside
the certificate; 2 ... 32: outside, the positive control). ``break_factor`` is the smallest c whose flip rate
reaches ``stop_rate`` (10 %); a strategy that retrains stops climbing there (``pgd`` runs every rung).

Strategies and the part of Delta they use:

- ``pgd`` (input only, no retrain): projected gradient descent on the smoothed ensemble,
  :math:`\min_{\|\delta_x\| \le \sigma_x c R_1}
  \log \mathbb{E}_\varepsilon\,\mathrm{softmax}_A f(x+\delta_x+\sigma_x\varepsilon)`,
  the expectation over fresh Gaussian draws with the sample's sigma_x, averaged over a few members;
- ``brew`` (training only): gradient matching (Geiping et al. 2021, "Witches' Brew"): the training points of
  the runner-up class B (labels kept) nearest to x, lowest sigma first, are perturbed so that the parameter
  gradient of their training loss aligns with that of :math:`\mathrm{CE}(f(x), B)`: training on them pulls the
  prediction at x towards B. The perturbation is optimised in whitened coordinates
  :math:`u_i = w_i\delta_i` (w_i = 1/sigma_i for ``radius``, 1/sigma_x for ``radius_published``) on the ball
  :math:`\|u\| \le c R_1`, so the budget is spent where the column's norm makes it cheap;
- ``brew_pgd`` (both): half the squared budget to ``brew``, the rest to ``pgd`` against the retrained
  ensemble;
- ``lowsigma`` (training only): the k training points of another label with the smallest sigma_i, moved
  straight towards x (the ellipsoid's short axis).

Grouping. One retrain serves a group of points only when no point's budget is scaled down by another's: points
are grouped by their budget so that the group's smallest is >= ``min_share`` (0.9) of its largest. The group
shares one training perturbation, of the group's smallest training budget (so every point faces at most its
own); with an input part, point j's input takes exactly the rest, so :math:`\|\Delta\|_{column} = c R_{1,j}`.

Statistics. A flip is a certified prediction that changes to another class. Under a sound certificate a flip
needs the certificate or the re-certification to fail: expected flips <= 2 alpha per point (an expectation
only). Points that share a retrain or an ensemble are not independent, so a binomial p-value is reported only
for groups of one point with their own retrain.

Length: the ladder, its budgets and grouping, the two attacks, the control-ready ``Learner`` protocol and the
summary belong together: they are one audit, and the tests drive them through ``audit_ladder`` as a unit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

from certssb.core.validation import choice, fail, number, positive

STRATEGIES = ("pgd", "brew", "brew_pgd", "lowsigma")
PARTS = {"pgd": "input", "brew": "training", "brew_pgd": "both", "lowsigma": "training"}
COLUMNS = ("radius", "radius_published")
RESIGMA = "radius_resigma"
ABSTAIN = -1
REPORT_COLUMNS = [
    "sample_id",
    "strategy",
    "part",
    "column",
    "factor",
    "group",
    "group_size",
    "r1",
    "R",
    "sigma_x",
    "sigma_x_after",
    "train_points_moved",
    "l2_norm",
    "column_norm",
    "norm_over_budget",
    "sigma_norm_over_r1",
    "prediction_before",
    "prediction_after",
    "abstained_after",
    "flipped",
]


def weighted_norm(train_norms, train_sigma, test_norm: float, test_sigma: float) -> float:
    """:math:`\\sqrt{\\sum_i (n_i/\\sigma_i)^2 + (t/\\sigma_x)^2}` for per-point perturbation norms
    ``n_i``."""
    n = np.asarray(train_norms, dtype=np.float64)
    s = np.asarray(train_sigma, dtype=np.float64)
    return float(np.sqrt(np.sum((n / s) ** 2) + (float(test_norm) / float(test_sigma)) ** 2))


def check_factors(name: str, factors: Sequence[float]) -> list[float]:
    """The ladder: a non-empty, strictly increasing list of multiples c > 0 of the certificate."""
    ok = (
        isinstance(factors, (list, tuple))
        and len(factors) > 0
        and all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in factors)
    )
    if not ok or any(b <= a for a, b in pairwise(factors)):
        fail(
            name,
            factors,
            "must be a non-empty, strictly increasing list of multiples c > 0 of the "
            "certificate, e.g. [0.95, 2, 4, 8, 16, 32]",
        )
    return [float(c) for c in factors]


def group_by_budget(budget: np.ndarray, min_share: float = 0.9) -> list[np.ndarray]:
    """Indices grouped greedily from the largest budget down: a group takes every remaining point whose budget
    is >= ``min_share`` x the group's largest; so the group's smallest is >= min_share x each member's
    budget (shared at the smallest, no point gets less than min_share of its own)."""
    number("min_share", min_share, low=0, high=1, low_open=True)
    b = np.asarray(budget, np.float64)
    order = np.argsort(-b, kind="stable")
    groups, start = [], 0
    while start < len(order):
        top = b[order[start]]
        end = start
        while end < len(order) and b[order[end]] >= min_share * top:
            end += 1
        groups.append(np.sort(order[start:end]))
        start = end
    return groups


def _norms(t: torch.Tensor) -> np.ndarray:
    return t.double().flatten(1).norm(dim=1).numpy() if t.numel() else np.zeros(t.shape[0])


def train_weights(column: str, sigma_train: np.ndarray, sigma_x: float) -> np.ndarray:
    """Per-training-point weight w_i of the column's norm: 1/sigma_i (sound, resigma) or 1/sigma_x
    (published)."""
    s = np.asarray(sigma_train, np.float64)
    return 1.0 / (s if column in ("radius", RESIGMA) else np.full(len(s), float(sigma_x)))


def training_norm(train_delta: torch.Tensor, weights: np.ndarray) -> float:
    """:math:`\\sqrt{\\sum_i w_i^2 \\|\\delta_i\\|^2}`."""
    return float(np.sqrt(np.sum((_norms(train_delta) * np.asarray(weights)) ** 2)))


def scale_training(
    train_delta: torch.Tensor,
    sigma_moved: np.ndarray,
    *,
    column: str,
    budgets: np.ndarray,
    sigma_x: np.ndarray,
) -> tuple[torch.Tensor, np.ndarray]:
    """Scale a group's shared training perturbation so that its norm under every point j's weights equals
    ``budgets[j]`` for the point that binds and is <= it for the others. Returns the scaled perturbation and
    its norm under each point's weights (the input part of j may take ``sqrt(total_j^2 - that^2)``)."""
    per_j = np.array([training_norm(train_delta, train_weights(column, sigma_moved, s)) for s in sigma_x])
    if len(train_delta) == 0 or not np.all(per_j > 0):
        return train_delta * 0.0, np.zeros(len(sigma_x))
    a = float(np.min(np.asarray(budgets, np.float64) / per_j))
    return train_delta * a, a * per_j


def input_budget(total: np.ndarray, train_part: np.ndarray, sigma_x: np.ndarray) -> np.ndarray:
    """l2 budget of the input: :math:`\\sigma_x\\sqrt{total^2 - train^2}` (the column norm's input term)."""
    rest = np.asarray(total) ** 2 - np.asarray(train_part) ** 2
    return np.asarray(sigma_x) * np.sqrt(np.maximum(rest, 0.0))


def _bshape(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


def to_sphere(delta: torch.Tensor, radius, gen: torch.Generator | None = None) -> torch.Tensor:
    """Rescale each row of ``delta`` to l2 norm ``radius`` (a random direction where a row is 0)."""
    r = torch.as_tensor(np.asarray(radius, np.float64), dtype=delta.dtype)
    n = delta.flatten(1).norm(dim=1)
    if bool((n == 0).any()):
        rnd = torch.randn(delta.shape, generator=gen, dtype=delta.dtype)
        delta = torch.where(_bshape(n == 0, delta), rnd, delta)
        n = delta.flatten(1).norm(dim=1)
    return delta * _bshape(r / n, delta)


Net = Callable[[torch.Tensor], torch.Tensor]


def pgd_smoothed(
    nets: Sequence[Net],
    x: torch.Tensor,
    label: np.ndarray,
    sigma_x: np.ndarray,
    budget: np.ndarray,
    *,
    steps: int = 10,
    draws: int = 8,
    seed: int = 0,
) -> torch.Tensor:
    r"""l2 PGD against the smoothed classifier: minimise
    :math:`\log \frac{1}{|F|}\sum_{f\in F}
    \mathbb{E}_\varepsilon\,\mathrm{softmax}_A f(x+\delta+\sigma_x\varepsilon)`
    (``draws`` fresh draws per step) over :math:`\|\delta\| \le` ``budget`` per row; normalised steps of
    2.5 budget / steps, projection onto the ball, and the result on the sphere :math:`\|\delta\| =` budget."""
    positive("steps", steps, integer=True)
    positive("draws", draws, integer=True)
    gen = torch.Generator().manual_seed(int(seed))
    x = x.float()
    b = torch.as_tensor(np.asarray(budget, np.float64), dtype=x.dtype)
    s = _bshape(torch.as_tensor(np.asarray(sigma_x, np.float64), dtype=x.dtype), x)
    lab = torch.as_tensor(np.asarray(label), dtype=torch.long)
    delta = to_sphere(torch.randn(x.shape, generator=gen), b * 0.01)
    step = 2.5 * b / steps
    for _ in range(steps):
        eps = torch.randn((draws, *x.shape), generator=gen)
        d = delta.clone().requires_grad_(True)
        noisy = (x + d).unsqueeze(0) + s.unsqueeze(0) * eps
        flat = noisy.flatten(0, 1)
        p = torch.stack([torch.softmax(net(flat), 1) for net in nets]).mean(0)
        p = p.view(draws, x.shape[0], -1).mean(0)
        obj = torch.log(p.gather(1, lab.view(-1, 1)).clamp_min(1e-12)).sum()
        (g,) = torch.autograd.grad(obj, d)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta - _bshape(step / gn, g) * g
        n = delta.flatten(1).norm(dim=1)
        delta = delta * _bshape(torch.clamp(b / n.clamp_min(1e-12), max=1.0), delta)  # project onto the ball
    return to_sphere(delta.detach(), b, gen)


def gradient_matching(
    nets: Sequence[torch.nn.Module],
    x_poison: torch.Tensor,
    y_poison: torch.Tensor,
    x_target: torch.Tensor,
    y_adv: torch.Tensor,
    weights: np.ndarray,
    budget: float,
    *,
    steps: int = 30,
    seed: int = 0,
) -> torch.Tensor:
    r"""Witches' Brew: perturbations :math:`\delta_i` of the poison points (labels ``y_poison`` kept) that
    minimise :math:`\frac{1}{|F|}\sum_f 1 - \cos(\nabla_\theta \sum_i \mathrm{CE}(f(x_i+\delta_i), y_i),\;
    \nabla_\theta \mathrm{CE}(f(x_t), y_{adv}))`, optimised in whitened coordinates :math:`u_i = w_i\delta_i`
    by normalised gradient steps projected onto :math:`\|u\| \le` ``budget``; returned on the sphere
    :math:`\sqrt{\sum_i w_i^2\|\delta_i\|^2} =` budget."""
    positive("steps", steps, integer=True)
    gen = torch.Generator().manual_seed(int(seed))
    w = _bshape(torch.as_tensor(np.asarray(weights, np.float64), dtype=torch.float32), x_poison)
    xp, xt = x_poison.float(), x_target.float()
    targets = []
    for net in nets:
        params = [p for p in net.parameters()]
        loss = torch.nn.functional.cross_entropy(net(xt), y_adv, reduction="sum")
        targets.append([g.detach() for g in torch.autograd.grad(loss, params)])
    u = torch.randn(xp.shape, generator=gen)
    u = u * (0.01 * budget / float(u.norm()))
    step = 2.5 * budget / steps
    for _ in range(steps):
        uu = u.clone().requires_grad_(True)
        obj = 0.0
        for net, tg in zip(nets, targets):
            params = [p for p in net.parameters()]
            loss = torch.nn.functional.cross_entropy(net(xp + uu / w), y_poison, reduction="sum")
            pg = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((a * b).sum() for a, b in zip(pg, tg))
            pn = torch.sqrt(sum((a * a).sum() for a in pg)).clamp_min(1e-12)
            tn = torch.sqrt(sum((b * b).sum() for b in tg)).clamp_min(1e-12)
            obj = obj + (1 - dot / (pn * tn)) / len(nets)
        (g,) = torch.autograd.grad(obj, uu)
        u = (u - step * g / g.norm().clamp_min(1e-12)).detach()
        u = u * min(1.0, budget / float(u.norm().clamp_min(1e-12)))
    u = u * (budget / float(u.norm().clamp_min(1e-12)))
    return (u / w).detach()


def poison_candidates(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    sigma_train: np.ndarray,
    x: torch.Tensor,
    cls: int,
    k: int,
    used: set[int],
    *,
    same_label: bool,
) -> np.ndarray:
    """k training indices not in ``used``, with label ``cls`` (``same_label``) or another label than ``cls``:
    the smallest sigma_i first, ties (e.g. uniform sigma) broken by the distance to x."""
    y = y_train.numpy()
    ok = ((y == cls) if same_label else (y != cls)) & ~np.isin(np.arange(len(y)), list(used))
    cand = np.flatnonzero(ok)
    dist = (x_train[cand].flatten(1).double() - x.flatten().double()).norm(dim=1).numpy()
    order = np.lexsort((dist, np.round(np.asarray(sigma_train, np.float64)[cand], 9)))
    return cand[order[:k]]


class Learner(Protocol):
    """What the audit needs from a smoothed learner (the real ensemble, or a control with a closed form)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    sigma_train: np.ndarray

    def surrogates(self) -> list[torch.nn.Module]:
        """A few differentiable members (eval mode) for PGD and gradient matching."""

    def retrain(self, x_train: torch.Tensor, sigma_train: np.ndarray, tag: str) -> Learner:
        """The learner trained on ``x_train`` with the same noise plan (``tag`` names the retrain)."""

    def predict(self, ids: np.ndarray, x_points: torch.Tensor, sigma_x: np.ndarray) -> np.ndarray:
        """Certified predictions (ABSTAIN = -1) of the audited points ``ids`` given their (perturbed)
        inputs."""

    def resigma(
        self, x_train: torch.Tensor, moved: np.ndarray, x_points: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sigma recomputed on the perturbed data: (sigma_train, sigma_x of the points)."""


@dataclass(frozen=True)
class LadderConfig:
    """The audit's knobs (``certssb.execution.audit.ladder_config`` builds one from the ``audit`` block)."""

    factors: tuple[float, ...] = (0.95, 2, 4, 8, 16, 32)
    strategies: tuple[str, ...] = ("pgd", "brew")
    columns: tuple[str, ...] = COLUMNS
    resigma: bool = False
    stop_rate: float = 0.1
    min_share: float = 0.9
    k: int = 8
    pgd_steps: int = 10
    pgd_draws: int = 8
    brew_steps: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        check_factors("factors", list(self.factors))
        for s in self.strategies:
            choice("strategies[]", s, STRATEGIES)
        for c in self.columns:
            choice("columns[]", c, COLUMNS)
        number("stop_rate", self.stop_rate, low=0, high=1, low_open=True)
        number("min_share", self.min_share, low=0, high=1, low_open=True)
        positive("k", self.k, integer=True)


def _runner_up(nets: Sequence[Net], x: torch.Tensor, pred: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        p = torch.stack([torch.softmax(n(x.float()), 1) for n in nets]).mean(0)
    p[torch.arange(len(pred)), torch.as_tensor(pred)] = -1.0
    return p.argmax(1).numpy()


def _craft_training(
    strategy: str,
    learner: Learner,
    nets,
    x_pts: torch.Tensor,
    pred: np.ndarray,
    column: str,
    sigma_x: np.ndarray,
    budget: float,
    cfg: LadderConfig,
    seed: int,
) -> tuple[np.ndarray, torch.Tensor]:
    """A group's shared training perturbation (indices, deltas) of column norm ``budget`` (group-wise).

    Per point, the ``cfg.k`` lowest-sigma candidates not used by another point of the group: for
    ``lowsigma`` points of another label than x's prediction, moved straight towards x; for gradient matching
    points of x's runner-up class (labels kept)."""
    lowsigma = strategy == "lowsigma"
    label = pred if lowsigma else _runner_up(nets, x_pts, pred)
    used: set[int] = set()
    idx, dirs = [], []
    for j in range(len(x_pts)):
        ii = poison_candidates(
            learner.x_train,
            learner.y_train,
            learner.sigma_train,
            x_pts[j],
            int(label[j]),
            cfg.k,
            used,
            same_label=not lowsigma,
        )
        used.update(int(i) for i in ii)
        idx.append(ii)
        if lowsigma:
            d = x_pts[j].unsqueeze(0).double() - learner.x_train[ii].double()
            dirs.append(d / _bshape(d.flatten(1).norm(dim=1).clamp_min(1e-12), d))
    if lowsigma:
        return np.concatenate(idx), torch.cat(dirs).to(learner.x_train.dtype)
    ii = np.concatenate(idx)
    w = train_weights(column, learner.sigma_train[ii], float(np.min(sigma_x)))
    d = gradient_matching(
        nets,
        learner.x_train[ii],
        learner.y_train[ii],
        x_pts,
        torch.as_tensor(label),
        w,
        budget,
        steps=cfg.brew_steps,
        seed=seed,
    )
    return ii, d.to(learner.x_train.dtype)


def audit_ladder(
    learner: Learner,
    ids: np.ndarray,
    x_points: torch.Tensor,
    pred: np.ndarray,
    r1: np.ndarray,
    sigma_x: np.ndarray,
    cfg: LadderConfig,
    *,
    sigma_min: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Climb the ladder for every strategy x column (and ``radius_resigma`` when ``cfg.resigma``): one row per
    point x strategy x column x factor, up to the factor where the flip rate first reaches ``cfg.stop_rate``
    (strategies that retrain; the input-only ``pgd`` costs no retrain and runs every rung).

    ``ids``: the points' indices in the learner's test set; ``pred``, ``r1``, ``sigma_x``: their certified
    prediction, R1 and sigma_x before the attack; ``sigma_min``: their sound radius' sigma (``radius`` =
    sigma_min R1; default sigma_x).
    """
    r1, sigma_x = np.asarray(r1, np.float64), np.asarray(sigma_x, np.float64)
    sigma_min = sigma_x if sigma_min is None else np.asarray(sigma_min, np.float64)
    columns = list(cfg.columns) + ([RESIGMA] if cfg.resigma else [])
    nets = learner.surrogates()
    rows: list[dict] = []
    for si, strategy in enumerate(cfg.strategies):
        part = PARTS[strategy]
        for ci, column in enumerate(columns):
            for fi, c in enumerate(cfg.factors):
                seed = cfg.seed * 1_000_003 + si * 10_007 + ci * 101 + fi
                total = c * r1  # the column norm of Delta, per point
                new_rows = _rung(
                    learner,
                    nets,
                    strategy,
                    part,
                    column,
                    c,
                    ids,
                    x_points,
                    pred,
                    r1,
                    sigma_x,
                    sigma_min,
                    total,
                    cfg,
                    seed,
                )
                rows += new_rows
                rate = float(np.mean([r["flipped"] for r in new_rows]))
                if log:
                    log(
                        f"{strategy} on {column} at c = {c:g}: {sum(r['flipped'] for r in new_rows)}/"
                        f"{len(new_rows)} flipped"
                    )
                if rate >= cfg.stop_rate and part != "input":  # input only: cheap, every rung
                    break
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def _rung(
    learner: Learner,
    nets,
    strategy: str,
    part: str,
    column: str,
    c: float,
    ids,
    x_points,
    pred,
    r1,
    sigma_x,
    sigma_min,
    total,
    cfg: LadderConfig,
    seed: int,
) -> list[dict]:
    rows = []
    norm_col = "radius" if column == RESIGMA else column
    if part == "input":
        groups = [np.arange(len(ids))]  # no retrain: every point gets its whole budget on its input
    else:
        # point j's training budget in l2-comparable units: sound -> total_j; published -> sigma_x_j total_j
        train_total = total * (np.sqrt(0.5) if part == "both" else 1.0)
        key = train_total * (sigma_x if norm_col == "radius_published" else 1.0)
        groups = group_by_budget(key, cfg.min_share)
    for gi, g in enumerate(groups):
        x_g = x_points[g].clone()
        tr_idx = np.zeros(0, np.int64)
        tr_delta = torch.zeros(0, *x_points.shape[1:], dtype=learner.x_train.dtype)
        train_part = np.zeros(len(g))
        model = learner
        if part != "input":
            tt = total[g] * (np.sqrt(0.5) if part == "both" else 1.0)
            # the binding point's training budget, in the crafting weights (published: 1/min sigma_x)
            if norm_col == "radius_published":
                craft_budget = float(np.min(tt * sigma_x[g]) / np.min(sigma_x[g]))
            else:
                craft_budget = float(np.min(tt))
            tr_idx, tr_delta = _craft_training(
                strategy, learner, nets, x_g, pred[g], norm_col, sigma_x[g], craft_budget, cfg, seed * 31 + gi
            )
            tr_delta, train_part = scale_training(
                tr_delta, learner.sigma_train[tr_idx], column=norm_col, budgets=tt, sigma_x=sigma_x[g]
            )
        x_tr = learner.x_train
        if len(tr_idx):
            x_tr = learner.x_train.clone()
            x_tr[torch.as_tensor(tr_idx)] += tr_delta
        s_train, s_x_after = learner.sigma_train, sigma_x[g]
        if part != "input":
            if column == RESIGMA:
                s_train, _ = learner.resigma(x_tr, tr_idx, x_g)
            model = learner.retrain(x_tr, s_train, f"{strategy}-{column}-c{c:g}-g{gi}")
        if part != "training":
            ib = input_budget(total[g], train_part, sigma_x[g])
            x_g = x_g + pgd_smoothed(
                model.surrogates() if model is not learner else nets,
                x_g,
                pred[g],
                sigma_x[g],
                ib,
                steps=cfg.pgd_steps,
                draws=cfg.pgd_draws,
                seed=seed * 37 + gi,
            ).to(x_g.dtype)
        if column == RESIGMA:
            _, s_x_after = learner.resigma(x_tr, tr_idx, x_g)
        after = model.predict(ids[g], x_g, s_x_after)
        tn = _norms(tr_delta)
        for jj, j in enumerate(g):
            xn = float((x_g[jj] - x_points[j]).double().norm())
            w = train_weights(norm_col, learner.sigma_train[tr_idx], sigma_x[j])
            col_norm = float(np.sqrt(np.sum((tn * w) ** 2) + (xn / sigma_x[j]) ** 2))
            sound = weighted_norm(tn, learner.sigma_train[tr_idx], xn, sigma_x[j])
            new = int(after[jj])
            rows.append(
                {
                    "sample_id": int(ids[j]),
                    "strategy": strategy,
                    "part": part,
                    "column": column,
                    "factor": float(c),
                    "group": gi,
                    "group_size": len(g),
                    "r1": float(r1[j]),
                    "R": float(r1[j] * (sigma_min[j] if column != "radius_published" else sigma_x[j])),
                    "sigma_x": float(sigma_x[j]),
                    "sigma_x_after": float(np.asarray(s_x_after)[jj]),
                    "train_points_moved": len(tn),
                    "l2_norm": float(np.sqrt(np.sum(tn**2) + xn**2)),
                    "column_norm": col_norm,
                    "norm_over_budget": col_norm / float(total[j]),
                    "sigma_norm_over_r1": sound / float(r1[j]),
                    "prediction_before": int(pred[j]),
                    "prediction_after": new,
                    "abstained_after": new == ABSTAIN,
                    "flipped": new not in (ABSTAIN, int(pred[j])),
                }
            )
    return rows


def break_factor(ladder: Sequence[dict], stop_rate: float = 0.1) -> float | None:
    """The smallest factor c whose flip rate reaches ``stop_rate``; None when no rung does."""
    hits = [r["factor"] for r in ladder if r["points"] and r["flips"] / r["points"] >= stop_rate]
    return min(hits) if hits else None


def _best(per: dict, parts: tuple[str, ...]) -> float | None:
    got = [v["break_factor"] for v in per.values() if v["part"] in parts and v["break_factor"] is not None]
    return min(got) if got else None


def _fmt(c: float | None, top: float) -> str:
    return f"c = {c:g}" if c is not None else f"not broken up to c = {top:g}"


def summarise(report: pd.DataFrame, alpha: float, factors: Sequence[float], stop_rate: float = 0.1) -> dict:
    """Per column x strategy: the ladder (per factor: points, flips, flip rate, abstentions, retrains, the
    expectation bound 2 alpha n of a sound certificate, a one-sided binomial p-value of the flips against
    2 alpha only when every point had its own retrain, and the norm used over the budget) and the
    ``break_factor``; per column the break factor over all strategies, the training-only and the input-only
    ones, and a one-line reading of the audit's power."""
    factors = check_factors("factors", list(factors))
    top = max(factors)
    out: dict = {
        "alpha": alpha,
        "flip_bound_per_point": min(1.0, 2 * alpha),
        "factors": factors,
        "stop_rate": stop_rate,
        "columns": {},
        "break_factor": {},
        "power": {},
    }
    for (column, strategy), g in report.groupby(["column", "strategy"], sort=True):
        ladder = []
        for c, r in g.groupby("factor", sort=True):
            n, flips = len(r), int(r["flipped"].sum())
            own = bool((r["group_size"] == 1).all()) and r["part"].iloc[0] != "input"
            ladder.append(
                {
                    "factor": float(c),
                    "points": n,
                    "flips": flips,
                    "flip_rate": flips / n if n else 0.0,
                    "abstained_after": int(r["abstained_after"].sum()),
                    "retrains": 0 if r["part"].iloc[0] == "input" else int(r["group"].nunique()),
                    "expected_flips_bound": min(1.0, 2 * alpha) * n,
                    "independent": own,
                    "p_value_2alpha": float(
                        binomtest(flips, n, min(1.0, 2 * alpha), alternative="greater").pvalue
                    )
                    if own and n
                    else None,
                    "norm_over_budget_min": float(r["norm_over_budget"].min()),
                    "norm_over_budget_max": float(r["norm_over_budget"].max()),
                    "sigma_norm_over_r1_max": float(r["sigma_norm_over_r1"].max()),
                }
            )
        out["columns"].setdefault(column, {})[strategy] = {
            "part": str(g["part"].iloc[0]),
            "break_factor": break_factor(ladder, stop_rate),
            "ladder": ladder,
        }
    for column, per in out["columns"].items():
        kinds = (
            ("any", ("input", "training", "both")),
            ("training_only", ("training",)),
            ("input_only", ("input",)),
        )
        bf = {name: _best(per, parts) for name, parts in kinds}
        out["break_factor"][column] = bf
        inside = [lv for v in per.values() for lv in v["ladder"] if lv["factor"] < 1]
        f_in, n_in = sum(lv["flips"] for lv in inside), sum(lv["points"] for lv in inside)
        out[f"flips_inside_{column}"] = f_in
        out["power"][column] = (
            f"{column}: {f_in}/{n_in} flips inside (c < 1); first broken at {_fmt(bf['any'], top)} "
            f"(training only: {_fmt(bf['training_only'], top)}; input only: {_fmt(bf['input_only'], top)})"
        )
    return out
