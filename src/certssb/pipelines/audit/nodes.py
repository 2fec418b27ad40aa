"""Thin nodes of the audit pipeline (the math in ``certssb.core.audit``, the retraining in
``certssb.execution.audit``). The audit reads the persisted artifacts of a default run and first checks that
they come from one run (``certssb.core.artifacts``)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from certssb.core.artifacts import (
    ModelArtifact, NoisePlan, SigmaArtifact, SplitData, check_certificates, check_ensemble_lineage,
    require_same,
)
from certssb.core.audit import summarise
from certssb.execution.audit import audit_method


def _check_lineage(ensemble: dict[str, Any], certificates: pd.DataFrame, sigma: dict[str, Any],
                   noise_plan: dict[str, Any], poisoned_train: dict[str, Any], clean_test: dict[str, Any],
                   pilot_model: dict[str, Any]) -> None:
    ens, train = ModelArtifact.from_dict(ensemble), SplitData.from_dict(poisoned_train, "poisoned_train")
    sig = SigmaArtifact.from_dict(sigma, f"{ens.method}.sigma")
    check_ensemble_lineage(ens, sig, NoisePlan.from_dict(noise_plan),
                           poisoned_train=train, clean_test=SplitData.from_dict(clean_test, "clean_test"))
    check_certificates(certificates, f"{ens.method}.certificates", sigma=sig, ensemble=ens.fingerprint)
    pilot = ModelArtifact.from_dict(pilot_model, "pilot_model")
    require_same("pilot_model", "poisoned_train", pilot.poisoned_train, train.fingerprint)


def run_audit(ensemble: dict[str, Any], certificates: pd.DataFrame, sigma: dict[str, Any], noise_plan: dict[str, Any],
              poisoned_train: dict[str, Any], clean_test: dict[str, Any], pilot_model: dict[str, Any],
              audit: dict[str, Any], model: dict[str, Any], ensemble_params: dict[str, Any],
              evaluation: dict[str, Any], attack: dict[str, Any], device: str) -> pd.DataFrame:
    """One row per audited point x strategy x radius column."""
    _check_lineage(ensemble, certificates, sigma, noise_plan, poisoned_train, clean_test, pilot_model)
    return audit_method(ensemble, certificates, sigma, noise_plan, poisoned_train, clean_test, pilot_model, audit,
                        model=model, ensemble_params=ensemble_params, evaluation=evaluation, attack=attack,
                        device=device)


def summarise_audit(report: pd.DataFrame, evaluation: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Figure]:
    """Flips per column and strategy against alpha (binomial p-value), MLflow metrics and a figure."""
    summary = summarise(report, evaluation["alpha"])
    metrics = {f"audit_flips_{c}".replace("radius_published", "published"): {"value": float(v), "step": 0}
               for c, v in ((c, summary.get(f"flips_{c}", 0)) for c in ("radius", "radius_published"))
               if f"flips_{c}" in summary}
    return summary, metrics, _figure(report, summary)


def _figure(report: pd.DataFrame, summary: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    labels, rates, expected, counts = [], [], [], []
    for column, per in summary["columns"].items():
        for strategy, s in per.items():
            name = "sound radius" if column == "radius" else "as published"
            labels.append(f"{strategy}\n{name}")
            rates.append(s["flips"] / s["points"] if s["points"] else 0.0)
            counts.append(f"{s['flips']}/{s['points']} flipped\np = {s['p_value']:.2g}")
            expected.append(summary["alpha"])
    x = np.arange(len(labels))
    ax.bar(x, rates, color=["tab:blue" if "sound" in lab else "tab:red" for lab in labels])
    ax.plot(x, expected, "k_", ms=18, label="α (a sound certificate flips at most this often)")
    for xi, rate, text in zip(x, rates, counts):
        ax.text(xi, rate + 0.03, text, ha="center", va="bottom", fontsize=7)
    ratio = float((report["weighted_norm"] / report["r1"]).max()) if len(report) else 0.0
    ax.set(xticks=x, ylabel="flip rate of certified points", ylim=(0, 1.02),
           title=f"audit: retrained inside the radius (‖Δ‖ ≤ {ratio:.2f}·R, in each column's norm)")
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
