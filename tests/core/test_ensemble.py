"""Tests for certssb.core.ensemble (run through certssb.execution.training): backends agree, reproducibility,
noise once per model, validation. Checkpoints and resume: tests/execution/test_training.py."""

from __future__ import annotations

import pytest
import torch

import certssb.core.ensemble as ens
from certssb.core.ensemble import (
    TrainConfig,
    load_member,
    member_module,
    resolve_device,
    stacked_forward,
    train_one,
)
from certssb.core.models import build_model
from certssb.core.noise import noisy_training_copy
from certssb.core.validation import ConfigError
from certssb.execution.checkpoints import ensemble_fingerprint
from certssb.execution.training import train_ensemble
from tests.tiny_ensemble import SHAPE, C, N, assert_params_equal, cfg, make_data, make_plan, run

CPU = torch.device("cpu")

# ---------------------------------------------------------------- backends and reproducibility


@pytest.mark.parametrize("arch", ["mlp", "small_cnn"])
def test_vectorised_equals_sequential(arch):
    x, y = make_data()
    plan = make_plan(m=3)
    sigma = torch.linspace(0.1, 0.6, N)
    c = cfg(arch, epochs=1)
    seq, fp_s = run(x, y, sigma, plan, c, backend="sequential", chunk_size=3)
    vec, fp_v = run(x, y, sigma, plan, c, backend="vectorised", chunk_size=2)
    assert fp_s == fp_v  # the fingerprint ignores the backend
    assert seq.indices == vec.indices == [0, 1, 2]
    for name in seq.params:
        assert seq.params[name].shape[0] == 3
        torch.testing.assert_close(vec.params[name], seq.params[name], rtol=0, atol=1e-4, msg=name)
    # and training did something: the parameters moved away from the initial ones
    init = build_model(arch, SHAPE, C, seed=int(plan["model_seeds"][1])).state_dict()
    assert any((seq.params[k][1] - init[k]).abs().max() > 1e-4 for k in init)
    assert [(r["model"], r["epoch"]) for r in seq.log] == [(r["model"], r["epoch"]) for r in vec.log]
    for rs, rv in zip(seq.log, vec.log):
        assert rs["loss"] == pytest.approx(rv["loss"], rel=1e-4, abs=1e-5)


def test_sequential_is_bit_reproducible_and_seed_dependent():
    x, y = make_data()
    sigma = torch.full((N,), 0.3)
    a, _ = run(x, y, sigma, make_plan(), cfg(epochs=2))
    b, _ = run(x, y, sigma, make_plan(), cfg(epochs=2))
    assert_params_equal(a.params, b.params)
    c, _ = run(x, y, sigma, make_plan(seed=2), cfg(epochs=2))
    assert not torch.equal(a.params["net.1.weight"], c.params["net.1.weight"])
    # the members differ from each other (own init and own noise)
    w = a.params["net.1.weight"]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


def test_member_k_equals_train_one_and_is_independent_of_num_models_and_chunking():
    x, y = make_data()
    sigma = torch.full((N,), 0.3)
    plan = make_plan(m=3)
    full, _ = run(x, y, sigma, plan, cfg(), chunk_size=2)
    first2, _ = run(x, y, sigma, plan, cfg(), chunk_size=1, num_models=2)
    assert first2.indices == [0, 1]
    assert_params_equal({k: v[:2] for k, v in full.params.items()}, first2.params)
    one = train_one(x, y, sigma, plan, 2, cfg(), C, CPU)
    assert_params_equal({k: v[2:] for k, v in full.params.items()}, one.params)


