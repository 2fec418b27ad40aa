"""Thin nodes of the modelling pipeline: parameter blocks and artifacts in, ``certssb.core`` / ``execution``
calls, artifacts out.

A trained model artifact (pilot, undefended, ensemble) is a dict with the stacked parameters of its
members (``params[name]`` has shape ``(M, ...)``), what is needed to rebuild them (``architecture``,
``in_shape``, ``num_classes``) and the fingerprints of the data, plan and sigma it was trained on, which
evaluation checks before certifying.
"""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch

from certssb.core import ensemble, noise
from certssb.execution import training
from certssb.core.ensemble import TrainConfig, load_member
from certssb.core.sigma import optimise_splits, sigma_config
from certssb.core.splits import tensor_fingerprint
from certssb.core.validation import ConfigError
from certssb.progress import progress_bar

log = logging.getLogger(__name__)


def _check_plan(poisoned_train: dict[str, Any], plan: dict[str, Any]) -> None:
    if plan.get("poisoned_train") != poisoned_train["fingerprint"]:
        raise ConfigError(
            "noise_plan was made for another poisoned_train (fingerprints "
            f"{plan.get('poisoned_train')} vs {poisoned_train['fingerprint']}): rerun "
            "`kedro run --pipelines=data_engineering`"
        )


def _model_artifact(result: ensemble.ChunkResult, cfg: TrainConfig, x: torch.Tensor, c: int,
                    **extra: Any) -> dict[str, Any]:
    return {
        "architecture": cfg.architecture, "in_shape": list(x.shape[1:]), "num_classes": c,
        "params": result.params, "model_indices": torch.tensor(result.indices), "train_config": dict(cfg.__dict__),
        **extra,
    }


def _train_single(poisoned_train: dict[str, Any], plan: dict[str, Any], model: dict[str, Any], device: str,
                  name: str, noisy: bool, epochs: int | None = None) -> dict[str, Any]:
    _check_plan(poisoned_train, plan)
    cfg = TrainConfig(**{**model, **({"epochs": epochs} if epochs else {})})
    x, y, c = poisoned_train["x"], poisoned_train["y"], poisoned_train["num_classes"]
    res = ensemble.train_one(x, y, torch.full((x.shape[0],), plan["sigma0"]), noise.auxiliary_plan(plan, name), 0,
                             cfg, c, ensemble.resolve_device(device), noise=noisy)
    log.info("%s model: final %s accuracy %.3f", name, "noisy-train" if noisy else "train",
             res.log[-1]["noisy_train_accuracy"])
    return _model_artifact(res, cfg, x, c, poisoned_train=poisoned_train["fingerprint"], sigma0=plan["sigma0"],
                           noisy=noisy, log=res.log)


def train_pilot(poisoned_train: dict[str, Any], noise_plan: dict[str, Any], model: dict[str, Any],
                pilot: dict[str, Any], device: str) -> dict[str, Any]:
    """One base classifier trained on the poisoned set with uniform sigma_0 noise (Cert-SSB's pilot)."""
    return _train_single(poisoned_train, noise_plan, model, device, "pilot", True, pilot["epochs"])


def train_undefended(poisoned_train: dict[str, Any], noise_plan: dict[str, Any], model: dict[str, Any],
                     device: str) -> dict[str, Any]:
    """The undefended reference: the same architecture trained on the poisoned set without noise."""
    return _train_single(poisoned_train, noise_plan, model, device, "undefended", False)


