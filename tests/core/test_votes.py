"""Tests for certssb.core.votes: shapes, a manual loop over models and draws, chunking, per-sample sigma,
validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import stack_module_state

from certssb.core.models import build_model
from certssb.core.noise import make_noise_plan
from certssb.core.noise import test_unit_noise as unit_test_noise  # aliased: not a test
from certssb.core.validation import ConfigError
from certssb.core.votes import predict_votes

CPU = torch.device("cpu")
N, C, K = 24, 4, 3


def stacked(arch, shape, m, seed0=0):
    models = [build_model(arch, shape, C, seed=seed0 + k) for k in range(m)]
    params, _ = stack_module_state(models)
    return models, {n: t.detach().clone() for n, t in params.items()}


def ensemble(arch="small_cnn", shape=(1, 12, 12), m=3, indices=None):
    models, params = stacked(arch, shape, m)
    model = {
        "architecture": arch,
        "in_shape": list(shape),
        "num_classes": C,
        "params": params,
        "model_indices": list(range(m)) if indices is None else indices,
    }
    return models, model


def plan_for(shape, m=3, num_draws=K, seed=0):
    return make_noise_plan(
        seed=seed, num_models=m, sigma=0.5, num_draws=num_draws, n_train=10, input_shape=shape
    )


def images(shape=(1, 12, 12), n=N, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def manual(models, x, sigma, plan, split, indices):
    """Reference: loop over models and draws; per model the fraction of the K draws whose argmax is c."""
    votes, probs = [], []
    for j, net in enumerate(models):
        net.eval()
        z = unit_test_noise(plan, indices[j], split, x.shape[0])
        with torch.no_grad():
            p = torch.stack(
                [torch.softmax(net(x + sigma.view(-1, 1, 1, 1) * z[d]), 1) for d in range(z.shape[0])]
            )
        preds = p.argmax(-1).numpy()  # (K, N)
        k = preds.shape[0]
        votes.append([np.bincount(preds[:, i], minlength=C) / k for i in range(x.shape[0])])
        probs.append(p.mean(0))
    return torch.tensor(np.array(votes), dtype=torch.float32), torch.stack(probs)


@pytest.mark.parametrize("arch, shape", [("small_cnn", (1, 12, 12)), ("mlp", (1, 8, 8))])
def test_matches_a_manual_loop(arch, shape):
    models, model = ensemble(arch, shape)
    x = images(shape)
    sigma = torch.linspace(0.1, 1.5, N)
    plan = plan_for(shape)
    out = predict_votes(model, x, sigma, plan, "clean", device=CPU)
    assert out["votes"].shape == (3, N, C) and out["votes"].dtype == torch.float32
    assert out["probs"].shape == (3, N, C) and out["probs"].dtype == torch.float32
    torch.testing.assert_close(out["probs"].sum(-1), torch.ones(3, N))
    torch.testing.assert_close(out["votes"].sum(-1), torch.ones(3, N))
    assert float(out["votes"].min()) >= 0 and float(out["votes"].max()) <= 1
    want_votes, want_probs = manual(models, x, sigma, plan, "clean", [0, 1, 2])
    torch.testing.assert_close(out["probs"], want_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["votes"], want_votes)


def test_votes_are_fractions_of_the_k_draws_not_their_mode():
    """K = 5 draws at large noise disagree: the per-model vote is the fraction of draws per class (multiples
    of 1/K), not a one-hot mode (the mode of K argmaxes is not a single-draw vote,
    docs/methods.md#what-a-certificate-claims)."""
    shape = (1, 8, 8)
    models, model = ensemble("mlp", shape, m=2)
    x = images(shape, n=200, seed=3)
    sigma = torch.full((200,), 3.0)
    plan = plan_for(shape, m=2, num_draws=5)
    out = predict_votes(model, x, sigma, plan, "triggered", device=CPU)
    want_votes, want_probs = manual(models, x, sigma, plan, "triggered", [0, 1])
    torch.testing.assert_close(out["votes"], want_votes)
    torch.testing.assert_close(out["probs"], want_probs, rtol=1e-5, atol=1e-5)
    v = out["votes"]
    torch.testing.assert_close(v * 5, (v * 5).round())  # multiples of 1/K
    assert bool(((v > 0) & (v < 1)).any())  # some draws disagree: not one-hot


def test_one_draw_gives_one_hot_votes():
    """K = 1: the fraction is the one-hot argmax of the single draw."""
    shape = (1, 8, 8)
    models, model = ensemble("mlp", shape, m=1)
    x = images(shape, n=100, seed=4)
    sigma = torch.full((100,), 2.0)
    plan = plan_for(shape, m=1, num_draws=1)
    out = predict_votes(model, x, sigma, plan, "clean", device=CPU)
    z = unit_test_noise(plan, 0, "clean", 100)
    with torch.no_grad():
        a = models[0].eval()(x + 2.0 * z[0]).argmax(1)
    assert torch.equal(out["votes"][0], torch.nn.functional.one_hot(a, C).float())


@pytest.mark.parametrize("model_chunk", [1, 2, 3, 10])
def test_model_chunk_does_not_change_the_result(model_chunk):
    _, model = ensemble()
    x = images()
    sigma = torch.full((N,), 0.5)
    plan = plan_for((1, 12, 12))
    ref = predict_votes(model, x, sigma, plan, "clean", device=CPU, model_chunk=3)
    seen = []
    out = predict_votes(
        model, x, sigma, plan, "clean", device=CPU, model_chunk=model_chunk, progress=seen.append
    )
    assert torch.equal(out["votes"], ref["votes"])
    assert torch.equal(out["probs"], ref["probs"])
    assert sum(seen) == 3 and max(seen) <= model_chunk


@pytest.mark.parametrize("batch_size", [5, 7, 4096])
def test_batch_size_does_not_change_the_result(batch_size):
    _, model = ensemble()
    x = images()
    sigma = torch.full((N,), 0.5)
    plan = plan_for((1, 12, 12))
    ref = predict_votes(model, x, sigma, plan, "clean", device=CPU)
    out = predict_votes(model, x, sigma, plan, "clean", device=CPU, batch_size=batch_size)
    assert torch.equal(out["votes"], ref["votes"])
    torch.testing.assert_close(out["probs"], ref["probs"], rtol=1e-6, atol=1e-6)


def test_model_indices_select_the_noise_streams():
    """Member j of the stacked params uses the noise of plan model ``model_indices[j]``."""
    shape = (1, 8, 8)
    models, model = ensemble("mlp", shape, m=2, indices=[3, 1])
    x = images(shape)
    sigma = torch.full((N,), 1.0)
    plan = plan_for(shape, m=4)
    out = predict_votes(model, x, sigma, plan, "clean", device=CPU)
    want_votes, want_probs = manual(models, x, sigma, plan, "clean", [3, 1])
    torch.testing.assert_close(out["probs"], want_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["votes"], want_votes)
    other = predict_votes({**model, "model_indices": [0, 1]}, x, sigma, plan, "clean", device=CPU)
    assert not torch.allclose(other["probs"][0], out["probs"][0])
    assert torch.equal(other["probs"][1], out["probs"][1])


def test_split_selects_the_noise_stream():
    _, model = ensemble()
    x = images()
    sigma = torch.full((N,), 1.0)
    plan = plan_for((1, 12, 12))
    a = predict_votes(model, x, sigma, plan, "clean", device=CPU)
    b = predict_votes(model, x, sigma, plan, "triggered", device=CPU)
    c = predict_votes(model, x, sigma, plan, "clean", device=CPU)
    assert torch.equal(a["probs"], c["probs"])
    assert not torch.allclose(a["probs"], b["probs"])


def test_each_sample_gets_its_own_sigma():
    models, model = ensemble()
    x = images()
    sigma = torch.where(torch.arange(N) % 2 == 0, torch.tensor(1e-6), torch.tensor(3.0))
    plan = plan_for((1, 12, 12))
    out = predict_votes(model, x, sigma, plan, "clean", device=CPU)
    with torch.no_grad():
        clean = torch.stack([torch.softmax(m.eval()(x), 1) for m in models])  # (M, N, C)
    tiny, big = sigma < 1e-3, sigma > 1
    # tiny sigma: every draw is the noiseless input
    assert torch.equal(out["votes"][:, tiny].argmax(-1), clean.argmax(-1)[:, tiny])
    assert torch.equal(out["votes"][:, tiny].max(-1).values, torch.ones_like(clean[:, tiny, 0]))
    torch.testing.assert_close(out["probs"][:, tiny], clean[:, tiny], rtol=1e-4, atol=1e-5)
    # large sigma: the predictions move
    assert float((out["probs"][:, big] - clean[:, big]).abs().max()) > 1e-2


def test_bad_input():
    _, model = ensemble()
    x = images()
    plan = plan_for((1, 12, 12))
    with pytest.raises(ConfigError, match=r"sigma has shape \(23,\)"):
        predict_votes(model, x, torch.full((N - 1,), 0.5), plan, "clean", device=CPU)
    with pytest.raises(ConfigError, match="sigma"):
        predict_votes(model, x, torch.full((N, 1), 0.5), plan, "clean", device=CPU)
    with pytest.raises(ConfigError, match=r"the clean test set has per-sample shape \(1, 8, 8\)"):
        predict_votes(model, images((1, 8, 8)), torch.full((N,), 0.5), plan, "clean", device=CPU)
    with pytest.raises(ConfigError, match=r"\(3, 12, 12\)"):
        predict_votes(model, images((3, 12, 12)), torch.full((N,), 0.5), plan, "clean", device=CPU)
    with pytest.raises(ConfigError, match="parameter 'model_chunk' = 0"):
        predict_votes(model, x, torch.full((N,), 0.5), plan, "clean", device=CPU, model_chunk=0)
    with pytest.raises(ConfigError, match="more models than the noise plan"):
        predict_votes(model, x, torch.full((N,), 0.5), plan_for((1, 12, 12), m=2), "clean", device=CPU)
