"""The results table printed at the end of ``kedro run`` (``certssb.hooks.ResultsTableHook``).

One row per method (every method the run evaluated): clean accuracy, attack success rate of the smoothed
ensemble and of the undefended model, certified accuracy on the sound ``radius`` at r = 0 and at grid radii
the certificate can reach (below the bound's ceiling, :func:`reach_radii`; for Cert-SSB the published
radius's value beside it, labelled "pub."), the abstain rate; below it the ceiling, whether the attack lies
inside the certified threat model, where the artifacts and the MLflow run are. Read from the catalog's
``{method}.metrics`` and ``undefended_metrics`` after the run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.logging import RichHandler

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
    for target in (nonzero[0] * 2**i for i in range(k)):
        best = min((r for r in nonzero if r not in out), key=lambda r: abs(r - target))
        out.append(best)
    return sorted(out)


def ceilings(method_metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The largest sound radius each method of the run can certify: its bound's ceiling in sigma units times
    the smallest training sigma (the sound radius scales with ``sigma_min``)."""
    out = {}
    for method, m in method_metrics.items():
        c, s = m.get("radius_ceiling_sigma_units"), m.get("sigma_train_min")
        if c is not None and s is not None:
            out[method] = float(c) * float(s)
    return out


def ceiling_radius(method_metrics: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The largest sound radius any method of the run can certify (the largest of :func:`ceilings`)."""
    return max(ceilings(method_metrics).values(), default=None)


def reach_radii(radii: Sequence[float], ceiling: float | None, k: int = 3) -> list[float]:
    """r = 0 and up to ``k`` grid radii below ``ceiling`` (:func:`pick_radii`); columns above the ceiling
    would be 0 for every method by construction."""
    below = [r for r in radii if r > 0 and (ceiling is None or r < ceiling)]
    return [0.0, *pick_radii(below, k)]


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{float(v):.3f}"


def rows(
    method_metrics: Mapping[str, Mapping[str, Any]],
    undefended: Mapping[str, Any] | None,
    radii: Sequence[float],
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table (strings, 3 decimals)."""
    header = [
        "method",
        "clean acc",
        "ASR smoothed",
        "ASR undefended",
        *[f"cert acc r={r:g}" for r in radii],
        "abstain",
    ]
    body = []
    for method, m in method_metrics.items():

        def get(*keys: str) -> Any:
            return next((m[k] for k in keys if k in m and m[k] is not None), None)

        cells = [
            LABELS.get(method, method),
            _fmt(get("clean_accuracy", "accuracy")),
            _fmt(get("attack_success_rate")),
            _fmt(
                get("undefended_attack_success_rate")
                if undefended is None
                else undefended.get("attack_success_rate")
            ),
        ]
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


def notes(method_metrics: Mapping[str, Mapping[str, Any]], radii: Sequence[float]) -> list[str]:
    """The lines under the table: the bound's ceiling, and whether the attack lies in the threat model."""
    out = []
    per = ceilings(method_metrics)
    if per:
        each = ", ".join(f"{LABELS.get(m, m)} r = {c:.3f}" for m, c in per.items())
        out.append(
            f"ceiling of the sound radius (no certificate exceeds it): {each}; radii shown: r = 0 and "
            "grid radii below the largest"
        )
    inside = {m.get("attack_in_threat_model") for m in method_metrics.values()} - {None}
    if inside == {False}:
        out.append(
            "attack: outside the certified threat model (labels changed or points inserted): no "
            "radius above certifies against it"
        )
    elif inside == {True}:
        out.append("attack: inside the certified threat model (label-preserving feature perturbation)")
    return out


def render(
    method_metrics: Mapping[str, Mapping[str, Any]],
    undefended: Mapping[str, Any] | None,
    radii: Sequence[float],
    footer: Sequence[str] = (),
) -> None:
    """Print the table with rich (plain text when rich is missing)."""
    header, body = rows(method_metrics, undefended, radii)
    title = (
        "certssb results: certified accuracy on the sound radius (pub. = Cert-SSB as published, not a "
        "poisoning certificate)"
    )
    if "cohen" in method_metrics:
        from certssb.core.smoothing import THREAT_MODEL

        title += f"; Cohen et al. (evasion): {THREAT_MODEL}"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich ships with Kedro
        print(title)
        footer = [*notes(method_metrics, radii), *footer]
        print(" | ".join(header))
        for r in body:
            print(" | ".join(r))
        for line in footer:
            print(line)
        return
    footer = [*notes(method_metrics, radii), *footer]
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


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class QuietWarnings(logging.Filter):
    """The filter of :class:`LogHandler` (conf/logging.yml's handler): drops third-party warnings that tell a
    user nothing (:data:`HARMLESS`) and strips ANSI colour codes from the others (mlflow colours its own)."""

    HARMLESS = (
        "Add type hints to the `predict` method",  # mlflow.pyfunc, on import by kedro-mlflow
        "register_new_resolver() is deprecated",  # omegaconf, called by kedro and kedro-mlflow
        "dataset names contain '.'",  # kedro: namespaced names (uniform.sigma, study.<cell>.*)
        "class-based `config` is deprecated",  # pydantic, kedro-mlflow's config classes
    )

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(h in text for h in self.HARMLESS):
            return False
        if "\x1b[" in text:
            record.msg, record.args = _ANSI.sub("", text), None
        return True


def quiet() -> None:
    """What conf/logging.yml cannot say (Kedro refuses custom filter and handler classes there): the root
    handlers drop :data:`QuietWarnings.HARMLESS` warnings and strip ANSI codes, and a rich handler writing to
    a file or a pipe is 160 columns wide (rich's default of 80 wrapped each log line in two or three). The
    same warnings are also ignored at the source (``warnings.filterwarnings``). Idempotent."""
    import warnings

    for text in QuietWarnings.HARMLESS:
        warnings.filterwarnings("ignore", message=r"(?s).*" + re.escape(text))
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, QuietWarnings) for f in handler.filters):
            handler.addFilter(QuietWarnings())
        console = getattr(handler, "console", None)
        if isinstance(handler, RichHandler) and console is not None and not console.is_terminal:
            console.width = max(console.width, 160)