def optimise_sigma(
    method: str, pilot_model: dict[str, Any], poisoned_train: dict[str, Any], clean_test: dict[str, Any],
    triggered_test: dict[str, Any], noise_plan: dict[str, Any], sigma_opt: dict[str, Any], device: str, seed: int,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """sigma per training sample and per (clean and triggered) test sample.

    ``uniform``: sigma_0 everywhere. ``cert_ssb``: gradient ascent on the pilot model (training samples
    anchored at their, possibly poisoned, label; test samples at the pilot's smoothed prediction).
    """
    _check_plan(poisoned_train, noise_plan)
    sigma0 = float(noise_plan["sigma0"])
    sets = {"train": (poisoned_train["x"], poisoned_train["y"]), "clean": (clean_test["x"], None),
            "triggered": (triggered_test["x"], None)}
    if method == "uniform":
        sigmas = {s: torch.full((x.shape[0],), sigma0) for s, (x, _) in sets.items()}
        history = [{"split": s, "anchor": -1, "sigma": v} for s, v in sigmas.items()]
    else:
        net = load_member(pilot_model["architecture"], pilot_model["in_shape"], pilot_model["num_classes"],
                          pilot_model["params"], 0, ensemble.resolve_device(device))
        with progress_bar(sum(x.shape[0] for x, _ in sets.values()), "cert_ssb: sigma per sample") as bar:
            sigmas, history = optimise_splits(net, sets, sigma0, sigma_config(sigma_opt, sigma0), seed=seed,
                                              progress=bar.update)
    return _sigma_artifact(method, sigma0, sigmas, poisoned_train, clean_test, triggered_test, noise_plan), \
        pd.concat([pd.DataFrame({"sample_id": range(len(h["sigma"])), "sigma0": sigma0, **h}) for h in history],
                  ignore_index=True)


def _sigma_artifact(method: str, sigma0: float, sigmas: dict[str, torch.Tensor], poisoned_train: dict[str, Any],
                    clean_test: dict[str, Any], triggered_test: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    for split, s in sigmas.items():
        log.info("%s sigma (%s): mean %.3f in [%.3f, %.3f]", method, split, float(s.mean()), float(s.min()),
                 float(s.max()))
    return {"method": method, "sigma0": sigma0, **sigmas,
            "fingerprint": tensor_fingerprint(sigmas["train"], sigmas["clean"], sigmas["triggered"], extra=method),
            "inputs": {"poisoned_train": poisoned_train["fingerprint"], "clean_test": clean_test["fingerprint"],
                       "triggered_test": triggered_test["fingerprint"], "noise_plan": plan["fingerprint"]}}


def train_ensemble(
    method: str, poisoned_train: dict[str, Any], sigma: dict[str, Any], noise_plan: dict[str, Any],
    model: dict[str, Any], ensemble_params: dict[str, Any], device: str,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """M models, model k on the poisoned set plus the noise of copy k scaled by each sample's sigma."""
    _check_plan(poisoned_train, noise_plan)
    if sigma["inputs"]["poisoned_train"] != poisoned_train["fingerprint"]:
        raise ConfigError(f"{method}.sigma was computed for another poisoned_train: rerun the modelling pipeline")
    cfg, e, m = TrainConfig(**model), ensemble_params, noise_plan["num_models"]
    x, y, c = poisoned_train["x"], poisoned_train["y"], poisoned_train["num_classes"]
    with progress_bar(m, f"{method}: training {m} models") as bar:
        result, fp = training.train_ensemble(
            x, y, sigma["train"], noise_plan, cfg, num_classes=c, data_fingerprint=poisoned_train["fingerprint"],
            backend=e["backend"], device=device, chunk_size=e["chunk_size"],
            checkpoint_dir=e.get("checkpoint_dir"), ray_options=e.get("ray"), progress=bar.update,
        )
    art = _model_artifact(result, cfg, x, c, method=method, fingerprint=fp, backend=e["backend"],
                          poisoned_train=poisoned_train["fingerprint"], noise_plan=noise_plan["fingerprint"],
                          sigma=sigma["fingerprint"])
    log_df = pd.DataFrame(result.log)
    return art, log_df, _training_metrics(method, log_df)


def _training_metrics(method: str, log_df: pd.DataFrame) -> dict[str, Any]:
    """The last epoch's loss and noisy-train accuracy in kedro-mlflow's metrics-history format."""
    last = log_df[log_df["epoch"] == log_df["epoch"].max()]
    out: dict[str, Any] = {
        "loss_mean": {"value": float(last["loss"].mean()), "step": 0},
        "noisy_train_accuracy_mean": {"value": float(last["noisy_train_accuracy"].mean()), "step": 0},
        "noisy_train_accuracy_min": {"value": float(last["noisy_train_accuracy"].min()), "step": 0},
    }
    for key in ("loss", "noisy_train_accuracy"):
        out[key] = [{"value": float(v), "step": int(k)} for k, v in zip(last["model"], last[key])]
    log.info("%s ensemble: %d models, mean noisy-train accuracy %.3f", method, len(last),
             out["noisy_train_accuracy_mean"]["value"])
    return out
