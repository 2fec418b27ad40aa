"""The results table printed at the end of ``kedro run`` (``certssb.hooks.ResultsTableHook``).

One row per method: clean accuracy, attack success rate of the smoothed ensemble and of the undefended
model, certified accuracy at three radii of the grid on the sound ``radius`` (for Cert-SSB the published
radius's value beside it, labelled "pub."), the abstain rate; below it, where the artifacts and the MLflow
run are. Read from the catalog's ``{method}.metrics`` and ``undefended_metrics`` after the run.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

LABELS = {"uniform": "uniform σ", "cert_ssb": "Cert-SSB", "cohen": "Cohen et al. (evasion)"}


def radius_key(r: float) -> str:
    """``0.5 -> "r050"`` (as ``certssb.core.metrics.radius_key``)."""
    return f"r{round(r * 100):03d}"


def pick_radii(radii: Sequence[float], k: int = 3) -> list[float]:
    """``k`` non-zero grid radii near r_min, 2 r_min, 4 r_min (the grid's own values, no repeats)."""
    nonzero = sorted(r for r in radii if r > 0)
    if len(nonzero) <= k:
        return nonzero
    out: list[float] = []
    for target in (nonzero[0] * 2 ** i for i in range(k)):
        best = min((r for r in nonzero if r not in out), key=lambda r: abs(r - target))
        out.append(best)
    return sorted(out)


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{float(v):.3f}"


def rows(method_metrics: Mapping[str, Mapping[str, Any]], undefended: Mapping[str, Any] | None,
         radii: Sequence[float]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table (strings, 3 decimals)."""
    header = ["method", "clean acc", "ASR smoothed", "ASR undefended",
              *[f"cert acc r={r:g}" for r in radii], "abstain"]
    body = []
    for method, m in method_metrics.items():
        def get(*keys: str) -> Any:
            return next((m[k] for k in keys if k in m and m[k] is not None), None)

        cells = [LABELS.get(method, method), _fmt(get("clean_accuracy", "accuracy")),
                 _fmt(get("attack_success_rate")),
                 _fmt(get("undefended_attack_success_rate") if undefended is None
                      else undefended.get("attack_success_rate"))]
        for r in radii:
            key = radius_key(r)
            sound = get(f"cert_acc_{key}", f"cert_acc_r{r:.2f}")
            cell = _fmt(sound)
            published = get(f"cert_acc_published_{key}")
            if published is not None and method == "cert_ssb":
                cell += f" (pub. {_fmt(published)})"
            cells.append(cell)
        cells.append(_fmt(get("abstain_rate")))
        body.append(cells)
    return header, body


def render(method_metrics: Mapping[str, Mapping[str, Any]], undefended: Mapping[str, Any] | None,
           radii: Sequence[float], footer: Sequence[str] = ()) -> None:
    """Print the table with rich (plain text when rich is missing)."""
    header, body = rows(method_metrics, undefended, radii)
    title = "certssb results: certified accuracy on the sound radius (pub. = Cert-SSB as published, not a " \
            "poisoning certificate)"
    if "cohen" in method_metrics:
        from certssb.core.smoothing import THREAT_MODEL

        title += f"; Cohen et al. (evasion): {THREAT_MODEL}"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich ships with Kedro
        print(title)
        print(" | ".join(header))
        for r in body:
            print(" | ".join(r))
        for line in footer:
            print(line)
        return
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in body:
        table.add_row(*r)
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: no wrapping at rich's default 80 columns
        console = Console(width=200)
    console.print(table)
    for line in footer:
        console.print(line, highlight=False, soft_wrap=True)
