"""Tests for certssb.core.precision and the precision of training, votes, cohen's draws and sigma
optimisation: the rule of ``auto``, bad values refused, bf16 really used (results differ from fp32 but stay
close), a bf16 ensemble certifies through the same code, and fp32 / bf16 checkpoints never share a
fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from certssb import config
from certssb.core import certify, ensemble, precision, sigma, smoothing
from certssb.core.models import build_model
from certssb.core.noise import make_noise_plan
from certssb.core.validation import ConfigError
from certssb.core.votes import predict_votes
from certssb.execution.checkpoints import ensemble_fingerprint

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 12, 12, generator=g) * 0.3
    x[y == 1, :, 3:9, 3:9] += 0.7  # a learnable pattern: class 1 has a bright square
    return x, y


def _plan(m=3, n=96):
    return make_noise_plan(seed=0, num_models=m, sigma=0.25, num_draws=1, n_train=n, input_shape=(1, 12, 12))


# ------------------------------------------------------------------------------------------------- the rule
def test_resolve_keeps_explicit_values_and_maps_none_to_float32():
    assert precision.resolve_precision("float32", "cpu") == "float32"
    assert precision.resolve_precision("bfloat16", "cpu") == "bfloat16"
    assert precision.resolve_precision(None, "cpu") == "float32"


@pytest.mark.parametrize(
    "flags, capability, expected",
    [
        ({"avx512f", "amx_bf16", "amx_tile"}, "AVX512", "bfloat16"),
        ({"avx512f", "avx512_bf16"}, "AVX512", "bfloat16"),
        ({"avx2", "fma"}, "AVX2", "float32"),
        ({"avx512f"}, "AMX", "bfloat16"),  # torch reports AMX even where /proc/cpuinfo says nothing
    ],
)
def test_auto_picks_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, flags, capability, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("auto", torch.device("cpu")) == expected


def test_auto_on_cuda_asks_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert precision.resolve_precision("auto", "cuda") == expected


@pytest.mark.parametrize("bad", ["fp16", "float16", "bf16", 32, True])
def test_bad_values_are_refused_with_the_allowed_ones(bad):
    with pytest.raises(
        ConfigError,
        match=r"parameter 'precision' = .* allowed values are 'float32', "
        r"'bfloat16', 'auto'",
    ):
        precision.resolve_precision(bad, "cpu")
    with pytest.raises(
        ConfigError,
        match=r"parameter 'precision' = .* allowed values are 'float32', "
        r"'bfloat16'$",
    ):
        ensemble.TrainConfig(precision=bad)


@pytest.fixture(scope="module")
def base_params() -> dict:
    from kedro.config import OmegaConfigLoader

    from certssb.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(
        str(ROOT / "conf"),
        env="local",
        **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"},
    )
    return dict(loader["parameters"])


def test_the_parameter_is_validated_with_the_other_blocks(base_params):
    assert base_params["precision"] == "auto"  # conf/base: the default (docs/performance.md#precision)
    for ok in ("float32", "bfloat16", "auto"):
        assert config.validate({**base_params, "precision": ok}).precision == ok
    with pytest.raises(
        ConfigError,
        match=r"^parameter 'precision' = 'fp16' is invalid: allowed values are "
        r"'float32', 'bfloat16', 'auto'$",
    ):
        config.validate({**base_params, "precision": "fp16"})
    assert config.validate({k: v for k, v in base_params.items() if k != "precision"}).precision is None


def test_a_model_records_a_resolved_precision_only():
    assert precision.model_precision(None) == "float32"  # artifacts from before the parameter
    assert precision.model_precision({"precision": "bfloat16"}) == "bfloat16"
    with pytest.raises(ConfigError, match="train_config.precision"):
        precision.model_precision({"precision": "auto"})


def test_autocast_runs_matmuls_in_bf16_and_nothing_for_fp32():
    a = torch.randn(8, 8)
    with precision.autocast("bfloat16", CPU):
        assert (a @ a).dtype == torch.bfloat16
    with precision.autocast("float32", CPU):
        assert (a @ a).dtype == torch.float32


# --------------------------------------------------------------------------------------- training, lineage
def test_fp32_and_bf16_checkpoints_get_different_fingerprints():
    x, y = _data()
    s, plan = torch.full((x.shape[0],), 0.25), _plan()
    fp = {
        p: ensemble_fingerprint("data", s, plan, ensemble.TrainConfig(precision=p), 2, 1)
        for p in precision.RESOLVED
    }
    assert fp["float32"] != fp["bfloat16"]
    assert fp["float32"] == ensemble_fingerprint("data", s, plan, ensemble.TrainConfig(), 2, 1)


@pytest.mark.parametrize("backend", ["sequential", "vectorised"])
def test_bf16_training_is_another_computation_that_still_learns(backend):
    x, y = _data()
    s, plan = torch.full((x.shape[0],), 0.25), _plan(m=2)
    run = {
        p: ensemble.train_chunk(
            x,
            y,
            s,
            plan,
            [0, 1],
            ensemble.TrainConfig(epochs=3, batch_size=32, lr=3e-3, precision=p),
            2,
            CPU,
            backend,
        )
        for p in precision.RESOLVED
    }
    diff = max(
        float((run["float32"].params[k] - run["bfloat16"].params[k]).abs().max())
        for k in run["float32"].params
    )
    assert diff > 0  # autocast really changed the arithmetic
    assert all(t.dtype == torch.float32 for t in run["bfloat16"].params.values())  # weights stay float32
    last = [r["noisy_train_accuracy"] for r in run["bfloat16"].log if r["epoch"] == 2]
    assert min(last) > 0.65  # chance: 0.5


def test_a_bf16_ensemble_votes_and_certifies_through_the_same_code():
    x, y = _data()
    s, plan = torch.full((x.shape[0],), 0.25), _plan(m=6)
    cfg = ensemble.TrainConfig(epochs=3, batch_size=32, lr=3e-3, precision="bfloat16")
    res = ensemble.train_chunk(x, y, s, plan, list(range(6)), cfg, 2, CPU)
    model = {
        "architecture": cfg.architecture,
        "in_shape": [1, 12, 12],
        "num_classes": 2,
        "params": res.params,
        "model_indices": res.indices,
        "train_config": dict(cfg.__dict__),
    }
    xt, yt = _data(40, seed=1)
    st = torch.full((40,), 0.25)
    v = predict_votes(model, xt, st, plan, "clean", device=CPU)  # the model's own precision: bf16
    v32 = predict_votes(model, xt, st, plan, "clean", device=CPU, precision="float32")
    assert v["votes"].dtype == torch.float32 and v["probs"].dtype == torch.float32
    assert not torch.equal(v["probs"], v32["probs"])  # bf16 forward passes were used
    assert float((v["probs"] - v32["probs"]).abs().max()) < 0.05
    torch.testing.assert_close(v["votes"].sum(-1), torch.ones(6, 40))
    table = certify.certify(
        v["votes"].numpy(),
        v["probs"].numpy(),
        st.numpy(),
        labels=yt.numpy(),
        num_classes=2,
        bound="clopper_pearson",
        aggregation="hard",
        alpha=0.1,
        selection="split",
        n0=1,
        alpha_split="bonferroni",
    )
    assert len(table) == 40 and table["correct"].mean() > 0.7
    assert (table.loc[~table["abstained"], "radius"] > 0).all()


def test_cohen_draws_and_sigma_optimisation_run_in_bf16():
    x, y = _data(16, seed=2)
    net = build_model("small_cnn", (1, 12, 12), 2, seed=0).eval()
    kw = {"seed": 0, "split": "clean", "n0": 4, "num_draws": 32, "num_classes": 2}
    c32 = smoothing.certify_votes(net, x, torch.full((16,), 0.5), **kw)
    c16 = smoothing.certify_votes(net, x, torch.full((16,), 0.5), precision="bfloat16", **kw)
    assert (c16["estimation"].sum(1) == 32).all() and c16["probs"].dtype == torch.float32
    assert not torch.equal(c16["probs"], c32["probs"])
    np.testing.assert_allclose(c16["probs"].numpy(), c32["probs"].numpy(), atol=0.05)
    cfg = sigma.SigmaConfig(steps=3, draws=2, sigma_min=0.25, sigma_max=0.5, batch_size=8)
    r32 = sigma.optimise_sigma(net, x, y, 0.25, cfg, seed=0)
    r16 = sigma.optimise_sigma(net, x, y, 0.25, cfg, seed=0, precision="bfloat16")
    assert r16["sigma"].dtype == torch.float32 and torch.isfinite(r16["radius_history"]).all()
    assert ((r16["sigma"] >= 0.25 - 1e-6) & (r16["sigma"] <= 0.5 + 1e-6)).all()
    assert not torch.equal(r16["radius_history"], r32["radius_history"])
