"""The audit's figure (pipeline ``audit``): flip rate against the multiple of the certified radius, from the
summary of ``certssb.core.audit.summarise`` (pure: a dict in, a Figure out)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

NAMES = {
    "radius": "sound radius",
    "radius_published": "published radius (σₓR₁)",
    "radius_resigma": "sound radius, σ recomputed",
}


def audit_figure(summary: dict[str, Any]) -> Figure:
    """One panel per audited column: the flip rate against the multiple c of the certificate, a line per
    strategy (labelled with its break factor), the 2 alpha bound of a sound certificate, the stop rate."""
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
