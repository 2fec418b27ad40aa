"""Thin nodes of the data_engineering pipeline: unpack parameters, call ``certssb.io`` and
``certssb.core``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch

from certssb.config import AttackBlock, DataBlock, EvaluationBlock, NoiseBlock, core_errors, estimation_models
from certssb.core import certify, noise, poisoning
from certssb.core.splits import stratified_subsample, tensor_fingerprint
from certssb.core.summary import poison_summary
from certssb.core.triggers import trigger_options
from certssb.core.validation import ConfigError
from certssb.io import prepare_dataset

log = logging.getLogger(__name__)


@core_errors("data")
def download(data: DataBlock, seed: int) -> dict[str, Any]:
    """Load ``data.dataset`` (offline default: the embedded MNIST subset) and split it (seeded)."""
    out = prepare_dataset(
        data.dataset,
        root=data.root,
        local_path=data.local_path,
        classes=data.classes,
        test_fraction=data.test_fraction,
        max_train=data.max_train,
        max_test=data.max_test,
        seed=seed,
        download=data.download,
    )
    log.info(
        "%s: %d train / %d test images of shape %s, %d classes",
        out["dataset"],
        len(out["y_train"]),
        len(out["y_test"]),
        tuple(out["x_train"].shape[1:]),
        out["num_classes"],
    )
    return out


def collapse_share(attack: AttackBlock, noise_params: NoiseBlock, evaluation: EvaluationBlock) -> float:
    """``attack.collapse_share``, or (null) the share for the poisoning certifiers' estimation votes
    (``M - n0`` with selection split, else ``M``) at ``evaluation.alpha`` (certssb.core.certify). One poisoned
    set serves every certifier of a run; for ``cohen`` (N estimation draws) set the share, e.g. 0.434 for
    N = 1,000, or run it alone."""
    if attack.collapse_share is not None:
        return float(attack.collapse_share)
    return certify.collapse_share(estimation_models(noise_params, evaluation), evaluation.alpha)


@core_errors("attack", "data", "evaluation")
def poison(
    raw_dataset: dict[str, Any],
    data: DataBlock,
    attack: AttackBlock,
    seed: int,
    noise_params: NoiseBlock,
    evaluation: EvaluationBlock,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Poison the training split and build the clean and triggered test sets that are certified.

    Returns ``poisoned_train``, ``clean_test`` (a stratified, seeded subset of ``data.certify_size``
    test images), ``triggered_test`` (its non-target images with the test-time trigger), the per-sample
    ``poison_report`` and the ``poison_summary``: counts, realised norms, the joint l2 norm ``||Delta||``,
    ``label_mode``, ``label_changes``, ``inserted``, ``feature_norm`` (l2 norm of the training-feature
    perturbation), ``in_threat_model`` (no label changed and nothing inserted: only then can a certificate
    cover the attack), and the touched training positions with their realised norms
    (``train_poisoned_index``, ``train_poisoned_norms``) for the Sigma-weighted norm in evaluation.
    """
    c = raw_dataset["num_classes"]
    name = attack.name
    if name in poisoning.TRIGGERS and not 0 <= attack.target < c:
        raise ConfigError(
            f"parameter 'attack.target' = {attack.target!r} is invalid: must be a class in [0, {c - 1}]"
        )
    x, y = raw_dataset["x_train"], raw_dataset["y_train"]
    certifier_labels = attack.certifier_labels
    runner_up = name == "radius_collapse" and certifier_labels == "runner_up"
    scores = poisoning.class_mean_scores(x, y, c) if runner_up else None
    label_mode = attack.label_mode
    share = None
    if name == "radius_collapse" and certifier_labels == "split":
        share = collapse_share(attack, noise_params, evaluation)
    res = poisoning.poison(
        x,
        y,
        attack=name,
        poison_rate=attack.poison_rate,
        target=attack.target,
        delta=attack.delta,
        num_classes=c,
        seed=seed,
        trigger=attack.trigger,
        scores=scores,
        label_mode=label_mode,
        certifier_labels=certifier_labels,
        split_share=share,
        **poisoning.key_options(attack),
        **trigger_options(attack),
    )
    keep = stratified_subsample(raw_dataset["y_test"], data.certify_size, seed)
    xt, yt = raw_dataset["x_test"][keep], raw_dataset["y_test"][keep]
    trig = poisoning.attack_trigger(name, attack.trigger)
    target = attack.target if name in poisoning.TRIGGERS else None
    if trig is None:  # attack "none": the triggered test set uses the configured trigger (no poison)
        trig = attack.trigger
        target = attack.target
    keyed = name in poisoning.CERTIFIER_ATTACKS and certifier_labels == "keyed"
    triggered = poisoning.make_triggered_test(
        xt,
        yt,
        trigger=trig,
        delta=attack.delta,
        target=target,
        key_size=attack.key_size if keyed else None,
        **trigger_options(attack),
    )
    lineage = {
        "raw_dataset": raw_dataset["fingerprint"],
        "attack": attack.model_dump(exclude_unset=True),  # the block as configured
        "seed": seed,
    }
    poisoned_train = {
        "x": res.x,
        "y": res.y,
        "poison_index": res.indices,
        "num_classes": c,
        "class_names": raw_dataset["class_names"],
        "fingerprint": tensor_fingerprint(res.x, res.y),
        **lineage,
    }
    clean_test = {
        "x": xt,
        "y": yt,
        "source_index": keep,
        "num_classes": c,
        "fingerprint": tensor_fingerprint(xt, yt),
        **lineage,
    }
    triggered["target_y"] = triggered["target_y"].to(torch.int64)
    triggered_test = {
        **triggered,
        "num_classes": c,
        "trigger": trig,
        "fingerprint": tensor_fingerprint(triggered["x"], triggered["y"]),
        **lineage,
    }
    summary = {
        **poison_summary(
            res,
            attack=name,
            trigger=trig,
            poison_rate=attack.poison_rate,
            target=target,
            delta=attack.delta,
            n_clean_test=int(yt.numel()),
            triggered_norms=triggered["norms"],
            certifier_labels=certifier_labels if name in poisoning.CERTIFIER_ATTACKS else None,
            collapse_share=share,
        ),
        "poisoned_train": poisoned_train["fingerprint"],  # lineage: evaluation checks it against the votes
    }
    log.info(
        "attack %s (%s labels): %d of %d training samples poisoned, feature norm %.3f, joint norm "
        "||Delta|| = %.3f, %d labels changed, %d inserted: %s",
        name,
        res.label_mode,
        summary["n_poisoned"],
        summary["n_train"],
        summary["train_joint_norm"],
        summary["joint_norm"],
        res.label_changes,
        res.inserted,
        summary["threat_model"],
    )
    return poisoned_train, clean_test, triggered_test, pd.DataFrame(res.report()), summary


def poison_metrics(poison_summary: dict[str, Any]) -> dict[str, float]:
    """The numeric part of the poison summary, in kedro-mlflow's metrics format."""
    keys = (
        "n_poisoned",
        "train_joint_norm",
        "test_trigger_norm_max",
        "joint_norm",
        "train_trigger_norm_mean",
        "label_changes",
        "inserted",
        "in_threat_model",
    )
    return {k: {"value": float(poison_summary[k]), "step": 0} for k in keys}


@core_errors("noise")
def make_noise_plan(
    poisoned_train: dict[str, Any], noise_params: NoiseBlock, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The noise plan (seeds per model copy and test stream, sigma_0) and an optional small preview."""
    x = poisoned_train["x"]
    plan = noise.make_noise_plan(
        seed=seed,
        num_models=noise_params.num_models,
        sigma=noise_params.sigma,
        num_draws=noise_params.num_draws,
        n_train=x.shape[0],
        input_shape=tuple(x.shape[1:]),
        poisoned_train=poisoned_train["fingerprint"],
    )
    return plan, noise.materialise(x, plan, noise_params.materialise)
