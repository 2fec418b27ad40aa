"""Plots of the evaluation (matplotlib, Agg backend): the figures the papers show."""
from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

STYLE = {"uniform": "tab:blue", "cert_ssb": "tab:red"}


def certified_accuracy_figure(table: pd.DataFrame, title: str, attack_norm: float | None = None) -> plt.Figure:
    """Certified accuracy vs radius; one line per (method, split, region) in ``table``.

    Points are the measured grid radii; the lines between them only guide the eye (certified accuracy
    is non-increasing in r, so its value between two grid radii lies between theirs).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for (method, split, region), g in table.groupby(["method", "split", "region"], sort=True):
        ls = "-" if split == "clean" else "--"
        alpha = 1.0 if region == "certified" else 0.55
        ax.plot(g["radius"], g["certified_accuracy"], marker="o", ms=3, ls=ls, alpha=alpha,
                color=STYLE.get(method, None), label=f"{method} {split}" + ("" if region == "certified" else " (storage update)"))
    if attack_norm is not None and attack_norm <= float(table["radius"].max()):
        ax.axvline(attack_norm, color="k", lw=0.8, ls=":", label=f"attack ||Δ|| = {attack_norm:.2f}")
    ax.set(xlabel="radius r (ℓ2)", ylabel="certified accuracy", ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sigma_histogram(sigma: dict[str, Any], title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    for split in ("train", "clean", "triggered"):
        v = np.asarray(sigma[split])
        ax.hist(v, bins=40, alpha=0.5, label=f"{split} (mean {v.mean():.3f})", density=True)
    ax.axvline(sigma["sigma0"], color="k", ls=":", label=f"σ0 = {sigma['sigma0']}")
    ax.set(xlabel="σ_i", ylabel="density", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def radius_before_after(before: pd.DataFrame, after: pd.DataFrame, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    actions = after["action"].to_numpy()
    for action, colour in (("none", "tab:gray"), ("trim", "tab:orange"), ("align", "tab:purple")):
        m = actions == action
        ax.scatter(before["radius"].to_numpy()[m], after["radius"].to_numpy()[m], s=8, alpha=0.6, c=colour,
                   label=f"{action} ({int(m.sum())})")
    hi = max(float(before["radius"].max()), float(after["radius"].max()), 1e-3)
    ax.plot([0, hi], [0, hi], "k:", lw=0.8)
    ax.set(xlabel="radius before storage update", ylabel="radius after", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def study_figure(certs: pd.DataFrame, attacks: list[str], sigmas: list[float], quick: bool = False) -> plt.Figure:
    """Certified accuracy vs radius per (attack, sigma_0) cell (``certs`` has columns attack, sigma0, method,
    split and the certificate columns): exact step curves from the per-sample radii, methods in colour,
    clean solid, triggered dashed."""
    attacks, sigmas = list(dict.fromkeys(attacks)), list(dict.fromkeys(sigmas))
    fig, axes = plt.subplots(len(attacks), len(sigmas), figsize=(3.2 * len(sigmas), 2.4 * len(attacks)),
                             sharey=True, squeeze=False)
    for i, a in enumerate(attacks):
        for j, sg in enumerate(sigmas):
            ax = axes[i, j]
            cell = certs[(certs["attack"] == a) & np.isclose(certs["sigma0"], sg)]
            for (method, split), g in cell.groupby(["method", "split"]):
                ok = g["correct"].to_numpy(bool) & ~g["abstained"].to_numpy(bool)
                r = np.sort(g["radius"].to_numpy(float)[ok])
                ax.step(np.r_[0.0, r], np.r_[len(r), len(r) - 1 - np.arange(len(r))] / len(g), where="post",
                        color=STYLE.get(method), ls="-" if split == "clean" else "--", label=f"{method} {split}")
            ax.set_title(f"{a}, σ₀={sg:g}" + (" (quick)" if quick else ""), fontsize=9)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig
