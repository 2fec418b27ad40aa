"""Thin nodes of the modelling pipeline: parameter blocks and artifacts in, ``certssb.core`` / ``execution``
calls, artifacts out.

The artifacts are the dicts of ``certssb.core.artifacts``: the nodes read their inputs as views
(``SplitData``, ``NoisePlan``, ``SigmaArtifact``), check their lineage (``require_same``) and return
``SigmaArtifact`` / ``ModelArtifact`` as dicts. A trained model artifact (pilot, undefended, ensemble) holds
the stacked parameters of its members (``params[name]`` has shape ``(M, ...)``), what is needed to rebuild
them and the fingerprints of the data, plan and sigma it was trained on, which evaluation checks before
certifying.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pandas as pd
import torch

from certssb.config import (
    EnsembleBlock,
    ModelBlock,
    PilotBlock,
    SigmaOptBlock,
    core_errors,
    sigma_config,
    train_config,
)
from certssb.core import ensemble, noise
from certssb.core.artifacts import ModelArtifact, NoisePlan, SigmaArtifact, SplitData, require_same
from certssb.core.ensemble import TrainConfig, load_member
from certssb.core.precision import model_precision, resolve_precision
from certssb.core.sigma import optimise_splits
from certssb.execution import training
from certssb.reporting.progress import progress_bar

log = logging.getLogger(__name__)


def _train_and_plan(
    poisoned_train: dict[str, Any], noise_plan: dict[str, Any]
) -> tuple[SplitData, NoisePlan]:
    """The views of the training set and the noise plan, which must have been made for it."""
    data, plan = SplitData.from_dict(poisoned_train, "poisoned_train"), NoisePlan.from_dict(noise_plan)
    require_same("noise_plan", "poisoned_train", plan.poisoned_train, data.fingerprint)
    return data, plan


def _model_artifact(
    result: ensemble.ChunkResult,
    cfg: TrainConfig,
    data: SplitData,
    trained_by: str = "sequential",
    ray_options: dict[str, Any] | None = None,
    **lineage: Any,
) -> ModelArtifact:
    """The artifact; its ``train_config`` holds the config and the thread count and training-code version the
    models were trained with (``certssb.execution.training.provenance``)."""
    return ModelArtifact(
        architecture=cfg.architecture,
        in_shape=list(data.x.shape[1:]),
        num_classes=data.num_classes,
        params=result.params,
        model_indices=torch.tensor(result.indices),
        train_config={**cfg.__dict__, **training.provenance(trained_by, ray_options)},
        **lineage,
    )


def _train_single(
    poisoned_train: dict[str, Any],
    noise_plan: dict[str, Any],
    model: ModelBlock,
    device: str,
    name: str,
    noisy: bool,
    epochs: int | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    data, plan = _train_and_plan(poisoned_train, noise_plan)
    cfg = train_config(model, epochs, resolve_precision(precision, device))
    res = ensemble.train_one(
        data.x,
        data.y,
        torch.full((data.x.shape[0],), plan.sigma0),
        noise.auxiliary_plan(noise_plan, name),
        0,
        cfg,
        data.num_classes,
        ensemble.resolve_device(device),
        noise=noisy,
    )
    log.info(
        "%s model: final %s accuracy %.3f",
        name,
        "noisy-train" if noisy else "train",
        res.log[-1]["noisy_train_accuracy"],
    )
    return _model_artifact(
        res, cfg, data, poisoned_train=data.fingerprint, sigma0=plan.sigma0, noisy=noisy, log=res.log
    ).to_dict()


@core_errors("pilot", "model")
def train_pilot(
    poisoned_train: dict[str, Any],
    noise_plan: dict[str, Any],
    model: ModelBlock,
    pilot: PilotBlock,
    device: str,
    precision: str | None = None,
) -> dict[str, Any]:
    """One base classifier trained on the poisoned set with uniform sigma_0 noise (Cert-SSB's pilot)."""
    return _train_single(poisoned_train, noise_plan, model, device, "pilot", True, pilot.epochs, precision)


@core_errors("model")
def train_undefended(
    poisoned_train: dict[str, Any],
    noise_plan: dict[str, Any],
    model: ModelBlock,
    device: str,
    precision: str | None = None,
) -> dict[str, Any]:
    """The undefended reference: the same architecture trained on the poisoned set without noise."""
    return _train_single(poisoned_train, noise_plan, model, device, "undefended", False, precision=precision)


def _optimised_sigmas(
    pilot_model: dict[str, Any],
    data: SplitData,
    sets: dict[str, Any],
    sigma0: float,
    sigma_opt: SigmaOptBlock,
    device: str,
    seed: int,
    precision: str | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    pilot = ModelArtifact.from_dict(pilot_model, "pilot_model")
    require_same("pilot_model", "poisoned_train", pilot.poisoned_train, data.fingerprint)
    at = model_precision(pilot.train_config)  # the pilot runs at the precision it was trained at
    if precision is not None:
        require_same("pilot_model", "parameter precision", at, resolve_precision(precision, device))
    net = load_member(
        pilot.architecture,
        pilot.in_shape,
        pilot.num_classes,
        pilot.params,
        0,
        ensemble.resolve_device(device),
    )
    with progress_bar(sum(x.shape[0] for x, _ in sets.values()), "cert_ssb: sigma per sample") as bar:
        return optimise_splits(
            net, sets, sigma0, sigma_config(sigma_opt, sigma0), seed=seed, progress=bar.update, precision=at
        )


@core_errors("sigma_opt", sigma0="noise.sigma")
def optimise_sigma(
    method: str,
    pilot_model: dict[str, Any],
    poisoned_train: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    noise_plan: dict[str, Any],
    sigma_opt: SigmaOptBlock,
    device: str,
    seed: int,
    precision: str | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """sigma per training sample and per (clean and triggered) test sample.

    ``uniform``, ``cohen``: sigma_0 everywhere. ``cert_ssb``: gradient ascent on the pilot model (training
    samples anchored at their, possibly poisoned, label; test samples at the pilot's smoothed prediction).
    """
    data, plan = _train_and_plan(poisoned_train, noise_plan)
    sigma0 = float(plan.sigma0)
    clean = SplitData.from_dict(clean_test, "clean_test")
    triggered = SplitData.from_dict(triggered_test, "triggered_test")
    sets = {"train": (data.x, data.y), "clean": (clean.x, None), "triggered": (triggered.x, None)}
    if method != "cert_ssb":
        sigmas = {s: torch.full((x.shape[0],), sigma0) for s, (x, _) in sets.items()}
        history = [{"split": s, "anchor": -1, "sigma": v} for s, v in sigmas.items()]
    else:
        sigmas, history = _optimised_sigmas(
            pilot_model, data, sets, sigma0, sigma_opt, device, seed, precision
        )
    log.info(
        "%s sigma: %s",
        method,
        "; ".join(  # one line per method
            f"{split} mean {float(s.mean()):.3f} in [{float(s.min()):.3f}, {float(s.max()):.3f}]"
            for split, s in sigmas.items()
        ),
    )
    inputs = {
        "poisoned_train": data.fingerprint,
        "clean_test": clean.fingerprint,
        "triggered_test": triggered.fingerprint,
        "noise_plan": plan.fingerprint,
    }
    report = pd.concat(
        [pd.DataFrame({"sample_id": range(len(h["sigma"])), "sigma0": sigma0, **h}) for h in history],
        ignore_index=True,
    )
    return SigmaArtifact.build(method, sigma0, sigmas, inputs).to_dict(), report


@core_errors("model", "ensemble")
def train_ensemble(
    method: str,
    poisoned_train: dict[str, Any],
    sigma: dict[str, Any],
    noise_plan: dict[str, Any],
    model: ModelBlock,
    ensemble_params: EnsembleBlock,
    device: str,
    precision: str | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """M models, model k on the poisoned set plus the noise of copy k scaled by each sample's sigma, at the
    resolved ``precision`` (recorded in ``train_config`` and the fingerprint)."""
    data, plan = _train_and_plan(poisoned_train, noise_plan)
    sig = SigmaArtifact.from_dict(sigma, f"{method}.sigma")
    require_same(f"{method}.sigma", "poisoned_train", sig.inputs.get("poisoned_train"), data.fingerprint)
    require_same(f"{method}.sigma", "noise_plan", sig.inputs.get("noise_plan"), plan.fingerprint)
    cfg = train_config(model, precision=resolve_precision(precision, device))
    e, m = ensemble_params, plan.num_models
    with progress_bar(m, f"{method}: training {m} models") as bar:
        result, fp = training.train_ensemble(
            data.x,
            data.y,
            sig.train,
            noise_plan,
            cfg,
            num_classes=data.num_classes,
            data_fingerprint=data.fingerprint,
            backend=e.backend,
            device=device,
            chunk_size=e.chunk_size,
            checkpoint_dir=e.checkpoint_dir,
            ray_options=e.ray,
            progress=bar.update,
        )
    art = _model_artifact(
        result,
        cfg,
        data,
        e.backend,
        e.ray,
        method=method,
        fingerprint=fp,
        backend=e.backend,
        poisoned_train=data.fingerprint,
        noise_plan=plan.fingerprint,
        sigma=sig.fingerprint,
    )
    log_df = pd.DataFrame(result.log)
    return art.to_dict(), log_df, _training_metrics(method, log_df)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@core_errors("model", epochs="cohen.epochs")
def train_smoothed_classifier(
    method: str,
    poisoned_train: dict[str, Any],
    sigma: dict[str, Any],
    noise_plan: dict[str, Any],
    model: ModelBlock,
    epochs: int,
    device: str,
    precision: str | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """``cohen``: ONE base classifier on the poisoned set with fresh Gaussian augmentation (sigma_0) on every
    batch, for ``cohen.epochs`` (certssb.core.smoothing); an ensemble artifact with one member."""
    data, plan = _train_and_plan(poisoned_train, noise_plan)
    sig = SigmaArtifact.from_dict(sigma, f"{method}.sigma")
    require_same(f"{method}.sigma", "poisoned_train", sig.inputs.get("poisoned_train"), data.fingerprint)
    cfg = train_config(model, epochs, resolve_precision(precision, device))
    res = ensemble.train_one(
        data.x,
        data.y,
        sig.train,
        noise.auxiliary_plan(noise_plan, method),
        0,
        cfg,
        data.num_classes,
        ensemble.resolve_device(device),
        augment=True,
    )
    fp = _digest(method, cfg.__dict__, sig.fingerprint, plan.fingerprint)
    art = _model_artifact(
        res,
        cfg,
        data,
        method=method,
        fingerprint=fp,
        backend="augmented",
        poisoned_train=data.fingerprint,
        noise_plan=plan.fingerprint,
        sigma=sig.fingerprint,
    )
    log_df = pd.DataFrame(res.log)
    return art.to_dict(), log_df, _training_metrics(method, log_df)


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
    log.info(
        "%s ensemble: %d models, mean noisy-train accuracy %.3f",
        method,
        len(last),
        out["noisy_train_accuracy_mean"]["value"],
    )
    return out
