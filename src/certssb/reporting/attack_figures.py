"""Figures of the attack sweeps: the undefended attack strength (pipeline ``attack_strength``) and the
certifier attacks against the poison rate (the study's rate axis). Pure: DataFrames in, a Figure out, no
backend chosen."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from certssb.reporting.figures import colour, method_label


def _rate_ticks(ax, rates: Sequence[float], *, percent: bool) -> None:
    """A log axis with one plain tick per rate (no minor ticks or exponents)."""
    ax.set_xscale("log")
    ax.minorticks_off()
    if rates:
        ax.set_xticks([100 * r if percent else r for r in rates])
        ax.set_xticklabels([f"{100 * r:g}" + ("" if percent else " %") for r in rates], fontsize=7)


def strength_figure(
    table: pd.DataFrame, thresholds: Sequence[float] = (0.5, 0.9), max_clean_drop: float = 0.02
) -> Figure:
    """Undefended attack success rate vs poison rate (log axis): one panel per trigger (columns) and label
    mode (rows), one line per (epochs, delta); a hollow marker where clean accuracy fell by more than
    ``max_clean_drop``; dotted lines at the ASR thresholds."""
    triggers = list(dict.fromkeys(table["trigger"]))
    modes = list(dict.fromkeys(table["label_mode"]))
    fig = Figure(figsize=(3.0 * len(triggers), 2.6 * len(modes) + 0.6))
    axes = fig.subplots(len(modes), len(triggers), sharex=True, sharey=True, squeeze=False)
    combos = sorted({(int(e), float(d)) for e, d in zip(table["epochs"], table["delta"])})
    cmap = {c: f"C{i}" for i, c in enumerate(combos)}
    for i, mode in enumerate(modes):
        for j, trig in enumerate(triggers):
            ax = axes[i, j]
            g = table[(table["trigger"] == trig) & (table["label_mode"] == mode)]
            seen: dict[tuple, str] = {}  # a series identical to an earlier one would hide under it: say so
            for (e, d), h in g.groupby(["epochs", "delta"]):
                h = h.sort_values("poison_rate")
                label = f"{e} ep" + (f", δ={d:g}" if len(set(g["delta"])) > 1 else "")
                key = tuple(zip(h["poison_rate"].round(9), h["attack_success_rate"].round(6)))
                under = seen.setdefault(key, label)
                ls = "-" if under == label else (0, (3, 3))
                ax.plot(
                    h["poison_rate"],
                    h["attack_success_rate"],
                    ls=ls,
                    color=cmap[(int(e), float(d))],
                    lw=1.3,
                    label=label if under == label else f"{label} (same as {under}, overlaps)",
                )
                ok = h["clean_drop"] <= max_clean_drop
                ax.scatter(
                    h["poison_rate"][ok], h["attack_success_rate"][ok], color=cmap[(int(e), float(d))], s=14
                )
                ax.scatter(
                    h["poison_rate"][~ok],
                    h["attack_success_rate"][~ok],
                    facecolors="none",
                    edgecolors=cmap[(int(e), float(d))],
                    s=22,
                )
            for t in thresholds:
                ax.axhline(t, color="0.5", ls=":", lw=0.8)
            _rate_ticks(ax, sorted(set(table["poison_rate"])), percent=False)
            ax.set_ylim(-0.02, 1.02)
            norm = float(g["trigger_norm"].median()) if len(g) else float("nan")
            ax.set_title(
                f"{trig}, {mode} label (‖trigger‖ ≈ {norm:.2g})"
                if len(set(g["delta"])) <= 1
                else f"{trig}, {mode} label",
                fontsize=8,
            )
            ax.grid(alpha=0.3)
            if i == len(modes) - 1:
                ax.set_xlabel("poison rate")
            if j == 0:
                ax.set_ylabel("undefended ASR")
            if len(g):
                ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(
        f"attack strength: undefended ASR vs poison rate; hollow: clean accuracy down by more than "
        f"{max_clean_drop:g}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


RATE_PANELS = (
    ("triggered_abstain_rate", "triggered abstain rate"),
    ("cert_acc_drop_pp_r000", "cert. acc. drop, r = 0 (points)"),
    ("cert_acc_drop_pp_r025", "cert. acc. drop, r = 0.25 (points)"),
    ("clean_accuracy", "clean accuracy (smoothed)"),
)


PUBLISHED_DROP_PP = 95.0
"""Lorenz, Kwiatkowska and Fritz: ~1 % poison takes certified robustness on triggered inputs down by up to 95
points."""


def rate_figure(summary: pd.DataFrame) -> Figure:
    """The certifier attacks against the poison rate (Lorenz et al.'s curves): one row per attack with a rate,
    one column per metric of :data:`RATE_PANELS` (triggered abstain rate, certified-accuracy drop clean ->
    triggered at r = 0 and 0.25, clean accuracy), methods in colour, one line per sigma_0: the mean over the
    seeds of ``study.seeds`` with a +-1 standard-deviation band when there are several (one seed: the value,
    no band). Cells without a rate are left out; with none at all the figure says so."""
    rated = summary[summary["rate"].notna()] if "rate" in summary.columns else summary.iloc[0:0]
    attacks = list(dict.fromkeys(rated["attack"])) or ["(no cell with a poison rate)"]
    panels = [p for p in RATE_PANELS if p[0] in rated.columns] or list(RATE_PANELS[:1])
    fig = Figure(figsize=(3.2 * len(panels), 2.6 * len(attacks) + 0.6))
    axes = fig.subplots(len(attacks), len(panels), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for i, attack in enumerate(attacks):
        g = rated[rated["attack"] == attack]
        for j, (col, title) in enumerate(panels):
            ax = axes[i, j]
            for (method, sg), h in g.groupby(["method", "sigma"], sort=False):
                # one point per rate: the mean over the seeds (study.seeds), and a +-1 std band when > 1 seed
                agg = h.groupby("rate")[col].agg(["mean", "std", "count"]).reset_index().sort_values("rate")
                k = sorted(set(g["sigma"])).index(sg) % len(styles)
                c = colour(method, list(dict.fromkeys(g["method"])))
                n = int(agg["count"].max())
                ax.plot(
                    100 * agg["rate"],
                    agg["mean"],
                    styles[k],
                    marker="o",
                    ms=3,
                    color=c,
                    label=f"{method_label(method)}, σ₀={sg:g}"
                    + (f" (mean ± std, {n} seeds)" if n > 1 else ""),
                )
                if n > 1:
                    spread = agg["std"].fillna(0.0)
                    ax.fill_between(
                        100 * agg["rate"],
                        agg["mean"] - spread,
                        agg["mean"] + spread,
                        color=c,
                        alpha=0.2,
                        lw=0,
                    )
            _rate_ticks(ax, sorted(set(g["rate"])), percent=True)
            ax.set_title(f"{attack}: {title}", fontsize=8)
            ax.grid(alpha=0.3)
            if col.startswith("cert_acc_drop_pp"):  # on the scale of Lorenz et al.'s effect, not zoomed in
                ax.set_ylim(-5, 100)
                ax.axhline(PUBLISHED_DROP_PP, color="0.5", ls=":", lw=0.8)
                ax.text(
                    ax.get_xlim()[0], PUBLISHED_DROP_PP, " Lorenz et al.: up to 95", fontsize=6, va="bottom"
                )
            else:
                ax.set_ylim(-0.02, 1.02)
            if i == len(attacks) - 1:
                ax.set_xlabel("poison rate (%)")
            if i == 0 and j == 0 and len(g):
                ax.legend(fontsize=6)
    fig.suptitle("certifier attacks vs poison rate", fontsize=9)
    fig.tight_layout()
    return fig
