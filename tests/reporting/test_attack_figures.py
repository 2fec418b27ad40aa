"""certssb.reporting.attack_figures: the attack-strength and poison-rate figures."""

from __future__ import annotations

import pandas as pd


def test_strength_figure_notes_a_series_hidden_under_another():
    from certssb.reporting.attack_figures import strength_figure

    rows = [
        {
            "trigger": "onepixel",
            "label_mode": "dirty",
            "epochs": e,
            "delta": 1.0,
            "poison_rate": r,
            "attack_success_rate": 0.02,
            "clean_drop": 0.0,
            "trigger_norm": 1.0,
        }
        for e in (4, 8)
        for r in (0.01, 0.02)
    ]
    fig = strength_figure(pd.DataFrame(rows))
    labels = [ln.get_label() for ln in fig.get_axes()[0].get_lines()]
    assert "8 ep (same as 4 ep, overlaps)" in labels and "4 ep" in labels
