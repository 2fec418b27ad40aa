"""certssb.tracking.runs: the parameter blocks a pipeline uses, their flattening for MLflow, σ statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from certssb.tracking import runs as tracking


class _Pipeline:
    def __init__(self, inputs=(), outputs=()) -> None:
        self._inputs, self._outputs = set(inputs), set(outputs)

    def inputs(self):
        return self._inputs

    def all_outputs(self):
        return self._outputs


def test_used_blocks_and_flattening():
    p = _Pipeline(inputs={"params:noise", "params:uniform.method", "clean_test"})
    assert tracking.used_blocks(p, {"x"}) == {"noise", "uniform"}
    assert tracking.used_blocks(_Pipeline(inputs={"parameters"}), {"data", "noise"}) == {"data", "noise"}
    flat = tracking.flatten_blocks(
        {
            "noise": {"sigma": 0.25},
            "ensemble": {"ray": {"address": None}},
            "evaluation": {"radii": [0, 0.5]},
            "data": {"x": 1},
        },
        {"noise", "ensemble", "evaluation"},
    )
    assert flat == {"noise.sigma": 0.25, "ensemble.ray.address": None, "evaluation.radii": [0, 0.5]}


def test_sigma_statistics():
    sigma = {
        "train": torch.tensor([0.2, 0.3, 0.4]),
        "clean": torch.tensor([0.25, 0.5]),
        "triggered": torch.tensor([0.1]),
    }
    s = tracking.sigma_stats(sigma)
    assert s["sigma_train_mean"] == pytest.approx(0.3)
    assert (s["sigma_train_min"], s["sigma_train_max"]) == pytest.approx((0.2, 0.4))
    assert (s["sigma_test_min"], s["sigma_test_max"]) == pytest.approx((0.1, 0.5))
    assert s["sigma_test_mean"] == pytest.approx(np.mean([0.25, 0.5, 0.1]))
