"""The run's summary from its certificates: the certified-accuracy table (split x region x radius) and the
metrics a user compares across runs (docs/methods.md#what-a-certificate-claims, #certification).

Every headline number reads the sound ``radius`` (``sigma_min * r1``); Cert-SSB's published radius
(``sigma_x * r1``) appears beside it under keys containing ``published``, labelled as "not a poisoning
certificate". What the certificates say about the realised attack depends on the threat model: for a
label-preserving feature attack, the fraction of clean test samples whose certificate covers it in the
Sigma-weighted norm (``r1_j > ||Delta||_Sigma,j``); for a dirty-label or inserting attack, its feature norm,
label changes and insertions, marked "outside the certified threat model", and no fraction and no reach
(:data:`REACH_KEYS` are emitted only inside the threat model: outside it they would read as certified).

Metric keys carry no dots (``cert_acc_r050`` for r = 0.50, see :func:`certssb.core.metrics.radius_key`), so
an MLflow filter such as ``metrics.cert_acc_r050 > 0.5`` works without backticks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from certssb.core import certify, metrics, smoothing
from certssb.core.validation import ConfigError

log = logging.getLogger(__name__)
SPLITS = ("clean", "triggered")


def triggered_asr(pred: np.ndarray, triggered_test: dict[str, Any]) -> float | None:
    """ASR on the triggered set; None for attacks without a target class (the certifier attacks)."""
    tgt = triggered_test["target_y"].numpy()
    return metrics.attack_success_rate(pred, tgt) if len(tgt) and (tgt >= 0).all() else None


def _curve(table: pd.DataFrame, split: str, region: str) -> np.ndarray:
    """Certified accuracy at each radius of one (split, region) of the table, in radius order."""
    return table[(table.split == split) & (table.region == region)]["certified_accuracy"].to_numpy()


def member_accuracy(votes: dict[str, Any], data: dict[str, Any]) -> np.ndarray:
    """Per model, the mean over samples of the fraction of its draws that predict the true label."""
    f = certify.vote_fractions(votes["votes"].numpy(), data["num_classes"])
    y = data["y"].numpy()
    return f[:, np.arange(len(y)), y].mean(1)


PUBLISHED = "Cert-SSB as published (not a poisoning certificate)"
OUTSIDE = "outside the certified threat model"
INSIDE = "inside the certified threat model"


def poison_summary(
    res: Any,
    *,
    attack: str,
    trigger: str,
    poison_rate: float,
    target: int | None,
    delta: float,
    n_clean_test: int,
    triggered_norms: torch.Tensor,
    certifier_labels: str | None,
    collapse_share: float | None,
) -> dict[str, Any]:
    """What the attack did, for the reports: its size and norms, and whether it lies inside the certified
    threat model. ``res`` is a :class:`certssb.core.poisoning.PoisonResult`; ``triggered_norms`` the
    per-input norms of the triggered test set. The joint norm is
    ``||Delta|| = sqrt(sum_i ||delta_i||^2 + ||delta_test||^2)`` with the largest test-time trigger norm;
    the attack is inside the threat model only when no label changed and nothing was inserted."""
    test_norm = float(triggered_norms.max()) if len(triggered_norms) else 0.0
    train_norm = res.joint_norm(0.0)
    return {
        "attack": attack,
        "trigger": trigger,
        "poison_rate": poison_rate,
        "target": target,
        "delta": delta,
        "n_train": int(res.y.shape[0]),
        "n_poisoned": int(res.indices.numel()),
        "train_trigger_norm_mean": float(res.norms.mean()) if res.norms.numel() else 0.0,
        "train_joint_norm": train_norm,
        "test_trigger_norm_max": test_norm,
        "joint_norm": res.joint_norm(test_norm),
        "n_clean_test": n_clean_test,
        "n_triggered_test": int(len(triggered_norms)),
        "label_mode": res.label_mode,
        "label_changes": res.label_changes,
        "inserted": int(res.inserted),
        "certifier_labels": certifier_labels,
        "collapse_share": collapse_share,
        "feature_norm": train_norm,
        "in_threat_model": bool(res.in_threat_model),
        "threat_model": INSIDE if res.in_threat_model else OUTSIDE,
        "train_poisoned_index": [int(v) for v in res.indices.tolist()],
        "train_poisoned_norms": [float(v) for v in res.norms.tolist()],
    }


REACH_KEYS = ("attack_norm_covered", "attack_points_covered", "certificate_covers_test_trigger")
"""Metrics that say how much of the attack a certificate covers: emitted only for attacks inside the threat
model (label-preserving feature perturbations); for dirty-label or inserting attacks they are left out."""


def _reach(certificates: pd.DataFrame, poison_summary: dict[str, Any]) -> dict[str, Any]:
    """The median sound radius of the correctly certified clean inputs next to the attack's realised norms:
    the share of the attack's joint norm it covers and how many poisoned points of the attack's per-point norm
    it would cover with the test trigger (:func:`certssb.core.metrics.certificate_reach`). Only attacks inside
    the threat model keep the coverage keys (:data:`REACH_KEYS`, see :func:`attack_metrics`)."""
    clean = certificates[
        (certificates["split"] == "clean") & certificates["correct"] & ~certificates["abstained"]
    ]
    if len(clean) == 0:
        return {}
    r = float(clean["radius"].median())
    delta = (
        float(np.mean(poison_summary["train_poisoned_norms"]))
        if poison_summary["train_poisoned_norms"]
        else 0.0
    )
    joint = float(poison_summary["joint_norm"])
    out = {
        "certified_radius_median": r,
        "attack_point_norm": delta,
        "attack_norm_covered": min(r / joint, 1.0) if joint > 0 else 1.0,
    }
    if delta > 0:  # no poisoned point (attack 'none'): no count to give
        reach = metrics.certificate_reach(r, delta, float(poison_summary["test_trigger_norm_max"]))
        out["attack_points_covered"] = reach["points_covered"]
        out["certificate_covers_test_trigger"] = reach["covers_test_trigger"]
    return out


def certifier_attack_view(certs: pd.DataFrame) -> dict[str, float]:
    """What an attack on the certifier aims at (Lorenz et al.), on one split's certificates:
    ``median_radius_certified``, the median sound radius over the inputs that were not abstained on (0 when
    all were), and ``certified_wrong_rate``, the fraction of all inputs certified (not abstained) with a class
    other than their true label -- the integrity failure a plain backdoor causes, where the certificate
    vouches for the attacker's class."""
    held = certs[~certs["abstained"].astype(bool)]
    return {
        "median_radius_certified": float(held["radius"].median()) if len(held) else 0.0,
        "certified_wrong_rate": float((held["prediction"] != held["label"]).sum() / max(len(certs), 1)),
    }


