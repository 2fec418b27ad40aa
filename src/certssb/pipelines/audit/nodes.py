"""Thin nodes of the audit pipeline (the math in ``certssb.core.audit``, the retraining in
``certssb.execution.audit``). The audit reads the persisted artifacts of a default run and first checks that
they come from one run (``certssb.core.artifacts``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

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
from certssb.reporting.audit_figures import audit_figure


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
    return summary, metrics, audit_figure(summary)
