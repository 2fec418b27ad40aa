"""Thin nodes of the modelling pipeline: unpack parameters, call ``certssb.core``.

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
from certssb.core.ensemble import load_member
from certssb.core.sigma import optimise_sigma as core_optimise_sigma
from certssb.core.data import tensor_fingerprint
from certssb.core.validation import ConfigError, choice
from certssb.params import METHODS, sigma_config, train_config
from certssb.progress import progress_bar

log = logging.getLogger(__name__)


def _check_plan(poisoned_train: dict[str, Any], plan: dict[str, Any]) -> None:
    if plan.get("poisoned_train") != poisoned_train["fingerprint"]:
        raise ConfigError(
            "noise_plan was made for another poisoned_train (fingerprints "
            f"{plan.get('poisoned_train')} vs {poisoned_train['fingerprint']}): rerun "
            "`kedro run --pipelines=data_engineering`"
        )


def _model_artifact(result: ensemble.ChunkResult, cfg: ensemble.TrainConfig, x: torch.Tensor, c: int,
                    **extra: Any) -> dict[str, Any]:
    return {
        "architecture": cfg.architecture, "in_shape": list(x.shape[1:]), "num_classes": c,
        "params": result.params, "model_indices": torch.tensor(result.indices), "train_config": dict(cfg.__dict__),
        **extra,
    }


def _train_single(poisoned_train: dict[str, Any], plan: dict[str, Any], params: dict[str, Any], name: str,
                  epochs: int, noisy: bool) -> dict[str, Any]:
    _check_plan(poisoned_train, plan)
    cfg = train_config(params, epochs)
    aux = noise.auxiliary_plan(plan, name)
    dev = ensemble.resolve_device(params["device"])
    x, y, c = poisoned_train["x"], poisoned_train["y"], poisoned_train["num_classes"]
    res = ensemble.train_one(x, y, torch.full((x.shape[0],), plan["sigma0"]), aux, 0, cfg, c, dev, noise=noisy)
    log.info("%s model: final noisy-train accuracy %.3f", name, res.log[-1]["noisy_train_accuracy"])
    return _model_artifact(res, cfg, x, c, poisoned_train=poisoned_train["fingerprint"], sigma0=plan["sigma0"],
                           noisy=noisy, log=res.log)


def train_pilot(poisoned_train: dict[str, Any], noise_plan: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """One base classifier trained on the poisoned set with uniform sigma_0 noise (Cert-SSB's pilot)."""
    return _train_single(poisoned_train, noise_plan, parameters, "pilot", parameters["pilot"]["epochs"], True)


def train_undefended(poisoned_train: dict[str, Any], noise_plan: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The undefended reference: the same architecture trained on the poisoned set without noise."""
    return _train_single(poisoned_train, noise_plan, parameters, "undefended", parameters["model"]["epochs"], False)


def optimise_sigma(
    method: str, pilot_model: dict[str, Any], poisoned_train: dict[str, Any], clean_test: dict[str, Any],
    triggered_test: dict[str, Any], noise_plan: dict[str, Any], parameters: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """sigma per training sample and per (clean and triggered) test sample.

    ``uniform``: sigma_0 everywhere (no optimisation). ``cert_ssb``: gradient ascent on the pilot model;
    training samples are anchored at their (possibly poisoned) label, test samples at the pilot's
    smoothed prediction.
    """
    choice("method", method, METHODS)
    _check_plan(poisoned_train, noise_plan)
    sigma0 = float(noise_plan["sigma0"])
    sets = {"train": (poisoned_train["x"], poisoned_train["y"]), "clean": (clean_test["x"], None),
            "triggered": (triggered_test["x"], None)}
    out: dict[str, Any] = {"method": method, "sigma0": sigma0}
    rows = []
    if method == "uniform":
        for split, (x, _) in sets.items():
            out[split] = torch.full((x.shape[0],), sigma0)
    else:
        cfg = sigma_config(parameters)
        dev = ensemble.resolve_device(parameters["device"])
        model = load_member(pilot_model["architecture"], pilot_model["in_shape"], pilot_model["num_classes"],
                            pilot_model["params"], 0, dev)
        total = sum(x.shape[0] for x, _ in sets.values())
        with progress_bar(total, "sigma optimisation (samples)") as bar:
            for i, (split, (x, anchor)) in enumerate(sets.items()):
                res = core_optimise_sigma(model, x, anchor, sigma0, cfg, seed=parameters["seed"] + i, progress=bar.update)
                out[split] = res["sigma"]
                r0, r1 = res["radius_history"][0], res["radius_history"][-1]
                rows.append(pd.DataFrame({
                    "split": split, "sample_id": range(x.shape[0]), "anchor": res["anchor"].numpy(),
                    "sigma0": sigma0, "sigma": res["sigma"].numpy(), "radius_estimate_initial": r0.numpy(),
                    "radius_estimate_final": r1.numpy(),
                }))
                log.info("cert_ssb sigma (%s): mean %.3f [%.3f, %.3f]; objective R %.3f -> %.3f", split,
                         float(res["sigma"].mean()), float(res["sigma"].min()), float(res["sigma"].max()),
                         float(r0.mean()), float(r1.mean()))
    if not rows:
        rows = [pd.DataFrame({"split": s, "sample_id": range(len(out[s])), "anchor": -1, "sigma0": sigma0,
                              "sigma": out[s].numpy(), "radius_estimate_initial": float("nan"),
                              "radius_estimate_final": float("nan")}) for s in sets]
    out["fingerprint"] = tensor_fingerprint(out["train"], out["clean"], out["triggered"], extra=method)
    out["inputs"] = {"poisoned_train": poisoned_train["fingerprint"], "clean_test": clean_test["fingerprint"],
                     "triggered_test": triggered_test["fingerprint"], "noise_plan": noise_plan["fingerprint"]}
    return out, pd.concat(rows, ignore_index=True)


def train_ensemble(
    method: str, poisoned_train: dict[str, Any], sigma: dict[str, Any], noise_plan: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """M models, model k on the poisoned set plus the noise of copy k scaled by each sample's sigma."""
    choice("method", method, METHODS)
    _check_plan(poisoned_train, noise_plan)
    if sigma["inputs"]["poisoned_train"] != poisoned_train["fingerprint"]:
        raise ConfigError(f"{method}.sigma was computed for another poisoned_train: rerun the modelling pipeline")
    cfg = train_config(parameters)
    e = parameters["ensemble"]
    x, y, c = poisoned_train["x"], poisoned_train["y"], poisoned_train["num_classes"]
    m = noise_plan["num_models"]
    with progress_bar(m, f"{method}: training {m} models") as bar:
        result, fp = ensemble.train_ensemble(
            x, y, sigma["train"], noise_plan, cfg, num_classes=c, data_fingerprint=poisoned_train["fingerprint"],
            backend=e["backend"], device=parameters["device"], chunk_size=e["chunk_size"],
            checkpoint_dir=e.get("checkpoint_dir"), ray_options=e.get("ray"), progress=bar.update,
        )
    art = _model_artifact(result, cfg, x, c, method=method, fingerprint=fp, backend=e["backend"],
                          poisoned_train=poisoned_train["fingerprint"], noise_plan=noise_plan["fingerprint"],
                          sigma=sigma["fingerprint"])
    log_df = pd.DataFrame(result.log)
    last = log_df[log_df["epoch"] == log_df["epoch"].max()]
    metrics = {
        "loss_mean": {"value": float(last["loss"].mean()), "step": 0},
        "noisy_train_accuracy_mean": {"value": float(last["noisy_train_accuracy"].mean()), "step": 0},
        "noisy_train_accuracy_min": {"value": float(last["noisy_train_accuracy"].min()), "step": 0},
        "loss": [{"value": float(v), "step": int(k)} for k, v in zip(last["model"], last["loss"])],
        "noisy_train_accuracy": [{"value": float(v), "step": int(k)}
                                 for k, v in zip(last["model"], last["noisy_train_accuracy"])],
    }
    log.info("%s ensemble: %d models, mean noisy-train accuracy %.3f", method, m,
             metrics["noisy_train_accuracy_mean"]["value"])
    return art, log_df, metrics