def attack_metrics(
    certificates: pd.DataFrame,
    triggered_test: dict[str, Any],
    sigma: dict[str, Any],
    poison_summary: dict[str, Any],
    radii: list[float],
) -> dict[str, Any]:
    """What the certificates say about the realised attack (docs/methods.md#what-a-certificate-claims).

    Label-preserving feature attacks: the fraction of clean test samples with a triggered version whose
    certificate covers the attack, ``r1_j > ||Delta||_Sigma,j``. Dirty-label or inserting attacks: their
    feature norm, label changes and insertions, marked outside the threat model, and no fraction.
    """
    out: dict[str, Any] = {"attack_joint_norm": float(poison_summary["joint_norm"])}
    if "train_poisoned_index" not in poison_summary:
        raise ConfigError(
            "poison_summary lacks 'train_poisoned_index' (written before the threat-model fields "
            "existed); rerun the data_engineering pipeline"
        )
    out["attack_feature_norm"] = float(poison_summary["feature_norm"])
    out["attack_label_changes"] = int(poison_summary["label_changes"])
    out["attack_inserted"] = int(poison_summary["inserted"])
    inside = bool(poison_summary["in_threat_model"])
    reach = _reach(certificates, poison_summary)
    out.update(reach if inside else {k: v for k, v in reach.items() if k not in REACH_KEYS})
    out["attack_in_threat_model"] = inside
    if not inside:
        out["attack_threat_model"] = OUTSIDE
        return out
    out["attack_threat_model"] = "inside the certified threat model (label-preserving feature perturbation)"
    idx = torch.as_tensor(poison_summary["train_poisoned_index"], dtype=torch.long)
    src = triggered_test["source_index"].numpy()
    clean = certificates[certificates["split"] == "clean"].reset_index(drop=True)
    if len(src) == 0:
        return out
    weighted = metrics.weighted_attack_norm(
        poison_summary["train_poisoned_norms"],
        sigma["train"][idx].numpy(),
        triggered_test["norms"].numpy(),
        sigma["clean"].numpy()[src],
    )
    out["attack_weighted_norm_max"] = float(weighted.max())
    out["attack_weighted_norm_mean"] = float(weighted.mean())
    out["attack_smallest_radius_covering"] = metrics.smallest_radius_covering(out["attack_joint_norm"], radii)
    out["fraction_certified_against_attack"] = metrics.fraction_certified_against(clean.iloc[src], weighted)
    return out


def evasion_attack_metrics(poison_summary: dict[str, Any], threat_model: str) -> dict[str, Any]:
    """The attack's norms and counts beside an evasion certificate, which covers none of it: the certificate
    is about test-time input perturbations of the model as trained (on the poisoned set)."""
    return {
        "attack_joint_norm": float(poison_summary["joint_norm"]),
        "attack_feature_norm": float(poison_summary["feature_norm"]),
        "attack_label_changes": int(poison_summary["label_changes"]),
        "attack_inserted": int(poison_summary["inserted"]),
        "attack_in_threat_model": False,
        "attack_threat_model": f"{OUTSIDE} ({threat_model})",
    }


class EvaluationSettings(Protocol):
    """What the summary reads of the evaluation settings (``certssb.config.EvaluationBlock`` has it)."""

    radii: Sequence[float]
    alpha: float
    bound: str
    alpha_split: str
    degenerate_margin: float


