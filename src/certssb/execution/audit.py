"""Running the audit of one method's certificates (the math is in ``certssb.core.audit``): pick certified
clean test points, craft each strategy's perturbation inside each radius column, retrain the ensemble on the
perturbed training set with the SAME noise plan (only Delta differs), re-vote on the perturbed test set with
the same input noise, re-certify with the same settings, and record what changed."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from certssb.core import audit, triggers
from certssb.core.certify import ABSTAIN, certify
from certssb.core.ensemble import TrainConfig, load_member, resolve_device
from certssb.core.splits import tensor_fingerprint
from certssb.core.precision import model_precision
from certssb.core.votes import predict_votes
from certssb.execution.training import train_ensemble

log = logging.getLogger(__name__)
REPORT_COLUMNS = ["sample_id", "strategy", "column", "R", "r1", "sigma_x", "train_points_moved", "l2_norm",
                  "weighted_norm", "sigma_norm_over_r1", "prediction_before", "prediction_after",
                  "abstained_after", "flipped"]


def select_points(clean: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` certified clean rows (not abstained, radius > 0), stratified by prediction, seeded."""
    ok = clean[~clean["abstained"].astype(bool) & (clean["radius"] > 0)]
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(g.index.to_numpy()) for _, g in ok.groupby("prediction", sort=True)]
    picked = [g[rank] for rank in range(max((len(g) for g in groups), default=0)) for g in groups if rank < len(g)]
    return np.sort(np.asarray(picked[:n], dtype=np.int64))


def _trigger_pattern(attack: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    name = attack["name"] if attack["name"] in triggers.TRIGGERS else attack["trigger"]
    kw = {k: attack[k] for k in triggers.TRIGGER_DEFAULTS if k in attack}
    p = triggers.trigger_perturbation(name, tuple(x.shape[1:]), 1.0, **kw)
    return p if p is not None else (triggers.apply_trigger(x[:1], name, 1.0, **kw)[0] - x[:1])[0]


def _loss_grad(pilot: dict[str, Any], device: torch.device):
    net = load_member(pilot["architecture"], pilot["in_shape"], pilot["num_classes"], pilot["params"], 0, device)

    def grad(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        xg = x.to(device).clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(net(xg), labels.to(device), reduction="sum")
        (g,) = torch.autograd.grad(loss, xg)
        return g.cpu()

    return grad


def audit_method(ensemble: dict[str, Any], certificates: pd.DataFrame, sigma: dict[str, Any], plan: dict[str, Any],
                 train: dict[str, Any], test: dict[str, Any], pilot: dict[str, Any], params: dict[str, Any], *,
                 model: dict[str, Any], ensemble_params: dict[str, Any], evaluation: dict[str, Any],
                 attack: dict[str, Any], device: str) -> pd.DataFrame:
    """One row per audited point x strategy x radius column (see ``certssb.core.audit``)."""
    quick = bool(params.get("quick"))
    clean = certificates[certificates["split"] == "clean"].reset_index(drop=True)
    points = select_points(clean, params["quick_points"] if quick else params["points"], params["seed"])
    method = ensemble["method"]
    columns = [c for c in params["columns"] if method == "cert_ssb" or c == "radius"]  # uniform: the same radius
    strategies = params["quick_strategies"] if quick else params["strategies"]
    dev = resolve_device(device)
    s_train, s_x = sigma["train"].numpy(), sigma["clean"].numpy()
    pattern, grad = _trigger_pattern(attack, test["x"]), _loss_grad(pilot, dev)
    # retrained at the ensemble's own precision (core.precision), as its votes are
    cfg, e = TrainConfig(**model, precision=model_precision(ensemble.get("train_config"))), evaluation
    rows = []
    batch = max(1, int(params["batch_points"]))
    for strategy in strategies:
        for column in columns:
            for b in range(0, len(points), batch):
                pts = points[b:b + batch]
                pred = clean["prediction"].to_numpy()[pts]
                idx, tdir, xdir, share = audit.craft(strategy, test["x"][pts], pred, train["x"], train["y"], s_train,
                                                     k=params["k"], trigger=pattern, loss_grad=grad)
                atk = audit.scale_to_budget(idx, tdir, xdir, r1=clean["r1"].to_numpy()[pts], sigma_train=s_train,
                                            sigma_x=s_x[pts], column=column, fraction=params["fraction"],
                                            train_share=share)
                x_tr, x_te = train["x"].clone(), test["x"].clone()
                x_tr[torch.as_tensor(atk.train_index)] += atk.train_delta
                x_te[torch.as_tensor(pts)] += atk.test_delta
                result, _ = train_ensemble(
                    x_tr, train["y"], sigma["train"], plan, cfg, num_classes=train["num_classes"],
                    data_fingerprint=tensor_fingerprint(x_tr, train["y"]), backend=ensemble_params["backend"],
                    device=device, chunk_size=ensemble_params["chunk_size"],
                    checkpoint_dir=None if quick else params.get("checkpoint_dir"))
                retrained = {**ensemble, "params": result.params, "model_indices": torch.tensor(result.indices)}
                v = predict_votes(retrained, x_te, sigma["clean"], plan, "clean", device=dev,
                                  model_chunk=e["model_chunk"])
                after = certify(v["votes"].numpy(), v["probs"].numpy(), s_x, labels=test["y"].numpy(),
                                num_classes=test["num_classes"], bound=e["bound"], aggregation=e["aggregation"],
                                alpha=e["alpha"], selection=e["selection"], n0=e["n0"],
                                alpha_split=e["alpha_split"], sigma_min=np.minimum(s_x, s_train.min()))
                tn = atk.train_delta.double().flatten(1).norm(dim=1).numpy()
                for j, p in enumerate(pts):
                    xn = float(atk.test_delta[j].double().norm())
                    w = s_train[atk.train_index] if column == "radius" else np.full(len(tn), s_x[p])
                    new = int(after["prediction"].iloc[p])
                    rows.append({"sample_id": int(p), "strategy": strategy, "column": column,
                                 "R": float(clean[column].iloc[p]), "r1": float(clean["r1"].iloc[p]),
                                 "sigma_x": float(s_x[p]), "train_points_moved": len(tn),
                                 "l2_norm": float(np.sqrt(np.sum(tn ** 2) + xn ** 2)),
                                 "weighted_norm": audit.weighted_norm(tn, w, xn, s_x[p]),
                                 # ||Delta||_Sigma with every point's own sigma (> 1: outside the sound region)
                                 "sigma_norm_over_r1": audit.weighted_norm(tn, s_train[atk.train_index], xn, s_x[p])
                                 / float(clean["r1"].iloc[p]),
                                 "prediction_before": int(pred[j]), "prediction_after": new,
                                 "abstained_after": new == ABSTAIN, "flipped": new not in (ABSTAIN, int(pred[j]))})
                log.info("audit %s: %s on %s, %d point(s): %d flipped", method, strategy, column, len(pts),
                         sum(r["flipped"] for r in rows[-len(pts):]))
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)
