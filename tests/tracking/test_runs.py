"""certssb.tracking.runs: the parameter blocks a pipeline uses, their flattening for MLflow, σ statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from certssb.tracking import runs as tracking
from tests.doubles import FakePipeline as _Pipeline


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


def test_a_run_is_described_by_dataset_attack_rate_and_sigma_leaving_out_what_is_not_set():
    params = {
        "data": {"dataset": "mnist_embedded"},
        "attack": {"name": "badnets", "poison_rate": 0.02},
        "noise": {"sigma": 0.25},
    }
    assert tracking.describe(params) == "mnist_embedded · badnets 2% · σ₀=0.25"
    assert tracking.describe({"attack": {"name": "none", "poison_rate": 0.1}}) == "none"  # no rate for none
    assert tracking.describe({"attack": {"name": "abstain"}, "noise": {"sigma": 1}}) == "abstain · σ₀=1"
    assert tracking.describe({"attack": {"name": "onepixel", "poison_rate": 0.0125}}) == "onepixel 1.25%"
    assert tracking.describe({"data": None, "noise": {}}) == ""


def test_the_parent_run_is_named_for_what_ran():
    params = {"attack": {"name": "onepixel", "poison_rate": 0.05}, "noise": {"sigma": 0.5}}
    assert tracking.run_name(["__default__"], params) == "onepixel 5% · σ₀=0.5"
    assert (
        tracking.run_name(["modelling", "evaluation"], params)
        == "evaluation+modelling · onepixel 5% · σ₀=0.5"
    )
    assert tracking.run_name(["study"], params) == "study"  # a sweep: its name only
    assert (
        tracking.run_name(["attack_strength", "data_engineering"], params)
        == "attack_strength+data_engineering"
    )
    assert tracking.run_name([], {}) == "default run"


def test_the_command_a_session_stands_for():
    assert tracking.typed_command({}) == "kedro run"
    run_params = {
        "pipeline_names": ["modelling", "evaluation"],
        "env": "paper_mnist",
        "runtime_params": {"noise": {"sigma": 0.5}, "seed": 3},
    }
    assert tracking.typed_command(run_params) == (
        "kedro run --pipelines=modelling,evaluation --env=paper_mnist --params=noise.sigma=0.5,seed=3"
    )


def test_metric_values_keep_numbers_but_nan_and_bool_under_dot_free_names():
    got = tracking.metric_values(
        {
            "cert_acc_r0.50": 0.5,
            "n": np.int64(3),
            "x": np.float32(0.25),
            "nan": float("nan"),
            "flag": True,
            "method": "uniform",
            "members": [1],
        }
    )
    assert got == {"cert_acc_r050": 0.5, "n": 3.0, "x": 0.25}
    assert all(type(v) is float for v in got.values())


def test_sigma_statistics_leave_out_a_missing_or_empty_split():
    s = tracking.sigma_stats({"train": np.array([0.5, 0.25]), "clean": np.array([])})
    assert s == {"sigma_train_mean": 0.375, "sigma_train_min": 0.25, "sigma_train_max": 0.5}
    assert tracking.sigma_stats({}) == {}
