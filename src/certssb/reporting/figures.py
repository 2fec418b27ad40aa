"""Figures of the evaluation, drawn from the certificate tables (pure: DataFrames/dicts in, a Figure out).

Certified accuracy at radius r (Cohen et al. 2019) is the fraction of ALL rows that are correct, not
abstained and have ``radius >= r``. As a function of r it is a non-increasing step function that drops
exactly at the per-sample radii, so the figures draw it exactly from the certificates (``drawstyle``
steps), never as lines between grid radii.

No backend is chosen here: Kedro's ``MatplotlibDataset`` and ``Figure.savefig`` save without one, and a
notebook keeps its inline backend (``matplotlib.use("Agg")`` at import broke ``%reload_kedro``).

Length: a little over 350 lines, because the figures of one run share the step curve, the colours and the
labels (ceiling, published radius) that must read the same in each; the sweeps' figures are in
:mod:`certssb.reporting.attack_figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from certssb.core.validation import ConfigError

COLOURS = {"uniform": "tab:blue", "cert_ssb": "tab:red", "cohen": "tab:green"}
STYLE = COLOURS  # former name, kept for callers
_PAIRS = {
    "tab:blue": ("#1f77b4", "#9ecae1"),
    "tab:red": ("#d62728", "#fc9aa0"),
    "tab:green": ("#2ca02c", "#a1d99b"),
    "tab:purple": ("#9467bd", "#cbb4e0"),
    "tab:orange": ("#ff7f0e", "#fdc58f"),
    "tab:brown": ("#8c564b", "#c9a89f"),
}


def colour(method: str, methods: Sequence[str] = ()) -> str:
    """The method's colour: :data:`COLOURS`, else the next free one of a fixed palette (any method)."""
    if method in COLOURS:
        return COLOURS[method]
    free = [c for c in _PAIRS if c not in COLOURS.values()]
    others = [m for m in dict.fromkeys(methods) if m not in COLOURS] or [method]
    return free[(others.index(method) if method in others else 0) % len(free)]


def shade(method: str, split: str, methods: Sequence[str] = ()) -> str:
    """Dark shade of the method's colour for clean inputs, light for triggered ones."""
    dark, light = _PAIRS.get(colour(method, methods), (colour(method, methods),) * 2)
    return light if split == "triggered" else dark


SPLIT_TITLES = {"clean": "clean test set", "triggered": "triggered test set"}
PUBLISHED_LABEL = "Cert-SSB as published (not a poisoning certificate)"
_NEEDS = ("correct", "abstained")


def method_label(method: str, sigma0: float | None = None) -> str:
    """A readable name: ``cert_ssb`` -> "Cert-SSB", ``uniform`` -> "uniform σ = 0.25"."""
    if method == "cert_ssb":
        return "Cert-SSB"
    if method == "uniform":
        return "uniform σ" if sigma0 is None else f"uniform σ = {sigma0:g}"
    if method == "cohen":
        return "Cohen et al. (evasion)"
    return method


def comparison_title(methods: Sequence[str]) -> str:
    """``certified accuracy: uniform σ vs Cert-SSB vs Cohen et al. (evasion)``, with the evasion certifier's
    threat model on a second line when it is among ``methods`` (it certifies nothing about poisoning)."""
    from certssb.core.smoothing import NAME, THREAT_MODEL

    title = "certified accuracy: " + " vs ".join(method_label(m) for m in methods)
    return title + (f"\n{method_label(NAME)}: {THREAT_MODEL}" if NAME in methods else "")


