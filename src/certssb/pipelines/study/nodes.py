"""The study grid: for each (attack, sigma) cell, the three pipelines' node functions are called in turn
(no copy of their logic) and each (method, attack, sigma) result is logged as its own MLflow run.

Ensembles are checkpointed by fingerprint (``ensemble.checkpoint_dir``), so an interrupted study resumes:
finished cells retrain nothing.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

from matplotlib.figure import Figure
import numpy as np
import pandas as pd

from certssb import reporting
from certssb.core.attacks import CERTIFIER_ATTACKS
from certssb.core.validation import ConfigError, choice
from certssb.params import METHODS, validate_parameters
from certssb.pipelines.data_engineering import nodes as de
from certssb.pipelines.evaluation import nodes as ev
from certssb.pipelines.modelling import nodes as mo

log = logging.getLogger(__name__)


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def cell_parameters(parameters: dict[str, Any], attack: str, sigma: float) -> dict[str, Any]:
    """The parameters of one cell: the base ones, the quick overrides if asked, the cell's attack and sigma."""
    s = parameters["study"]
    p = _deep_update(parameters, s["quick_overrides"]) if s.get("quick") else copy.deepcopy(parameters)
    p["attack"]["name"] = attack
    if attack in CERTIFIER_ATTACKS:
        p["attack"]["poison_rate"] = s["certifier_attack_rate"]
        p["attack"]["trigger"] = s["certifier_trigger"]
    p["noise"]["sigma"] = float(sigma)
    return p


