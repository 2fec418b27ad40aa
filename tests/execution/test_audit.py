"""certssb.execution.audit: the audit's re-vote draws exactly the input noise of ``predict_votes`` at the
audited points' positions, and the audited points are the certified ones of the top budget band."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from certssb.core.models import build_model
from certssb.core.noise import make_noise_plan
from certssb.core.votes import predict_votes
from certssb.execution.audit import EnsembleLearner, audited_points, select_points


def _ensemble(m=3, n_test=9):
    nets = [build_model("mlp", (1, 4, 4), 3, seed=k) for k in range(m)]
    params = {
        name: torch.stack([dict(n.named_parameters())[name].detach() for n in nets])
        for name, _ in nets[0].named_parameters()
    }
    ens = {
        "method": "cert_ssb",
        "architecture": "mlp",
        "in_shape": [1, 4, 4],
        "num_classes": 3,
        "params": params,
        "model_indices": torch.arange(m),
    }
    plan = make_noise_plan(seed=3, num_models=m, sigma=0.25, num_draws=2, n_train=5, input_shape=(1, 4, 4))
    g = torch.Generator().manual_seed(0)
    test = {"x": torch.rand(n_test, 1, 4, 4, generator=g), "y": torch.arange(n_test) % 3, "num_classes": 3}
    train = {"x": torch.rand(5, 1, 4, 4, generator=g), "y": torch.arange(5) % 3, "num_classes": 3}
    return ens, plan, train, test


def test_the_audit_votes_with_the_same_input_noise_as_the_ensemble_did():
    ens, plan, train, test = _ensemble()
    sigma = torch.linspace(0.2, 0.6, 9)
    full = predict_votes(ens, test["x"], sigma, plan, "clean", device=torch.device("cpu"))["votes"]
    learner = EnsembleLearner(
        ens,
        ens["params"],
        plan=plan,
        train=train,
        test=test,
        sigma_train=np.full(5, 0.3),
        ctx={"device": "cpu"},
    )
    ids = np.array([7, 2, 4])
    got = learner.votes(ids, test["x"][ids], sigma.numpy()[ids])
    assert torch.equal(got, full[:, ids])


def test_points_are_the_certified_ones_of_the_top_band_in_stratified_order():
    clean = pd.DataFrame(
        {
            "abstained": [False, False, True, False, False, False],
            "radius": [0.2, 0.0, 0.3, 0.25, 0.1, 0.3],
            "prediction": [0, 1, -1, 1, 0, 1],
        }
    )
    order = select_points(clean, None, 0)
    assert set(order.tolist()) == {0, 3, 4, 5}
    before = pd.DataFrame(
        {
            "prediction": [0, 1, 1, -1, 0, 2],
            "r1": [1.07, 1.0, 0.5, 0.0, 1.07, 1.07],
            "sigma": [0.5, 0.49, 0.5, 0.5, 0.5, 0.3],
        }
    )
    assert audited_points(before, 10, "band", 0.9).tolist() == [0, 1, 4]  # 5: sigma_x R1 outside the band
    assert audited_points(before, 2, "band", 0.9).tolist() == [0, 1]
    assert audited_points(before, 10, "stratified", 0.9).tolist() == [0, 1, 2, 4, 5]
