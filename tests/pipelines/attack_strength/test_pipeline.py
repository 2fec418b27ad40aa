"""The attack_strength pipeline end to end on a tiny grid: a table row per setting, the weakest settings and
a figure, all versioned; a bad grid value is refused before anything runs."""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

TINY = {
    "data": {"max_train": 600, "max_test": 200},
    "model": {"architecture": "mlp"},
    "strength": {
        "quick": True,
        "quick_grid": {
            "triggers": ["badnets", "onepixel"],
            "label_modes": ["dirty"],
            "poison_rates": [0.2],
            "deltas": [1.0],
            "epochs": [3],
        },
        "thresholds": [0.5],
    },
}


def test_the_sweep_writes_a_row_per_setting_and_the_weakest_settings(project):
    project.run(["attack_strength"], params=TINY)
    table = pd.read_csv(project.latest("data/08_reporting/attack_strength/attack_strength_table.csv"))
    weakest = pd.read_csv(project.latest("data/08_reporting/attack_strength/attack_strength_weakest.csv"))
    assert list(table["trigger"]) == ["badnets", "onepixel"] and set(table["n_poisoned"]) == {120}
    assert table["attack_success_rate"].between(0, 1).all()
    assert (table["clean_drop"] == table["clean_reference"] - table["clean_accuracy"]).all()
    badnets = table[table["trigger"] == "badnets"].iloc[0]
    assert badnets["attack_success_rate"] >= 0.5  # a 3x3 white patch on 20 % relabelled points is learnt
    assert len(weakest) == 2 and set(weakest["threshold"]) == {0.5}
    assert (
        project.latest("data/08_reporting/attack_strength/attack_strength_figure.png").stat().st_size > 1000
    )


def test_a_bad_strength_value_is_refused_before_anything_runs(project):
    with pytest.raises(Exception, match=r"strength\.label_modes"):
        project.run(["attack_strength"], params={"strength": {"label_modes": ["sideways"]}})
    with pytest.raises(Exception, match=r"strength\.quick_grid\.epoch"):
        project.run(["attack_strength"], params={"strength": {"quick_grid": {"epoch": [2]}}})
