"""The attack-strength sweep: its grid, its measurements against a direct computation, and the choice of the
weakest setting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from certssb.core import strength
from certssb.core.ensemble import TrainConfig
from certssb.core.triggers import apply_trigger
from certssb.core.validation import ConfigError

MODEL = TrainConfig(architecture="mlp", epochs=3, batch_size=32, lr=0.01, weight_decay=0.0)


def _data(n_train: int = 240, n_test: int = 120, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.arange(n) % 3
        x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
        for c in range(3):  # class c: a bright row c
            x[y == c, 0, 2 * c + 1, :] += 0.6
        return x.clamp(0, 1), y

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte, "num_classes": 3}


def test_the_grid_varies_delta_only_for_additive_triggers():
    grid = strength.settings_grid(["onepixel", "badnets"], ["dirty", "clean"], [0.01, 0.1], [1.0, 4.0], [2])
    assert len(grid) == 2 * 2 * 2 + 1 * 2 * 2  # onepixel x 2 deltas, badnets x 1
    assert {s.delta for s in grid if s.trigger == "badnets"} == {1.0}
    assert len(set(grid)) == len(grid)


@pytest.mark.parametrize(
    "axis, kwargs, match",
    [
        ("triggers", {"triggers": ["sparkle"]}, r"parameter 'triggers' = "),
        ("label_modes", {"label_modes": ["both"]}, r"parameter 'label_modes' = "),
        ("poison_rates", {"poison_rates": [0.0]}, r"parameter 'poison_rates' = "),
        ("poison_rates", {"poison_rates": [1.5]}, r"parameter 'poison_rates' = "),
        ("deltas", {"deltas": [-1.0]}, r"parameter 'deltas' = "),
        ("epochs", {"epochs": []}, r"parameter 'epochs' = "),
    ],
)
def test_a_bad_axis_is_refused_by_name(axis, kwargs, match):
    args = {
        "triggers": ["onepixel"],
        "label_modes": ["dirty"],
        "poison_rates": [0.1],
        "deltas": [1.0],
        "epochs": [1],
        **kwargs,
    }
    with pytest.raises(ConfigError, match=match):
        strength.settings_grid(**args)


def test_a_measured_setting_matches_a_direct_computation_and_is_deterministic():
    d = _data()
    s = strength.Setting("badnets", "dirty", 0.25, 1.0, 3)
    kw = {"badnets_size": 2, "pattern_seed": 0, "blend_alpha": 0.2}
    row = strength.measure_setting(
        s,
        d,
        target=0,
        model=MODEL,
        seed=3,
        device=torch.device("cpu"),
        trigger_kwargs=kw,
        reference=lambda e: 0.5,
    )
    again = strength.measure_setting(
        s,
        d,
        target=0,
        model=MODEL,
        seed=3,
        device=torch.device("cpu"),
        trigger_kwargs=kw,
        reference=lambda e: 0.5,
    )
    assert row == again
    assert row["n_poisoned"] == 60 and row["clean_drop"] == pytest.approx(0.5 - row["clean_accuracy"])
    # recompute the ASR by hand with the same poisoned training set and model
    from certssb.core.poisoning import poison

    res = poison(
        d["x_train"],
        d["y_train"],
        attack="badnets",
        poison_rate=0.25,
        target=0,
        delta=1.0,
        num_classes=3,
        seed=3,
        **kw,
    )
    net = strength._train(res.x, res.y, MODEL, 3, 3, torch.device("cpu"))
    keep = d["y_test"] != 0
    xt, _ = apply_trigger(d["x_test"][keep], "badnets", 1.0, **kw)
    with torch.no_grad():
        asr = float((net(xt).argmax(1) == 0).float().mean())
        acc = float((net(d["x_test"]).argmax(1) == d["y_test"]).float().mean())
    assert row["attack_success_rate"] == pytest.approx(asr) and row["clean_accuracy"] == pytest.approx(acc)
    assert row["attack_success_rate"] > 0.5  # a learnable patch at 25 %: the measurement sees a real attack


def test_the_sweep_trains_one_clean_reference_per_epoch_count():
    d = _data(n_train=120, n_test=60)
    settings = [
        strength.Setting("onepixel", "dirty", 0.1, 1.0, 1),
        strength.Setting("onepixel", "dirty", 0.2, 1.0, 1),
        strength.Setting("onepixel", "dirty", 0.1, 1.0, 2),
    ]
    t = strength.sweep(settings, d, target=0, model=MODEL, seed=0, device=torch.device("cpu"))
    assert len(t) == 3 and t["clean_reference"].iloc[0] == t["clean_reference"].iloc[1]
    assert np.isfinite(t["clean_drop"]).all()


def _row(trigger, rate, n, asr, drop, norm=1.0, epochs=4, mode="dirty"):
    return {
        "trigger": trigger,
        "label_mode": mode,
        "poison_rate": rate,
        "delta": 1.0,
        "epochs": epochs,
        "n_poisoned": n,
        "trigger_norm": norm,
        "clean_accuracy": 0.9,
        "attack_success_rate": asr,
        "clean_reference": 0.9 + drop,
        "clean_drop": drop,
    }


def test_the_weakest_setting_is_the_fewest_points_that_reach_the_threshold_without_hurting_accuracy():
    t = pd.DataFrame(
        [
            _row("badnets", 0.01, 40, 0.95, 0.05),  # strong but costs 5 points of accuracy: not allowed
            _row("badnets", 0.02, 80, 0.92, 0.01, epochs=10),
            _row("badnets", 0.02, 80, 0.91, 0.00, epochs=4),  # same points, fewer epochs: preferred
            _row("badnets", 0.05, 200, 0.99, 0.00),
            _row("onepixel", 0.1, 400, 0.40, 0.0),
        ]
    )
    w = strength.weakest_settings(t, thresholds=[0.9], max_clean_drop=0.02)
    b = w[w["trigger"] == "badnets"].iloc[0]
    assert b["reached"] and b["n_poisoned"] == 80 and b["epochs"] == 4
    o = w[w["trigger"] == "onepixel"].iloc[0]
    assert not o["reached"] and o["attack_success_rate"] == 0.40


def test_a_setting_that_makes_the_same_poisoned_set_is_not_retrained():
    d = _data(n_train=120, n_test=60)
    d["x_train"][:, :, 3, 3] = 0.0  # onepixel sets pixel (h - 5, w - 5): clamped at 1 for any delta >= 1
    d["x_test"][:, :, 3, 3] = 0.0
    settings = [
        strength.Setting("onepixel", "dirty", 0.2, 1.0, 1),
        strength.Setting("onepixel", "dirty", 0.2, 4.0, 1),
        strength.Setting("onepixel", "dirty", 0.2, 0.5, 1),
    ]
    t = strength.sweep(settings, d, target=0, model=MODEL, seed=0, device=torch.device("cpu"))
    assert t["trigger_norm"].tolist()[:2] == [1.0, 1.0] and t["delta"].tolist() == [1.0, 4.0, 0.5]
    assert t["same_as_delta"].iloc[1] == 1.0 and np.isnan(t["same_as_delta"].iloc[[0, 2]]).all()
    assert t["attack_success_rate"].iloc[0] == t["attack_success_rate"].iloc[1]
