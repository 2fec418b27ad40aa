"""Thin nodes of the attack_strength pipeline: the sweep over trigger, label mode, poison rate, delta and
epochs on the undefended model (:mod:`certssb.core.strength`), its weakest settings, and a figure."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from certssb.config import AttackBlock, ModelBlock, StrengthBlock, core_errors, train_config
from certssb.core import strength as core
from certssb.core.ensemble import resolve_device
from certssb.core.triggers import trigger_options
from certssb.reporting.attack_figures import strength_figure
from certssb.reporting.progress import progress_bar

log = logging.getLogger(__name__)


def _grid(strength: StrengthBlock) -> StrengthBlock:
    """The grid the sweep runs: ``strength``, or with ``strength.quick`` its ``quick_grid`` keys replaced
    (checked as a block when the run starts, ``certssb.config.validate``)."""
    if not strength.quick:
        return strength
    return StrengthBlock.model_validate({**strength.model_dump(), **strength.quick_grid})


@core_errors(  # core.poisoning's arguments come from the grid here; the target, trigger options from attack
    "strength",
    "attack",
    "model",
    attack="strength.triggers",
    trigger="strength.triggers",
    label_mode="strength.label_modes",
    poison_rate="strength.poison_rates",
    delta="strength.deltas",
)
def sweep_attack_strength(
    raw_dataset: dict[str, Any],
    strength: StrengthBlock,
    attack: AttackBlock,
    model: ModelBlock,
    seed: int,
    device: str,
) -> pd.DataFrame:
    """Undefended ASR and clean accuracy for every setting of the grid (``strength.quick``: the quick
    grid)."""
    g = _grid(strength)
    settings = core.settings_grid(g.triggers, g.label_modes, g.poison_rates, g.deltas, g.epochs)
    with progress_bar(len(settings), "attack-strength settings") as bar:

        def progress(it):
            for s in it:
                yield s
                bar.update(1)

        return core.sweep(
            settings,
            raw_dataset,
            target=attack.target,
            model=train_config(model),
            seed=seed,
            device=resolve_device(device),
            trigger_kwargs=trigger_options(attack),
            progress=progress,
        )


@core_errors("strength")
def summarise_attack_strength(table: pd.DataFrame, strength: StrengthBlock) -> tuple[pd.DataFrame, Figure]:
    """The weakest setting per trigger, label mode and ASR threshold, and the ASR-vs-poison-rate figure."""
    weakest = core.weakest_settings(table, strength.thresholds, strength.max_clean_drop)
    for r in weakest.itertuples():
        log.info(
            "ASR >= %.2f, %s/%s: %s",
            r.threshold,
            r.trigger,
            r.label_mode,
            f"rate {r.poison_rate:g} ({r.n_poisoned} points), delta {r.delta:g}, {r.epochs} epochs: ASR "
            f"{r.attack_success_rate:.3f}, clean drop {r.clean_drop:+.3f}"
            if r.reached
            else f"not reached (best ASR {r.attack_success_rate:.3f})",
        )
    return weakest, strength_figure(table, strength.thresholds, strength.max_clean_drop)
