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

import matplotlib.pyplot as plt
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
        per_method += [metrics, table, sigma]
        row = {"method": method, "attack": p["attack"]["name"], "sigma": p["noise"]["sigma"],
               "poison_rate": p["attack"]["poison_rate"], "n_poisoned": summary["n_poisoned"],
               **{k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        for split in ("clean", "triggered"):
            for k in ("trim", "align", "overlapping_pairs_before", "overlapping_pairs_after"):
                row[f"storage_{split}_{k}"] = storage[split][k]
        rows.append(row)
        tables_for_fig = table.assign(attack=p["attack"]["name"], sigma=p["noise"]["sigma"])
        row["_table"] = tables_for_fig
    ev.log_mlflow_runs(p["noise"], p["attack"], *per_method, name_suffix=f"-{p['attack']['name']}-s{p['noise']['sigma']:g}")
    return rows


def run_study(parameters: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, plt.Figure]:
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
    summary = pd.DataFrame(rows)
    summary["study_seconds_total"] = time.perf_counter() - t0
    return summary, curves, study_figure(curves, s["attacks"], s["sigmas"])


def study_figure(curves: pd.DataFrame, attacks: list[str], sigmas: list[float]) -> plt.Figure:
    """Certified accuracy vs radius: one panel per (attack, sigma), methods in colour, triggered dashed."""
    fig, axes = plt.subplots(len(attacks), len(sigmas), figsize=(3.2 * len(sigmas), 2.4 * len(attacks)),
                             sharey=True, squeeze=False)
    cert = curves[curves["region"] == "certified"]
    for i, a in enumerate(attacks):
        for j, sg in enumerate(sigmas):
            ax = axes[i, j]
            cell = cert[(cert["attack"] == a) & np.isclose(cert["sigma"], sg)]
            for (method, split), g in cell.groupby(["method", "split"]):
                ax.plot(g["radius"], g["certified_accuracy"], marker="o", ms=2.5, color=reporting.STYLE.get(method),
                        ls="-" if split == "clean" else "--", label=f"{method} {split}")
            ax.set_title(f"{a}, σ={sg:g}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(attacks) - 1:
                ax.set_xlabel("radius")
            if j == 0:
                ax.set_ylabel("certified acc.")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig
