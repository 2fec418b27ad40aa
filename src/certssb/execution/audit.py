"""Running the audit of one method's certificates (the ladder, the attacks and the statistics are in
``certssb.core.audit``): the real ensemble as a :class:`certssb.core.audit.Learner`. A retrain uses the SAME
noise plan (only Delta differs) and the checkpoint machinery (``audit.checkpoint_dir``: an interrupted audit
resumes; the attacks are seeded, so a rerun crafts the same Delta and finds its retrains there); the re-vote
uses the same input noise (the plan's stream of the clean test set, at the audited points' positions); the
re-certification the same settings."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from certssb.config import (
    SIGMA_METHODS,
    AuditBlock,
    EnsembleBlock,
    EvaluationBlock,
    ModelBlock,
    SigmaOptBlock,
    block_keys,
    sigma_config,
    train_config,
)
from certssb.core import audit
from certssb.core.certify import certify
from certssb.core.ensemble import load_member, resolve_device
from certssb.core.noise import test_unit_noise
from certssb.core.precision import autocast, model_precision
from certssb.core.sigma import optimise_sigma
from certssb.core.splits import tensor_fingerprint
from certssb.execution.training import train_ensemble

log = logging.getLogger(__name__)


def select_points(clean: pd.DataFrame, n: int | None, seed: int) -> np.ndarray:
    """Up to ``n`` (None: all) certified clean rows (not abstained, radius > 0), in a seeded order that
    alternates between the predicted classes (stratified)."""
    ok = clean[~clean["abstained"].astype(bool) & (clean["radius"] > 0)]
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(g.index.to_numpy()) for _, g in ok.groupby("prediction", sort=True)]
    depth = max((len(g) for g in groups), default=0)
    picked = [g[rank] for rank in range(depth) for g in groups if rank < len(g)]
    return np.asarray(picked[:n] if n is not None else picked, dtype=np.int64)


def audited_points(before: pd.DataFrame, n: int, selection: str, min_share: float) -> np.ndarray:
    """Positions (in ``before``'s stratified order) of the ``n`` audited points: certified by the audited
    models, and with ``selection: band`` inside the top budget band of both columns (R1 >= min_share x the
    largest R1, and sigma_x R1 >= min_share x the largest sigma_x R1: most certificates sit at the
    Clopper-Pearson ceiling), so one retrain per rung serves them all."""
    r1 = before["r1"].to_numpy()
    ok = (before["prediction"].to_numpy() >= 0) & (r1 > 0)
    if selection == "band" and ok.any():
        ok &= r1 >= min_share * r1[ok].max()
        pub = r1 * before["sigma"].to_numpy()
        ok &= pub >= min_share * pub[ok].max()
    return np.flatnonzero(ok)[:n]


class EnsembleLearner:
    """The method's smoothed ensemble (its first ``num_models`` members) on the audit's side."""

    def __init__(
        self,
        ensemble: dict[str, Any],
        params: dict[str, torch.Tensor],
        *,
        plan: dict[str, Any],
        train: dict[str, Any],
        test: dict[str, Any],
        sigma_train: np.ndarray,
        ctx: dict[str, Any],
    ):
        self.ensemble, self.params, self.plan, self.train, self.test, self.ctx = (
            ensemble,
            params,
            plan,
            train,
            test,
            ctx,
        )
        self.x_train, self.y_train = train["x"], train["y"]
        self.sigma_train = np.asarray(sigma_train, np.float64)
        self.m = next(iter(params.values())).shape[0]
        self.dev = resolve_device(ctx["device"])
        self._nets: list[torch.nn.Module] | None = None

    def _member(self, k: int) -> torch.nn.Module:
        e = self.ensemble
        return load_member(e["architecture"], e["in_shape"], e["num_classes"], self.params, k, self.dev)

    def surrogates(self) -> list[torch.nn.Module]:
        if self._nets is None:
            self._nets = [self._member(k) for k in range(min(self.ctx["surrogate_members"], self.m))]
        return self._nets

    def retrain(self, x_train: torch.Tensor, sigma_train: np.ndarray, tag: str) -> EnsembleLearner:
        c = self.ctx
        result, _ = train_ensemble(
            x_train,
            self.y_train,
            torch.as_tensor(sigma_train, dtype=torch.float32),
            self.plan,
            c["train_cfg"],
            num_classes=self.train["num_classes"],
            data_fingerprint=tensor_fingerprint(x_train, self.y_train),
            backend=c["backend"],
            device=c["device"],
            chunk_size=c["chunk_size"],
            checkpoint_dir=c["checkpoint_dir"],
            num_models=self.m,
        )
        log.info("audit %s: retrained %d models (%s)", self.ensemble["method"], self.m, tag)
        return EnsembleLearner(
            self.ensemble,
            result.params,
            plan=self.plan,
            train=self.train,
            test=self.test,
            sigma_train=sigma_train,
            ctx=c,
        )

    @torch.no_grad()
    def votes(self, ids: np.ndarray, x_points: torch.Tensor, sigma_x: np.ndarray) -> torch.Tensor:
        """(m, B, C) vote fractions of the points, each with its own input noise of the clean test set's
        stream (the noise ``predict_votes`` draws for sample ``ids[j]``)."""
        n, c = self.test["x"].shape[0], self.ensemble["num_classes"]
        idx = torch.as_tensor(ids)
        s = torch.as_tensor(np.asarray(sigma_x, np.float64), dtype=torch.float32).view(1, -1, 1, 1, 1)
        out = torch.empty(self.m, len(ids), c)
        for k in range(self.m):
            net = self._member(k)
            z = test_unit_noise(self.plan, k, "clean", n)[:, idx]  # (K, B, C, H, W)
            inp = (x_points.float().unsqueeze(0) + s * z).flatten(0, 1).to(self.dev)
            with autocast(self.ctx.get("precision", "float32"), self.dev):
                logits = net(inp).float()
            counts = torch.nn.functional.one_hot(logits.argmax(1), c).view(z.shape[0], len(ids), c).sum(0)
            out[k] = counts.float().cpu() / z.shape[0]
        return out

    def certify_points(self, ids: np.ndarray, x_points: torch.Tensor, sigma_x: np.ndarray) -> pd.DataFrame:
        v = self.votes(ids, x_points, sigma_x).numpy()
        e = self.ctx["evaluation"]
        sx = np.asarray(sigma_x, np.float64)
        return certify(
            v,
            v,
            sx,
            labels=self.test["y"].numpy()[ids],
            num_classes=self.test["num_classes"],
            bound=e.bound,
            aggregation="hard",
            alpha=e.alpha,
            selection=e.selection,
            n0=e.n0,
            alpha_split=e.alpha_split,
            sigma_train=self.sigma_train,
        )

    def predict(self, ids: np.ndarray, x_points: torch.Tensor, sigma_x: np.ndarray) -> np.ndarray:
        return self.certify_points(ids, x_points, sigma_x)["prediction"].to_numpy()

    def resigma(
        self, x_train: torch.Tensor, moved: np.ndarray, x_points: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cert-SSB's sigma on the perturbed data: the pilot's gradient ascent re-run on the moved training
        points (anchored at their labels; the others keep theirs: sigma_i depends on x_i only) and on the
        audited inputs (anchored at the pilot's prediction)."""
        c = self.ctx
        net, cfg, s0 = c["pilot_net"], c["sigma_cfg"], c["sigma0"]
        s_train = self.sigma_train.copy()
        if len(moved):
            mv = torch.as_tensor(moved)
            res = optimise_sigma(net, x_train[mv].float(), self.y_train[mv], s0, cfg, seed=c["seed"])
            s_train[moved] = res["sigma"].double().numpy()
        s_x = optimise_sigma(net, x_points.float(), None, s0, cfg, seed=c["seed"] + 1)["sigma"]
        return s_train, s_x.double().numpy()


def audit_keys(params: AuditBlock) -> dict[str, str]:
    """core.audit's argument names -> the audit's parameter keys (``config.core_names``): quick mode reads
    ``audit.quick_factors`` / ``quick_strategies``; ``selection`` is the audit's, ``alpha`` evaluation's."""
    q = "quick_" if params.quick else ""
    return block_keys(
        "audit",
        "model",
        "ensemble",
        "evaluation",
        "sigma_opt",
        factors=f"audit.{q}factors",
        strategies=f"audit.{q}strategies",
    )


def ladder_config(params: AuditBlock, method: str) -> audit.LadderConfig:
    """The ``audit`` block as a :class:`certssb.core.audit.LadderConfig` (quick mode: its quick_* fields;
    uniform sigma: one column, its two radii being equal, and no resigma)."""
    quick, sigma_method = params.quick, method in SIGMA_METHODS
    cols = tuple(c for c in params.columns if sigma_method or c == "radius")
    return audit.LadderConfig(
        factors=tuple(params.quick_factors if quick else params.factors),
        strategies=tuple(params.quick_strategies if quick else params.strategies),
        columns=cols,
        resigma=params.resigma and sigma_method,
        stop_rate=params.stop_rate,
        min_share=params.min_share,
        k=params.k,
        pgd_steps=params.pgd_steps,
        pgd_draws=params.pgd_draws,
        brew_steps=params.brew_steps,
        seed=params.seed,
    )


def audit_method(
    ensemble: dict[str, Any],
    certificates: pd.DataFrame,
    sigma: dict[str, Any],
    plan: dict[str, Any],
    train: dict[str, Any],
    test: dict[str, Any],
    pilot: dict[str, Any],
    params: AuditBlock,
    *,
    model: ModelBlock,
    ensemble_params: EnsembleBlock,
    evaluation: EvaluationBlock,
    sigma_opt: SigmaOptBlock,
    device: str,
) -> pd.DataFrame:
    """One row per audited point x strategy x column x rung of the ladder (see ``certssb.core.audit``)."""
    quick = params.quick
    method = ensemble["method"]
    cfg = ladder_config(params, method)
    clean = certificates[certificates["split"] == "clean"].reset_index(drop=True)
    m_all = len(ensemble["model_indices"])
    m = min(m_all, params.quick_num_models) if quick else m_all
    dev = resolve_device(device)
    ctx = {
        "device": device,
        "surrogate_members": params.surrogate_members,
        # retrained and re-voted at the ensemble's own precision (core.precision), as its votes were
        "precision": model_precision(ensemble.get("train_config")),
        "backend": ensemble_params.backend,
        "chunk_size": ensemble_params.chunk_size,
        "checkpoint_dir": params.checkpoint_dir,
        "evaluation": evaluation,
        "seed": params.seed,
        "sigma0": float(plan["sigma0"]),
    }
    ctx["train_cfg"] = train_config(model, precision=ctx["precision"])
    if cfg.resigma:
        ctx["pilot_net"] = load_member(
            pilot["architecture"], pilot["in_shape"], pilot["num_classes"], pilot["params"], 0, dev
        )
        ctx["sigma_cfg"] = sigma_config(sigma_opt, float(plan["sigma0"]))
    params_m = {k: v[:m] for k, v in ensemble["params"].items()}
    learner = EnsembleLearner(
        ensemble, params_m, plan=plan, train=train, test=test, sigma_train=sigma["train"].numpy(), ctx=ctx
    )
    pool = select_points(clean, None, params.seed)
    s_pool = sigma["clean"].numpy().astype(np.float64)[pool]
    before = learner.certify_points(pool, test["x"][pool], s_pool)  # = the persisted certificates when m = M
    keep = audited_points(
        before,
        params.quick_points if quick else params.points,
        params.selection,
        params.min_share,
    )
    if not len(keep):
        raise ValueError(
            f"audit {method}: no clean test point is certified by the first {m} models; raise "
            "audit.quick_num_models"
        )
    ids, before, s_x = pool[keep], before.iloc[keep].reset_index(drop=True), s_pool[keep]
    log.info(
        "audit %s: %d points, %d models, ladder %s, strategies %s, columns %s%s",
        method,
        len(ids),
        m,
        list(cfg.factors),
        list(cfg.strategies),
        list(cfg.columns),
        " + resigma" if cfg.resigma else "",
    )
    report = audit.audit_ladder(
        learner,
        ids,
        test["x"][ids],
        before["prediction"].to_numpy(),
        before["r1"].to_numpy(),
        s_x,
        cfg,
        sigma_min=before["sigma_min"].to_numpy(),
        log=lambda s: log.info("audit %s: %s", method, s),
    )
    report.insert(0, "method", method)
    report.insert(1, "models", m)
    return report
