"""evaluation's certify node called directly: the sound sigma floor with non-uniform sigma.

``radius = sigma_min * R1`` with ``sigma_min(x) = min(sigma_x, min_i sigma_i)`` over ALL training points
(``certssb.core.certify.sound_sigma_min``, docs/methods.md#sound-radius). The training sigmas below have a
minimum (0.1) far from their mean (0.46) and from the test sigmas, so a floor at the mean, at sigma_x, or no
floor at all gives other radii than the ones asserted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import beta, norm

from certssb.config import block
from certssb.pipelines.evaluation.nodes import certify_samples

M, N, C = 40, 4, 3


def _votes(top: list[int]) -> dict[str, Any]:
    """One-hot votes: every model votes ``top[i]`` for sample i, on both splits."""
    v = torch.zeros(M, N, C)
    v[:, torch.arange(N), torch.tensor(top)] = 1.0
    split = {"votes": v, "probs": v.clone()}
    return {"method": "cert_ssb", "ensemble": "e" * 16, "sigma": "s" * 16, "clean": split, "triggered": split}


def test_the_sound_radius_floors_sigma_at_the_smallest_training_sigma(base_params):
    train = torch.tensor([0.1, 0.5, 0.6, 0.6, 0.5], dtype=torch.float32)  # min 0.1, mean 0.46
    test = torch.tensor([0.4, 0.05, 0.3, 0.7], dtype=torch.float32)  # one below the training minimum
    sigma = {"fingerprint": "s" * 16, "train": train, "clean": test, "triggered": test}
    labels = torch.tensor([0, 1, 2, 0])
    data = {"y": labels, "num_classes": C}
    e = {"bound": "clopper_pearson", "selection": "split", "n0": 5, "alpha": 0.01}
    evaluation = block("evaluation", {**base_params["evaluation"], **e})
    table = certify_samples(_votes([0, 1, 2, 0]), data, data, sigma, evaluation)
    clean = table[table["split"] == "clean"].reset_index(drop=True)

    # all M - n0 = 35 estimation votes agree: p_A = alpha^(1/35) (one-sided Clopper-Pearson), R1 = Phi^-1(p_A)
    r1 = norm.ppf(beta.ppf(0.01, 35, 1))
    assert clean["r1"].to_numpy() == pytest.approx(np.full(N, r1))
    floor = np.minimum(test.double().numpy(), 0.1)  # min(sigma_x, min_i sigma_i) = [0.1, 0.05, 0.1, 0.1]
    assert clean["sigma_min"].to_numpy() == pytest.approx(floor)
    assert clean["radius"].to_numpy() == pytest.approx(floor * r1)
    assert clean["radius_published"].to_numpy() == pytest.approx(test.double().numpy() * r1)
    # what a floor at the mean of the training sigmas (or none) would have given: larger, unsound radii
    at_mean = np.minimum(test.double().numpy(), float(train.double().mean())) * r1
    assert not np.allclose(clean["radius"].to_numpy(), at_mean)
    assert (clean["radius"].to_numpy() <= clean["radius_published"].to_numpy()).all()


def test_each_methods_mlflow_run_gets_its_own_block_when_only_some_methods_run(monkeypatch):
    """``methods: [uniform, cert_ssb]``: the own blocks and the per-method artifacts stay paired (the node
    reads as many own blocks as the pipeline passes, not one per known certifier)."""
    from certssb.config import block as make
    from certssb.pipelines.evaluation import nodes

    logged = {}

    def log_method_run(method, metrics_, table, sigma, **kw):
        logged[method] = (metrics_, table, sigma, kw["config"])
        return method + "-run"

    monkeypatch.setattr(nodes.tracking, "log_method_run", log_method_run)
    shared = {b: {} for b in nodes.CONFIG_BLOCKS} | {"seed": 0, "attack": {"name": "badnets"}}
    shared["noise"] = make("noise", {"sigma": 0.25, "num_models": 50, "num_draws": 1, "materialise": 0})
    own = [make("uniform", {"method": "uniform"}), make("cert_ssb", {"method": "cert_ssb"})]
    artifacts = [{"method": "uniform"}, "uniform-table", "uniform-sigma"]
    artifacts += [{"method": "cert_ssb"}, "cert_ssb-table", "cert_ssb-sigma"]
    out = nodes.log_mlflow_runs(*shared.values(), *own, *artifacts, methods=("uniform", "cert_ssb"))
    assert out["runs"] == {"uniform": "uniform-run", "cert_ssb": "cert_ssb-run"}
    for method in ("uniform", "cert_ssb"):
        metrics_, table, sigma, config = logged[method]
        assert (metrics_["method"], table, sigma) == (method, f"{method}-table", f"{method}-sigma")
        assert config[method] == {"method": method}  # its own block, as configured
        assert config["noise"]["sigma"] == 0.25  # the typed blocks logged as the mappings they came from
    assert "pilot" in logged["cert_ssb"][3] and "pilot" not in logged["uniform"][3]
