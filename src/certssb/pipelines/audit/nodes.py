"""Thin nodes of the audit pipeline (the math in ``certssb.core.audit``, the retraining in
``certssb.execution.audit``). The audit reads the persisted artifacts of a default run and first checks that
they come from one run (``certssb.core.artifacts``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from certssb.config import AuditBlock, EnsembleBlock, EvaluationBlock, ModelBlock, SigmaOptBlock, core_names
from certssb.core.artifacts import (
    ModelArtifact,
    NoisePlan,
    SigmaArtifact,
    SplitData,
    check_certificates,
    check_ensemble_lineage,
    require_same,
)
from certssb.core.audit import summarise
from certssb.execution.audit import audit_keys, audit_method


def _check_lineage(
    ensemble: dict[str, Any],
    certificates: pd.DataFrame,
    sigma: dict[str, Any],
    noise_plan: dict[str, Any],
    poisoned_train: dict[str, Any],
    clean_test: dict[str, Any],
    pilot_model: dict[str, Any],
) -> None:
    ens, train = ModelArtifact.from_dict(ensemble), SplitData.from_dict(poisoned_train, "poisoned_train")
    sig = SigmaArtifact.from_dict(sigma, f"{ens.method}.sigma")
    check_ensemble_lineage(
        ens,
        sig,
        NoisePlan.from_dict(noise_plan),
        poisoned_train=train,
        clean_test=SplitData.from_dict(clean_test, "clean_test"),
    )
    check_certificates(certificates, f"{ens.method}.certificates", sigma=sig, ensemble=ens.fingerprint)
    pilot = ModelArtifact.from_dict(pilot_model, "pilot_model")
    require_same("pilot_model", "poisoned_train", pilot.poisoned_train, train.fingerprint)


def run_audit(
    ensemble: dict[str, Any],
    certificates: pd.DataFrame,
    sigma: dict[str, Any],
    noise_plan: dict[str, Any],
    poisoned_train: dict[str, Any],
    clean_test: dict[str, Any],
    pilot_model: dict[str, Any],
    audit: AuditBlock,
    model: ModelBlock,
    ensemble_params: EnsembleBlock,
    evaluation: EvaluationBlock,
    sigma_opt: SigmaOptBlock,
    device: str,
) -> pd.DataFrame:
    """One row per audited point x strategy x column x rung of the ladder."""
    _check_lineage(ensemble, certificates, sigma, noise_plan, poisoned_train, clean_test, pilot_model)
    with core_names(audit_keys(audit)):  # core's errors name the audit's parameter keys
        return audit_method(
            ensemble,
            certificates,
            sigma,
            noise_plan,
            poisoned_train,
            clean_test,
            pilot_model,
            audit,
            model=model,
            ensemble_params=ensemble_params,
            evaluation=evaluation,
            sigma_opt=sigma_opt,
            device=device,
        )


def summarise_audit(
    report: pd.DataFrame, evaluation: EvaluationBlock, audit: AuditBlock
) -> tuple[dict[str, Any], dict[str, Any], Figure]:
    """The ladder per column and strategy, the break factors, MLflow metrics and the figure."""
    factors = audit.quick_factors if audit.quick else audit.factors
    with core_names(audit_keys(audit)):
        summary = summarise(report, evaluation.alpha, factors, audit.stop_rate)
    top = max(factors)
    metrics = {}
    for column, bf in summary["break_factor"].items():
        name = column.replace("radius_published", "published").replace("radius_resigma", "resigma")
        metrics[f"audit_flips_inside_{name}"] = {"value": float(summary[f"flips_inside_{column}"]), "step": 0}
        for part, c in bf.items():  # not broken: logged as 2 x the top rung
            metrics[f"audit_break_factor_{name}_{part}"] = {
                "value": float(c if c is not None else 2 * top),
                "step": 0,
            }
    return summary, metrics, _figure(summary)


NAMES = {
    "radius": "sound radius",
    "radius_published": "published radius (σₓR₁)",
    "radius_resigma": "sound radius, σ recomputed",
}


def _figure(summary: dict[str, Any]) -> Figure:
    cols = list(summary["columns"])
    fig = Figure(figsize=(4.2 * max(1, len(cols)), 3.6))
    axes = np.atleast_1d(fig.subplots(1, max(1, len(cols)), sharey=True))
    bound = summary["flip_bound_per_point"]
    styles = {
        "pgd": ("o-", "tab:orange"),
        "brew": ("s--", "tab:blue"),
        "brew_pgd": ("^-.", "tab:purple"),
        "lowsigma": ("d:", "tab:green"),
    }
    for ax, column in zip(axes, cols):
        for strategy, s in summary["columns"][column].items():
            lad = s["ladder"]
            fmt, color = styles.get(strategy, ("o-", None))
            bf = s["break_factor"]
            ax.plot(
                [r["factor"] for r in lad],
                [r["flip_rate"] for r in lad],
                fmt,
                color=color,
                ms=5,
                label=f"{strategy} ({s['part']}): "
                + (f"breaks at c = {bf:g}" if bf is not None else "not broken"),
            )
        ax.axhline(bound, color="k", lw=1.2)
        ax.text(
            summary["factors"][0],
            bound + 0.015,
            f"2α = {bound:g}: a sound certificate's expected flip rate",
            fontsize=6,
        )
        ax.axhline(summary["stop_rate"], color="grey", ls=":", lw=1)
        ax.axvline(1.0, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(summary["factors"])
        ax.set_xticklabels([f"{c:g}" for c in summary["factors"]], fontsize=7)
        ax.set(
            xlabel="c  (‖Δ‖ = c·R₁ in the column's norm; dashed: c = 1)",
            title=NAMES.get(column, column),
            ylim=(-0.02, 1.02),
        )
        ax.legend(fontsize=6, loc="upper left")
    axes[0].set_ylabel("flip rate (dotted: 10 % = broken)")
    fig.tight_layout()
    return fig