def run_summary(
    certificates: pd.DataFrame,
    certificates_updated: pd.DataFrame,
    votes: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    sigma: dict[str, Any],
    poison_summary: dict[str, Any],
    undefended_metrics: dict[str, Any],
    evaluation: EvaluationSettings,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Certified accuracy table (split x region x radius, on the sound ``radius``) and the run's summary
    metrics; the published-radius metrics (``*_published*``) sit beside them, labelled as such."""
    e = evaluation
    radii = e.radii
    method = votes["method"]
    rows = []
    for region, certs in (("certified", certificates), ("storage_updated", certificates_updated)):
        for split in SPLITS:
            t = metrics.certified_accuracy(certs[certs["split"] == split], radii)
            t.insert(0, "region", region)
            t.insert(0, "split", split)
            t.insert(0, "method", method)
            rows.append(t)
    table = pd.concat(rows, ignore_index=True)
    c = clean_test["num_classes"]
    m: dict[str, Any] = {
        "method": method,
        "radius": "sound: sigma_min * r1 (certssb.core.certify)",
        "radius_published": ("= radius (one fixed sigma)" if votes.get("threat_model") else PUBLISHED),
    }
    for split, data in (("clean", clean_test), ("triggered", triggered_test)):
        certs = certificates[certificates["split"] == split]
        pred = certify.smoothed_prediction(votes[split]["votes"].numpy(), c)
        pre = "" if split == "clean" else "triggered_"
        m[f"{split}_accuracy"] = metrics.clean_accuracy(pred, data["y"].numpy())
        m[f"{pre}abstain_rate"] = metrics.abstain_rate(certs)
        m[f"{pre}mean_radius"] = metrics.mean_radius(certs)
        m[f"{pre}mean_radius_published"] = metrics.mean_radius(certs, radius_column="radius_published")
        m.update({f"{pre}{k}": v for k, v in certifier_attack_view(certs).items()})
        key = "cert_acc" if split == "clean" else "cert_acc_trig"
        for r, v in zip(radii, _curve(table, split, "certified")):
            m[f"{key}_{metrics.radius_key(r)}"] = float(v)
        pub = metrics.certified_accuracy(certs, radii, radius_column="radius_published")["certified_accuracy"]
        for r, v in zip(radii, pub):
            m[f"{key}_published_{metrics.radius_key(r)}"] = float(v)
        acc = member_accuracy(votes[split], data)
        m[f"{pre}member_accuracy_min"] = float(acc.min())
        m[f"{pre}member_accuracy_mean"] = float(acc.mean())
        if split == "clean":
            prior = np.bincount(data["y"].numpy(), minlength=c) / len(data["y"])
            flags = metrics.degenerate_members(acc, prior, e.degenerate_margin)
            m["degenerate_members"] = [int(k) for k in np.flatnonzero(flags)]
            if flags.any():
                log.warning(
                    "%s: %d degenerate ensemble members (accuracy near the class prior): %s",
                    method,
                    int(flags.sum()),
                    m["degenerate_members"],
                )
        else:
            m["attack_success_rate"] = triggered_asr(pred, data)
    for r, d in zip(radii, _curve(table, "clean", "certified") - _curve(table, "triggered", "certified")):
        m[f"cert_acc_drop_pp_{metrics.radius_key(r)}"] = float(100 * d)
    evasion = votes.get("threat_model")  # set by the evasion certifier (cohen): not a poisoning certificate
    m["certifies"] = evasion or smoothing.POISONING_THREAT_MODEL
    m.update(
        evasion_attack_metrics(poison_summary, evasion)
        if evasion
        else attack_metrics(certificates, triggered_test, sigma, poison_summary, radii)
    )
    n_est = int(certificates["n_estimation"].iloc[0])
    bound = votes.get("bound", e.bound)  # cohen: Clopper-Pearson over its draws, whatever e.bound
    m["radius_ceiling_sigma_units"] = certify.radius_ceiling(n_est, e.alpha, bound, e.alpha_split)
    m["sigma_train_mean"] = float(sigma["train"].mean())
    m["sigma_train_min"] = float(sigma["train"].min())
    m["sigma_clean_mean"] = float(sigma["clean"].mean())
    m["undefended_clean_accuracy"] = undefended_metrics["clean_accuracy"]
    m["undefended_attack_success_rate"] = undefended_metrics["attack_success_rate"]
    for split in SPLITS:
        pre = "" if split == "clean" else "trig_"
        for r, v in zip(radii, _curve(table, split, "storage_updated")):
            m[f"cert_acc_{pre}updated_{metrics.radius_key(r)}"] = float(v)
    k0 = metrics.radius_key(0.0)
    asr = m["attack_success_rate"]
    log.info(
        "%s: clean accuracy %.3f, ASR %s, cert acc r=0 %.3f (triggered %.3f), abstain %.3f; attack %s",
        method,
        m["clean_accuracy"],
        "–" if asr is None else f"{asr:.3f}",
        m.get(f"cert_acc_{k0}", float("nan")),
        m.get(f"cert_acc_trig_{k0}", float("nan")),
        m["abstain_rate"],
        "in the threat model" if m["attack_in_threat_model"] else OUTSIDE,
    )
    return table, m