@dataclass(frozen=True)
class StepCurve:
    """Certified accuracy as a function of the radius, exactly.

    ``radii`` (sorted, distinct, > 0) are the radii of the counted rows (correct, not abstained); the
    value at ``r`` is ``#(counted rows with radius >= r) / n``. :meth:`xy` gives the vertices for
    ``drawstyle="steps-post"``.
    """

    radii: np.ndarray  # the counted rows' radii, sorted ascending (with repeats)
    n: int
    n_correct: int  # counted rows (radius >= 0)

    def __call__(self, r: float | Sequence[float] | np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        above = len(self.radii) - np.searchsorted(self.radii, r, side="left")  # #(radius >= r)
        return np.where(r <= 0, self.n_correct, above) / self.n

    @property
    def max_radius(self) -> float:
        return float(self.radii[-1]) if len(self.radii) else 0.0

    def xy(self, x_max: float) -> tuple[np.ndarray, np.ndarray]:
        """Vertices for ``steps-post``: on ``[x_j, x_{j+1})`` the curve equals ``y_j``.

        The value at r = 0 (every counted row) is drawn as a vertical segment at 0 down to the value just
        right of 0 (rows with radius 0 -- e.g. kept by the storage update with R = 0 -- count only at 0);
        after the largest radius the curve is 0 up to ``x_max``.
        """
        pos = np.unique(self.radii[self.radii > 0])
        # just right of x_j the curve counts radius > x_j
        right = (len(self.radii) - np.searchsorted(self.radii, pos, side="right")) / self.n
        first = float(np.sum(self.radii > 0)) / self.n
        x = np.concatenate([[0.0, 0.0], pos, [max(x_max, self.max_radius)]])
        y = np.concatenate([[self.n_correct / self.n, first], right, [right[-1] if len(right) else first]])
        return x, y


def step_curve(certs: pd.DataFrame, radius_column: str = "radius") -> StepCurve:
    """The exact certified-accuracy curve of a certificate table (see :class:`StepCurve`)."""
    if not isinstance(certs, pd.DataFrame):
        raise ConfigError(f"certs is a {type(certs).__name__}; pass the certificate table (a DataFrame)")
    missing = [c for c in (*_NEEDS, radius_column) if c not in certs.columns]
    if missing:
        raise ConfigError(
            f"certificate table lacks columns {missing} (has {list(certs.columns)}); the figures need the "
            "per-sample certificates, not the certified-accuracy grid"
        )
    if len(certs) == 0:
        raise ConfigError("certificate table has no rows")
    counted = certs["correct"].to_numpy(bool) & ~certs["abstained"].to_numpy(bool)
    rad = np.sort(certs[radius_column].to_numpy(np.float64)[counted])
    return StepCurve(radii=rad, n=len(certs), n_correct=int(counted.sum()))


def _has_published(g: pd.DataFrame) -> bool:
    return "radius_published" in g.columns and not np.allclose(g["radius_published"], g["radius"])


def _ceiling_radius(g: pd.DataFrame, ceiling_sigma_units: float | None) -> float | None:
    """The bound's ceiling in radius units for the headline radius: c * the largest sigma scaling it."""
    if ceiling_sigma_units is None:
        return None
    col = "sigma_min" if "sigma_min" in g.columns else ("sigma" if "sigma" in g.columns else None)
    return None if col is None else float(ceiling_sigma_units) * float(g[col].max())


def certified_accuracy_figure(
    certificates: pd.DataFrame,
    *,
    updated: pd.DataFrame | None = None,
    title: str = "certified accuracy",
    sigma0: float | None = None,
    ceiling: Mapping[str, float] | float | None = None,
    attack_norm: float | None = None,
) -> Figure:
    """Certified accuracy vs ℓ2 radius, exact step curves; one panel per split (clean | triggered).

    ``certificates`` has ``method`` and ``split`` columns plus the certificate columns (``radius``,
    optional ``radius_published``, ``correct``, ``abstained``, ``sigma``/``sigma_min``). Per method (colour):
    ``radius`` solid; ``radius_published`` dashed when it differs (Cert-SSB as published, not a
    poisoning certificate); ``updated`` (after the storage update) a wide translucent band under the solid
    line, so it shows even where the two coincide. ``ceiling``: the bound's ceiling in σ units (one
    number, or per method), drawn at ceiling x the largest σ scaling the radius. ``attack_norm`` is marked
    only when it lies within the axis.
    """
    for col in ("method", "split"):
        if col not in certificates.columns:
            raise ConfigError(f"certificate table lacks column {col!r}; has {list(certificates.columns)}")
    splits = [s for s in SPLIT_TITLES if s in set(certificates["split"])] or sorted(
        set(certificates["split"])
    )
    methods = list(dict.fromkeys(certificates["method"]))
    curves: list[tuple[str, str, str, StepCurve]] = []  # (split, method, kind, curve)
    for split in splits:
        for method in methods:
            g = certificates[(certificates["split"] == split) & (certificates["method"] == method)]
            if len(g) == 0:
                continue
            if updated is not None:
                u = updated[(updated["split"] == split) & (updated["method"] == method)]
                if len(u):
                    curves.append((split, method, "updated", step_curve(u)))
            curves.append((split, method, "radius", step_curve(g)))
            if _has_published(g):
                curves.append((split, method, "published", step_curve(g, "radius_published")))
    ceilings: dict[str, float] = {}
    for method in methods:
        c = ceiling.get(method) if isinstance(ceiling, Mapping) else ceiling
        cr = _ceiling_radius(certificates[certificates["method"] == method], c)
        if cr is not None:
            ceilings[method] = cr
    largest = max([c.max_radius for *_, c in curves] + list(ceilings.values()) + [0.0])
    x_max = 1.12 * largest if largest > 0 else 1.0

    fig = Figure(figsize=(5.2 * len(splits), 4.2))
    axes = fig.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    for ax, split in zip(axes, splits):
        for s, method, kind, curve in curves:
            if s != split:
                continue
            x, y = curve.xy(x_max)
            name = method_label(method, sigma0)
            c = colour(method, methods)
            if kind == "radius":
                ax.plot(x, y, drawstyle="steps-post", color=c, lw=1.8, label=name, zorder=3)
            elif kind == "published":
                ax.plot(
                    x,
                    y,
                    drawstyle="steps-post",
                    color=c,
                    lw=1.4,
                    ls="--",
                    zorder=2,
                    label=PUBLISHED_LABEL if method == "cert_ssb" else f"{name} (published radius)",
                )
            else:
                ax.plot(
                    x,
                    y,
                    drawstyle="steps-post",
                    color=c,
                    lw=6,
                    alpha=0.25,
                    zorder=1,
                    solid_capstyle="butt",
                    label=f"{name}, after storage update",
                )
        shared = len(ceilings) > 1 and np.ptp(list(ceilings.values())) <= 1e-9 * max(ceilings.values())
        published = any(k == "published" and s == split for s, _, k, _ in curves)
        what = "ceiling of the sound radius" + (" (not of the published one)" if published else "")
        for method, cr in list(ceilings.items())[:1] if shared else ceilings.items():
            ax.axvline(
                cr,
                color="k" if shared else colour(method, methods),
                lw=0.9,
                ls="-.",
                alpha=0.8,
                label=f"{what}: r = {cr:.3g}"
                if shared or len(ceilings) == 1
                else f"{what} ({method_label(method, sigma0)}): r = {cr:.3g}",
            )
        if attack_norm is not None and 0 < attack_norm <= x_max:
            ax.axvline(attack_norm, color="k", lw=0.9, ls=":", label=f"attack ‖Δ‖ = {attack_norm:.3g}")
        ax.set_xlim(0, x_max)
        ax.set_ylim(0, 1.02)
        ax.set_title(SPLIT_TITLES.get(split, split), fontsize=10)
        ax.set_xlabel("radius r (ℓ2)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("certified accuracy")
    if attack_norm is not None and attack_norm > x_max:
        title += f"\n(attack ‖Δ‖ = {attack_norm:.3g} lies beyond the largest certified radius)"
    fig.suptitle(title, fontsize=10)
    # one legend for both panels, under them: inside a panel it covered the curves
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    rows = -(-len(entries) // 2)
    fig.set_size_inches(fig.get_figwidth(), 4.2 + 0.2 * rows)
    if entries:
        fig.legend(
            list(entries.values()), list(entries), loc="lower center", ncol=2, fontsize=7, frameon=False
        )
    fig.tight_layout(rect=(0, 0.2 * rows / (4.2 + 0.2 * rows) + 0.02, 1, 1))
    return fig


def run_title(what: str, parameters: Mapping[str, Any]) -> str:
    """``what`` plus σ₀, M, n₀, α and the bound read from the run's parameters (ending its first line)."""
    noise = parameters.get("noise", {})
    e = parameters.get("evaluation", {})
    bits = [
        f"σ₀ = {noise.get('sigma'):g}" if noise.get("sigma") is not None else None,
        f"M = {noise.get('num_models')}" if noise.get("num_models") is not None else None,
        f"n₀ = {e.get('n0')}" if e.get("selection", "split") == "split" and e.get("n0") is not None else None,
        f"α = {e.get('alpha'):g}" if e.get("alpha") is not None else None,
        f"bound: {str(e.get('bound')).replace('_', '-')}" if e.get("bound") else None,
    ]
    first, *rest = what.split("\n")  # the parameters close the first line, so a long title stays readable
    return "\n".join([f"{first}  ({', '.join(b for b in bits if b)})", *rest])


def sigma_histogram(sigma: Mapping[str, Any], title: str) -> Figure:
    """Distribution of σ_i per set (training, clean test, triggered test) on shared bins; σ₀ marked.

    A set whose σ is constant (the uniform baseline) is drawn as one labelled vertical line.
    """
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    names = {
        "train": ("training set", "tab:green"),
        "clean": ("clean test set", "tab:blue"),
        "triggered": ("triggered test set", "tab:orange"),
    }
    arrays = {k: np.asarray(sigma[k], dtype=np.float64).reshape(-1) for k in names if k in sigma}
    lo = min(float(v.min()) for v in arrays.values())
    hi = max(float(v.max()) for v in arrays.values())
    n_bins = int(np.clip(np.sqrt(max(v.size for v in arrays.values())), 10, 40))
    bins = np.linspace(lo, hi, n_bins + 1) if hi > lo else None
    for k, v in arrays.items():
        label, colour = names[k]
        if bins is None or np.ptp(v) == 0:
            ax.axvline(
                float(v[0]),
                color=colour,
                lw=5 - 1.5 * list(arrays).index(k),
                label=f"{label}: every σ = {v[0]:.3g} (n = {v.size})",
            )
            continue
        ax.hist(
            v,
            bins=bins,
            weights=np.full(v.size, 1.0 / v.size),
            histtype="step",
            lw=1.6,
            color=colour,
            label=f"{label}: mean {v.mean():.3f}, range [{v.min():.3f}, {v.max():.3f}]",
        )
    if "sigma0" in sigma:
        ax.axvline(float(sigma["sigma0"]), color="k", ls=":", lw=1, label=f"σ₀ = {float(sigma['sigma0']):g}")
    ax.set(xlabel="σ_i (noise level of sample i)", ylabel="fraction of the set's samples", title=title)
    if bins is None:  # uniform smoothing: one σ for every sample, no density to show
        ax.set(xlim=(0.5 * lo, 1.5 * hi), ylabel="", yticks=[])
        ax.text(
            0.02, 0.5, "the same σ for every sample\n(uniform smoothing)", transform=ax.transAxes, fontsize=9
        )
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sigma_increase_panels(panels: Mapping[str, Mapping[str, Any]], title: str) -> Figure:
    """Side by side, one panel per source (e.g. this project's σ and a released σ file): the histogram of
    σ_i − σ₀ for each set, so sources with different σ₀ or test sets share one axis. ``panels`` maps a
    panel title to ``{"sigma0": float, <set label>: array, ...}``."""
    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True))
    inc = {
        p: {
            k: np.asarray(v, dtype=np.float64).reshape(-1) - float(d["sigma0"])
            for k, v in d.items()
            if k != "sigma0"
        }
        for p, d in panels.items()
    }
    hi = max(float(v.max()) for d in inc.values() for v in d.values())
    lo = min(0.0, min(float(v.min()) for d in inc.values() for v in d.values()))
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 31)
    for ax, (name, d) in zip(axes, inc.items()):
        for k, v in d.items():
            ax.hist(
                v,
                bins=bins,
                histtype="step",
                lw=1.6,
                label=f"{k}: mean +{v.mean():.3f}, max +{v.max():.3f} (n = {v.size})",
            )
        ax.set(title=f"{name} (σ₀ = {float(panels[name]['sigma0']):g})", xlabel="σ_i − σ₀", ylabel="samples")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