def _run_cell(p: dict[str, Any], raw: dict[str, Any]) -> list[dict[str, Any]]:
    poisoned, clean, trig, _report, summary = de.poison(raw, p["data"], p["attack"], p["seed"])
    plan, _ = de.make_noise_plan(poisoned, p["noise"], p["seed"])
    pilot = mo.train_pilot(poisoned, plan, p)
    undefended = ev.evaluate_undefended(mo.train_undefended(poisoned, plan, p), clean, trig, p)
    rows, per_method = [], []
    for method in p["study"]["methods"]:
        sigma, _ = mo.optimise_sigma(method, pilot, poisoned, clean, trig, plan, p)
        ens, _, _ = mo.train_ensemble(method, poisoned, sigma, plan, p)
        votes = ev.compute_votes(ens, clean, trig, sigma, plan, p)
        certs = ev.certify_samples(votes, clean, trig, sigma, p)
        updated, storage = ev.storage_update(certs, clean, trig, p)
        table, metrics = ev.compute_metrics(certs, updated, votes, clean, trig, sigma, summary, undefended, p)
        per_method += [metrics, table]
        row = {"method": method, "attack": p["attack"]["name"], "sigma": p["noise"]["sigma"],
               "poison_rate": p["attack"]["poison_rate"], "n_poisoned": summary["n_poisoned"],
               **{k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        for split in ("clean", "triggered"):
            for k in ("trim", "align", "overlapping_pairs_before", "overlapping_pairs_after"):
                row[f"storage_{split}_{k}"] = storage[split][k]
        rows.append(row)
        row["_table"] = table.assign(attack=p["attack"]["name"], sigma=p["noise"]["sigma"])
        row["_certs"] = certs.assign(attack=p["attack"]["name"], cell_sigma=p["noise"]["sigma"])
        row["_ceiling"] = metrics.get("radius_ceiling_sigma_units")
    ev.log_mlflow_runs(p, *per_method, name_suffix=f"-{p['attack']['name']}-s{p['noise']['sigma']:g}")
    return rows


def run_study(parameters: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, Figure]:
    """Run the grid; return the summary (one row per cell), the certified-accuracy curves and a figure."""
    s = parameters["study"]
    for m in s["methods"]:
        choice("study.methods[]", m, METHODS)
    for a in s["attacks"]:
        choice("study.attacks[]", a, ("none", "onepixel", "fourpixel", "blending", "badnets", "blend", *CERTIFIER_ATTACKS))
    if not s["sigmas"] or any(not isinstance(v, (int, float)) or v <= 0 for v in s["sigmas"]):
        raise ConfigError(f"parameter 'study.sigmas' = {s['sigmas']!r} is invalid: a non-empty list of sigmas > 0")
    cells = [(a, sg) for a in s["attacks"] for sg in s["sigmas"]]
    for a, sg in cells:  # every cell's parameters are valid before the first one runs
        validate_parameters(cell_parameters(parameters, a, sg), {"study"})
    p0 = cell_parameters(parameters, cells[0][0], cells[0][1])
    raw = de.download(p0["data"], p0["seed"])
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, (attack, sigma) in enumerate(cells, 1):
        tc = time.perf_counter()
        rows += _run_cell(cell_parameters(parameters, attack, sigma), raw)
        log.info("study cell %d/%d (%s, sigma=%g) done in %.0f s (total %.0f s)", i, len(cells), attack, sigma,
                 time.perf_counter() - tc, time.perf_counter() - t0)
    curves = pd.concat([r.pop("_table") for r in rows], ignore_index=True)
    certs = pd.concat([r.pop("_certs") for r in rows], ignore_index=True)
    ceilings = {(r["attack"], r["sigma"], r["method"]): r.pop("_ceiling") for r in rows}
    summary = pd.DataFrame(rows)
    summary["study_seconds_total"] = time.perf_counter() - t0
    return summary, curves, study_figure(certs, s["attacks"], s["sigmas"], ceilings=ceilings, parameters=p0)


def study_figure(certs: pd.DataFrame, attacks: list[str], sigmas: list[float], *,
                 ceilings: dict[tuple[str, float, str], float | None] | None = None,
                 parameters: dict[str, Any] | None = None) -> Figure:
    """Certified accuracy vs radius, exact step curves from the certificates: one panel per (attack, σ₀),
    methods in colour, clean solid / triggered dotted, Cert-SSB as published dashed (clean only).

    ``certs`` is the certificate tables of every cell with ``attack`` and ``cell_sigma`` (σ₀) columns.
    """
    fig = Figure(figsize=(3.6 * len(sigmas), 2.9 * len(attacks) + 0.6))
    axes = fig.subplots(len(attacks), len(sigmas), sharey=True, squeeze=False)
    ceilings = ceilings or {}
    for i, a in enumerate(attacks):
        for j, sg in enumerate(sigmas):
            ax = axes[i, j]
            cell = certs[(certs["attack"] == a) & np.isclose(certs["cell_sigma"], sg)]
            drawn: list[tuple[Any, str, str, str, reporting.StepCurve]] = []
            for method in dict.fromkeys(cell["method"]):
                name = reporting.method_label(method)
                for split in ("clean", "triggered"):
                    g = cell[(cell["method"] == method) & (cell["split"] == split)]
                    if len(g) == 0:
                        continue
                    drawn.append((method, "-" if split == "clean" else ":", f"{name}, {split}", "radius",
                                  reporting.step_curve(g)))
                    if split == "clean" and "radius_published" in g.columns and method == "cert_ssb" and \
                            not np.allclose(g["radius_published"], g["radius"]):
                        drawn.append((method, "--", "Cert-SSB as published, clean", "published",
                                      reporting.step_curve(g, "radius_published")))
            largest = max([c.max_radius for *_, c in drawn] + [0.0])
            x_max = 1.12 * largest if largest > 0 else 1.0
            for method, ls, label, _kind, curve in drawn:
                x, y = curve.xy(x_max)
                ax.plot(x, y, drawstyle="steps-post", ls=ls, lw=1.5, color=reporting.COLOURS.get(method),
                        label=label)
            for method in dict.fromkeys(cell["method"]):
                c = ceilings.get((a, sg, method))
                g = cell[cell["method"] == method]
                col = "sigma_min" if "sigma_min" in g.columns else "sigma"
                if c is not None and c * float(g[col].max()) <= x_max:
                    ax.axvline(c * float(g[col].max()), color=reporting.COLOURS.get(method, "k"), ls="-.", lw=0.8)
            ax.set_xlim(0, x_max)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"attack {a}, σ₀ = {sg:g}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(attacks) - 1:
                ax.set_xlabel("radius r (ℓ2)")
            if j == 0:
                ax.set_ylabel("certified accuracy")
            if i == 0 and j == 0:
                ax.legend(fontsize=6, loc="upper right")
    title = "certified accuracy vs radius (exact); dash-dot: ceiling of the bound"
    if parameters is not None:
        title = reporting.run_title(title, {**parameters, "noise": {**parameters.get("noise", {}), "sigma": None}})
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