@pytest.mark.parametrize("arch", ["mlp", "small_cnn"])
def test_sequential_on_two_threads_trains_models_at_once_with_the_one_thread_weights(arch):
    x, y = make_data()
    sigma = torch.full((N,), 0.3)
    plan = make_plan(m=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ref = ens.train_chunk(x, y, sigma, plan, [0, 1, 2, 3, 4], cfg(arch), C, CPU)
        torch.set_num_threads(2)  # two models at once, one torch thread each
        for _ in range(2):  # scheduling-independent: the same weights every time
            par = ens.train_chunk(x, y, sigma, plan, [0, 1, 2, 3, 4], cfg(arch), C, CPU)
            assert par.indices == [0, 1, 2, 3, 4]
            assert_params_equal(ref.params, par.params)
            assert [r["model"] for r in par.log] == [r["model"] for r in ref.log]
        assert torch.get_num_threads() == 2  # the workers' one thread does not leak into the caller
    finally:
        torch.set_num_threads(threads)


def test_sigma_changes_the_ensemble_and_its_fingerprint():
    x, y = make_data()
    plan = make_plan(m=1)
    a, fa = run(x, y, torch.full((N,), 0.3), plan, cfg())
    s = torch.full((N,), 0.3)
    s[0] = 0.31
    b, fb = run(x, y, s, plan, cfg())
    assert fa != fb
    assert not torch.equal(a.params["net.1.weight"], b.params["net.1.weight"])
    assert fa == ensemble_fingerprint("d0", torch.full((N,), 0.3), plan, cfg(), C)
    assert fa != ensemble_fingerprint("d1", torch.full((N,), 0.3), plan, cfg(), C)
    assert fa != ensemble_fingerprint("d0", torch.full((N,), 0.3), plan, cfg(lr=2e-3), C)


# ---------------------------------------------------------------- noise once per model


@pytest.mark.parametrize("backend", ["sequential", "vectorised"])
def test_training_noise_is_drawn_once_per_model(monkeypatch, backend):
    calls = []

    def counting(x, sigma, plan, k, *a, **kw):
        calls.append(k)
        return noisy_training_copy(x, sigma, plan, k, *a, **kw)

    monkeypatch.setattr(ens, "noisy_training_copy", counting)
    x, y = make_data()
    run(x, y, torch.full((N,), 0.3), make_plan(m=3), cfg(epochs=3), backend=backend, chunk_size=3)
    assert sorted(calls) == [0, 1, 2]  # 3 epochs x 4 batches, yet one copy per model


def test_train_one_trains_on_exactly_the_noisy_copy(monkeypatch):
    x, y = make_data()
    plan = make_plan(m=2)
    sigma = torch.full((N,), 0.4)
    noisy = train_one(x, y, sigma, plan, 1, cfg(), C, CPU)
    clean = train_one(x, y, sigma, plan, 1, cfg(), C, CPU, noise=False)
    assert not torch.equal(noisy.params["net.1.weight"], clean.params["net.1.weight"])
    # replacing the noisy copy by the clean data reproduces the noise=False model exactly
    monkeypatch.setattr(ens, "noisy_training_copy", lambda x, sigma, plan, k, *a, **kw: x.clone())
    swapped = train_one(x, y, sigma, plan, 1, cfg(), C, CPU)
    assert_params_equal(swapped.params, clean.params)


def test_training_learns_on_separable_data():
    x, y = make_data()
    res = train_one(x, y, torch.full((N,), 0.1), make_plan(m=1), 0, cfg(epochs=8, lr=3e-3), C, CPU)
    losses = [r["loss"] for r in res.log]
    assert losses[-1] < 0.5 * losses[0]
    net = load_member("mlp", SHAPE, C, res.params, 0)
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() > 0.9


# ---------------------------------------------------------------- stacked prediction helpers


def test_stacked_forward_matches_load_member():
    x, y = make_data()
    res, _ = run(x, y, torch.full((N,), 0.3), make_plan(m=2), cfg("small_cnn"))
    xs = torch.stack([x[:5], x[5:10]])
    with torch.no_grad():
        out = stacked_forward(member_module("small_cnn", SHAPE, C), res.params, xs)
        want = torch.stack([load_member("small_cnn", SHAPE, C, res.params, k)(xs[k]) for k in range(2)])
    assert out.shape == (2, 5, C)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- devices and bad input


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device.*'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_cuda_without_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="'cuda'"):
        resolve_device("cuda")
    x, y = make_data()
    with pytest.raises(ConfigError, match="'cuda'"):
        train_ensemble(
            x,
            y,
            torch.full((N,), 0.3),
            make_plan(),
            cfg(),
            num_classes=C,
            data_fingerprint="d",
            device="cuda",
        )


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(architecture="vgg"), "architecture"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr=0.0), "lr"),
        (dict(weight_decay=-1.0), "weight_decay"),
    ],
)
def test_bad_train_config(kw, name):
    with pytest.raises(ConfigError, match=f"'{name}'"):
        TrainConfig(**kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("size", [(28, 28), (7, 9)])  # odd sizes: floor mode drops the last row / column
def test_inference_max_pool_equals_max_pool2d_bit_for_bit(dtype, size):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, *size, generator=g).to(dtype)
    x[0, 0, :2, :2] = 1.0  # a tie inside one block
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        assert torch.equal(ens.MaxPool2x2()(t), torch.nn.functional.max_pool2d(t, 2))


def test_with_inference_pooling_swaps_only_plain_2x2_pools_and_keeps_the_function():
    net = build_model("small_cnn", (1, 28, 28), 10, seed=0).eval()
    other = torch.nn.Sequential(torch.nn.MaxPool2d(3), torch.nn.MaxPool2d(2, stride=1), torch.nn.MaxPool2d(2))
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        before = net(x)
        ens.with_inference_pooling(net)
        assert torch.equal(net(x), before)
    assert sum(isinstance(m, ens.MaxPool2x2) for m in net.modules()) == 2
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    ens.with_inference_pooling(other)
    assert [type(m).__name__ for m in other] == ["MaxPool2d", "MaxPool2d", "MaxPool2x2"]