ACTION_STYLE = {
    "none": ("tab:gray", "unchanged"),
    "trim": ("tab:orange", "trimmed"),
    "zeroed": ("tab:red", "label kept, R = 0"),
    "align": ("tab:purple", "relabelled (paper rule)"),
    "abstain": ("k", "abstained"),
}


def radius_before_after(before: pd.DataFrame, after: pd.DataFrame, title: str) -> Figure:
    """Each test sample's radius before vs after the storage update, coloured by what the update did; when it
    changed nothing, a one-line figure that says so (no scatter on the diagonal)."""
    actions = after["action"].to_numpy() if "action" in after.columns else np.full(len(after), "none")
    rb, ra = before["radius"].to_numpy(np.float64), after["radius"].to_numpy(np.float64)
    if np.isin(actions, ("none", "abstain")).all() and np.allclose(
        rb, ra
    ):  # nothing to see: say so, no scatter
        fig = Figure(figsize=(5.2, 1.2))
        fig.text(
            0.5,
            0.5,
            f"{title}:\nno certificate changed (none trimmed or relabelled; {len(after)} test samples)",
            ha="center",
            va="center",
            fontsize=9,
        )
        return fig
    fig = Figure(figsize=(5.2, 5))
    ax = fig.subplots()
    for action in list(ACTION_STYLE) + sorted(set(actions) - set(ACTION_STYLE)):
        m = actions == action
        if not m.any():
            continue
        colour, name = ACTION_STYLE.get(action, ("tab:brown", action))
        ax.scatter(
            rb[m],
            ra[m],
            s=10,
            alpha=0.6,
            c=colour,
            label=f"{name} ({int(m.sum())})",
            zorder=2 if action == "none" else 3,
        )
    hi = max(float(rb.max(initial=0)), float(ra.max(initial=0)), 1e-3) * 1.05
    ax.plot([0, hi], [0, hi], "k:", lw=0.8, label="unchanged radius (y = x)")
    ax.set(
        xlim=(-0.02 * hi, hi),
        ylim=(-0.02 * hi, hi),
        xlabel="radius before the storage update (ℓ2)",
        ylabel="radius after the storage update (ℓ2)",
        title=title,
    )
    ax.title.set_fontsize(10)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def study_figure(
    certs: pd.DataFrame,
    attacks: list[str],
    sigmas: list[float],
    *,
    ceilings: dict[tuple[str, float, str], float | None] | None = None,
    parameters: dict[str, Any] | None = None,
) -> Figure:
    """Certified accuracy vs radius, exact step curves from the certificates: one panel per (attack, σ₀).

    Colour: the method (dark for clean inputs, light for triggered ones); line style: the kind of radius
    (solid: the sound radius; dashed: Cert-SSB as published, clean inputs only); dash-dot: the ceiling of the
    sound radius, in the method's colour. One legend, outside the panels. ``certs`` is the certificate tables
    of every cell with ``attack`` and ``cell_sigma`` (σ₀) columns.
    """
    panels = [(a, sg) for a in attacks for sg in sigmas]
    # one sigma_0 and many attacks (a rate axis): wrap the panels into rows of up to 4
    ncols = min(4, len(panels)) if len(sigmas) == 1 else len(sigmas)
    nrows = -(-len(panels) // ncols)
    height = 2.9 * nrows + 0.6
    methods = list(dict.fromkeys(certs["method"]))
    legend_w = 3.7  # inches to the right of the panels for the one legend
    fig = Figure(figsize=(3.6 * ncols + legend_w, height))
    grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    for ax in grid.flat[len(panels) :]:
        ax.set_visible(False)
    ceilings = ceilings or {}
    handles: dict[str, Any] = {}
    for k, (a, sg) in enumerate(panels):
        i, j = divmod(k, ncols)
        ax = grid[i, j]
        cell = certs[(certs["attack"] == a) & np.isclose(certs["cell_sigma"], sg)]
        drawn: list[tuple[str, str, str, str, StepCurve]] = []  # (method, split, linestyle, label, curve)
        for method in dict.fromkeys(cell["method"]):
            name = method_label(method)
            for split in ("clean", "triggered"):
                g = cell[(cell["method"] == method) & (cell["split"] == split)]
                if len(g) == 0:
                    continue
                drawn.append((method, split, "-", f"{name}, {split}: sound radius", step_curve(g)))
                if (
                    split == "clean"
                    and "radius_published" in g.columns
                    and method == "cert_ssb"
                    and not np.allclose(g["radius_published"], g["radius"])
                ):
                    drawn.append(
                        (
                            method,
                            split,
                            "--",
                            "Cert-SSB, clean: as published (not a poisoning certificate)",
                            step_curve(g, "radius_published"),
                        )
                    )
        largest = max([c.max_radius for *_, c in drawn] + [0.0])
        x_max = 1.12 * largest if largest > 0 else 1.0
        for method, split, ls, label, curve in drawn:
            x, y = curve.xy(x_max)
            (line,) = ax.plot(
                x, y, drawstyle="steps-post", ls=ls, lw=1.5, color=shade(method, split, methods)
            )
            handles.setdefault(label, line)
        for method in dict.fromkeys(cell["method"]):
            c = ceilings.get((a, sg, method))
            g = cell[cell["method"] == method]
            col = "sigma_min" if "sigma_min" in g.columns else "sigma"
            if c is not None and c * float(g[col].max()) <= x_max:
                line = ax.axvline(c * float(g[col].max()), color=colour(method, methods), ls="-.", lw=0.8)
                handles.setdefault(f"{method_label(method)}: ceiling of the sound radius", line)
        ax.set_xlim(0, x_max)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"attack {a}, σ₀ = {sg:g}", fontsize=9)
        ax.grid(alpha=0.3)
        if k + ncols >= len(panels):
            ax.set_xlabel("radius r (ℓ2)")
        if j == 0:
            ax.set_ylabel("certified accuracy")
    fig.legend(list(handles.values()), list(handles), loc="center right", fontsize=7, frameon=False)
    title = "certified accuracy vs radius (exact step curves)"
    if parameters is not None:
        title = run_title(title, {**parameters, "noise": {**parameters.get("noise", {}), "sigma": None}})
    fig.suptitle(title, fontsize=10)
    right = 1 - legend_w / (3.6 * ncols + legend_w)
    fig.tight_layout(rect=(0, 0, right, 1 - 0.45 / height))  # room for the legend and the title
    return fig
