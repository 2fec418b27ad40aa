"""A tiny separable task and training helpers shared by the ensemble tests (tests/core/test_ensemble.py, the
backends; tests/execution/test_training.py, checkpoints and resume)."""

from __future__ import annotations

import torch

from certssb.core.ensemble import TrainConfig
from certssb.core.noise import make_noise_plan
from certssb.execution.training import train_ensemble

N, SHAPE, C = 64, (1, 8, 8), 3


def make_data(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    x = torch.rand(n, *SHAPE, generator=g) * 0.3
    for c in range(C):  # class c: a bright band in rows 2c..2c+1
        x[y == c, :, 2 * c : 2 * c + 2, :] += 0.7
    return x, y


def make_plan(m=3, n=N, seed=1):
    return make_noise_plan(seed=seed, num_models=m, sigma=0.25, num_draws=2, n_train=n, input_shape=SHAPE)


def cfg(arch="mlp", **kw):
    return TrainConfig(**{"architecture": arch, "epochs": 1, "batch_size": 16, "lr": 1e-3, **kw})


def run(x, y, sigma, plan, c, **kw):
    return train_ensemble(x, y, sigma, plan, c, num_classes=C, data_fingerprint="d0", device="cpu", **kw)


def assert_params_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
