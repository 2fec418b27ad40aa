"""The study's one node of its own: join the cells' metrics, certified-accuracy tables and certificates."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from certssb.config import StudyBlock
from certssb.reporting import attack_figures
from certssb.reporting import figures as reporting

from .grid import Cell, cell_poison_rate


def summarise(
    study: StudyBlock, *per_cell: Any, grid: list[Cell], methods: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame, Figure, Figure]:
    """One summary row per (cell, method) with its scalar metrics; the curves of every cell; the certified-
    accuracy figure (one panel per attack [@ rate] and sigma_0); the figure against the poison rate.

    ``per_cell`` holds, for each cell and method in turn, (metrics, certified_accuracy, certificates).
    """
    rows, curves, certs, ceilings = [], [], [], {}
    it = iter(per_cell)
    for cell in grid:
        for method in methods:
            metrics, table, cert = next(it), next(it), next(it)
            label = {
                "attack": cell.attack,
                "sigma": cell.sigma,
                "method": method,
                "rate": cell_poison_rate(study.model_dump(), cell),
                **({} if cell.seed is None else {"seed": cell.seed}),
            }
            rows.append(
                {
                    **label,
                    **{
                        k: v
                        for k, v in metrics.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)
                    },
                    # travels with the numbers: outside the threat model no reach metric is there
                    "attack_in_threat_model": metrics.get("attack_in_threat_model"),
                }
            )
            curves.append(
                table.assign(
                    attack=cell.attack, sigma=cell.sigma, **({} if cell.seed is None else {"seed": cell.seed})
                )
            )
            certs.append(cert.assign(attack=cell.panel, cell_sigma=cell.sigma, method=method))
            ceilings[(cell.panel, cell.sigma, method)] = metrics.get("radius_ceiling_sigma_units")
    summary = pd.DataFrame(rows)
    fig = reporting.study_figure(
        pd.concat(certs, ignore_index=True),
        list(dict.fromkeys(c.panel for c in grid)),
        list(dict.fromkeys(c.sigma for c in grid)),
        ceilings=ceilings,
    )
    return summary, pd.concat(curves, ignore_index=True), fig, attack_figures.rate_figure(summary)
