"""What ``scaling.py`` makes of its measurements: the fit t(M), the summary, the plot and the table.

Nothing here times anything; ``scaling.py --plot-only JSON`` uses only ``plot``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _common as C
from _stats import QUIET_THRESHOLD_CORES, fit_line


def summarise_sweep(result: dict[str, Any], startup: dict[str, Any] | None, notes: list[str]) -> None:
    """Add ``fit_time_vs_M`` (t = overhead + M * s/model, least squares over the best runs) and
    ``summary`` to ``result``; note when other processes slowed the best runs."""
    rows, names = result["results"], result["backends"]
    result["fit_time_vs_M"] = {
        k: fit_line([r["M"] for r in rows], [r["backends"][k]["best_s"] for r in rows]) for k in names
    }
    busy = max(
        (r["backends"][k].get("foreign_cores_in_best_run") or 0.0 for r in rows for k in names), default=None
    )
    result["summary"] = {
        "models_per_second": {
            k: {str(r["M"]): r["backends"][k]["models_per_second"] for r in rows} for k in names
        },
        "ray_init_s": startup.get("init_s") if startup else None,
        "ray_first_call_cold_minus_warm_s": (
            {k: v["cold_minus_warm_s"] for k, v in startup["first_call"].items()} if startup else None
        ),
        "max_foreign_cores_in_best_runs": busy,
    }
    if busy is not None and busy > QUIET_THRESHOLD_CORES:
        notes.append(
            f"other processes used up to {busy:.2f} cores during the best runs: the timings are "
            "distorted (multi-threaded in-process backends suffer most: their OpenMP threads wait "
            "for each other when a core is taken)"
        )


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """models/s against M (log x), one line per backend; contended best runs as hollow markers."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        print("matplotlib missing: no plot")
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    any_contended = False
    for i, name in enumerate(result["backends"]):
        pts = [
            (
                r["M"],
                r["backends"][name]["models_per_second"],
                (r["backends"][name].get("foreign_cores_in_best_run") or 0.0) >= QUIET_THRESHOLD_CORES,
            )
            for r in result["results"]
            if name in r["backends"]
        ]
        if not pts:
            continue
        (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=f"C{i}")
        bad = [p for p in pts if p[2]]
        if bad:  # contended best run: hollow marker
            any_contended = True
            ax.plot(
                [p[0] for p in bad],
                [p[1] for p in bad],
                linestyle="none",
                marker="o",
                markersize=9,
                markerfacecolor="white",
                markeredgecolor=line.get_color(),
            )
    if any_contended:
        ax.plot(
            [],
            [],
            linestyle="none",
            marker="o",
            markerfacecolor="white",
            markeredgecolor="grey",
            label=f"contended (others >= {QUIET_THRESHOLD_CORES} cores)",
        )
    ax.set_xscale("log", base=2)
    ms = [r["M"] for r in result["results"]]
    ax.set_xticks(ms, [str(m) for m in ms])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("ensemble size M (models per call)")
    ax.set_ylabel("models / s (best of runs)")
    env, wl = result["environment"], result["workload"]
    ax.set_title(
        f"small_cnn, {wl['samples']} samples, {wl['epochs']} epoch -- {env['device_type']} "
        f"({env['cpu_count']} cores)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_only(json_path: str | Path) -> Path | None:
    """Redraw the plot next to an existing result JSON (same name, .png)."""
    src = Path(json_path)
    return plot(json.loads(src.read_text()), src.with_suffix(".png"))


def print_report(result: dict[str, Any], out: Path, png: Path | None) -> None:
    """The table of models/s per M and backend, the fitted lines, the notes and where the files went."""
    names, wl = result["backends"], result["workload"]
    table = []
    for r in result["results"]:
        t = {"M": r["M"]}
        for k in names:
            b = r["backends"][k]
            t[f"{k} m/s"] = b["models_per_second"]
            t[f"{k} others"] = b.get("foreign_cores_in_best_run")
        table.append(t)
    cols = ["M"] + [f"{k} m/s" for k in names] + [f"{k} others" for k in names]
    dev = result["environment"]["device_type"]
    C.print_table(
        table,
        cols,
        title=f"{result['benchmark']} on {dev}: models/s (best of {wl['repeat']}), "
        f"{wl['samples']} samples, {wl['epochs']} epoch; 'others' = cores used by "
        "other processes in that run",
    )
    for k, f in result["fit_time_vs_M"].items():
        if f:
            print(f"  {k}: t(M) = {f['overhead_s']:.3f} s + M * {f['s_per_model']:.4f} s")
    for note in result["notes"]:
        print("note:", note)
    print(f"total {result['total_wall_s']:.0f} s; wrote {out}" + (f" and {png}" if png else ""))
