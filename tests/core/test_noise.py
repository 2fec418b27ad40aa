"""Tests for certssb.core.noise: reproducibility, per-sample sigma, statistics, validation."""

from __future__ import annotations

import pytest
import torch

from certssb.core import noise
from certssb.core.noise import (
    auxiliary_plan,
    make_noise_plan,
    materialise,
    noisy_training_copy,
    plan_fingerprint,
    training_unit_noise,
    unit_noise,
)
from certssb.core.noise import (
    test_unit_noise as unit_test_noise,  # aliased: pytest would otherwise collect it as a test
)
from certssb.core.validation import ConfigError

SHAPE = (1, 6, 6)
N = 40


def plan(**kw):
    args = dict(seed=3, num_models=4, sigma=0.5, num_draws=3, n_train=N, input_shape=SHAPE)
    args.update(kw)
    return make_noise_plan(**args)


def data(n=N, shape=SHAPE, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- reproducibility


def test_same_plan_gives_identical_noise():
    p1, p2 = plan(), plan()
    for k in range(4):
        assert torch.equal(training_unit_noise(p1, k), training_unit_noise(p2, k))
        assert torch.equal(unit_test_noise(p1, k, "clean", 7), unit_test_noise(p2, k, "clean", 7))
    for key in ("train_seeds", "test_seeds", "model_seeds"):
        assert torch.equal(p1[key], p2[key])
    assert p1["fingerprint"] == p2["fingerprint"]


def test_different_model_index_split_or_seed_gives_different_noise():
    p = plan()
    z = [training_unit_noise(p, k) for k in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(z[i], z[j])
    t = {s: unit_test_noise(p, 0, s, N) for s in noise.SPLIT_IDS}
    names = list(t)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert not torch.allclose(t[names[i]], t[names[j]])
    # test noise of model 0 is a different stream from model 1's and from the training noise
    assert not torch.allclose(t["clean"], unit_test_noise(p, 1, "clean", N))
    assert not torch.allclose(t["clean"][0], z[0])
    # another seed: another plan
    assert not torch.allclose(training_unit_noise(plan(seed=4), 0), z[0])
    # all per-model seeds are distinct
    seeds = torch.cat([p["train_seeds"], p["test_seeds"], p["model_seeds"]])
    assert seeds.unique().numel() == seeds.numel()


def test_plan_noise_does_not_depend_on_global_rng():
    p = plan()
    torch.manual_seed(0)
    a = training_unit_noise(p, 1)
    torch.manual_seed(99)
    torch.rand(10)
    assert torch.equal(a, training_unit_noise(p, 1))


def test_shapes():
    p = plan()
    assert training_unit_noise(p, 2).shape == (N, *SHAPE)
    assert unit_test_noise(p, 2, "triggered", 9).shape == (3, 9, *SHAPE)
    assert p["train_seeds"].dtype == torch.int64 and p["train_seeds"].shape == (4,)


def test_model_index_outside_plan_refused():
    p = plan()
    for k in (-1, 4):
        with pytest.raises(ConfigError, match="model index"):
            training_unit_noise(p, k)
        with pytest.raises(ConfigError, match="model index"):
            unit_test_noise(p, k, "clean", 3)


# ---------------------------------------------------------------- per-sample sigma


def test_noisy_copy_row_i_is_x_plus_sigma_i_times_z():
    p = plan()
    x = data()
    sigma = torch.linspace(0.05, 2.0, N)
    for k in (0, 3):
        z = training_unit_noise(p, k)
        got = noisy_training_copy(x, sigma, p, k)
        want = x + sigma.view(-1, 1, 1, 1) * z
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        for i in (0, 17, N - 1):
            torch.testing.assert_close(got[i], x[i] + sigma[i] * z[i], rtol=0, atol=1e-6)


def test_scalar_sigma_equals_constant_vector_and_noise_scales_linearly():
    p = plan()
    x = data()
    a = noisy_training_copy(x, 0.3, p, 2)
    b = noisy_training_copy(x, torch.full((N,), 0.3), p, 2)
    assert torch.equal(a, b)
    # the unit noise is shared by all sigmas: (copy - x) / sigma is the same Z
    c = noisy_training_copy(x, 1.2, p, 2)
    torch.testing.assert_close((a - x) / 0.3, (c - x) / 1.2, rtol=1e-4, atol=1e-5)
    # and it is not clamped to [0, 1]
    assert c.min() < 0 and c.max() > 1


def test_changing_one_sigma_changes_only_that_row():
    p = plan()
    x = data()
    s1 = torch.full((N,), 0.5)
    s2 = s1.clone()
    s2[5] = 1.5
    a, b = noisy_training_copy(x, s1, p, 0), noisy_training_copy(x, s2, p, 0)
    diff = (a != b).flatten(1).any(1)
    assert diff.nonzero().flatten().tolist() == [5]


def test_materialise():
    p = plan()
    x = data()
    m = materialise(x, p, copies=2, n_images=5)
    assert m["noisy"].shape == (2, 5, *SHAPE)
    assert torch.equal(m["clean"], x[:5])
    assert torch.equal(m["noisy"][1], noisy_training_copy(x, p["sigma0"], p, 1)[:5])
    assert materialise(x, p, copies=99)["noisy"].shape[0] == 4  # capped at the plan's M


# ---------------------------------------------------------------- statistics


def test_unit_noise_is_standard_normal():
    # 4 x 40 x 36 x ... : many samples; deterministic seeds, tolerances many standard errors wide
    p = make_noise_plan(seed=0, num_models=2, sigma=1.0, num_draws=4, n_train=2000, input_shape=(1, 10, 10))
    for z in (training_unit_noise(p, 0), training_unit_noise(p, 1), unit_test_noise(p, 0, "clean", 500)):
        n = z.numel()  # 200,000
        se = 1 / n**0.5
        assert abs(float(z.mean())) < 6 * se
        assert abs(float(z.std()) - 1) < 6 * (0.5 / n) ** 0.5 + 1e-6
        # per-pixel and per-sample: no constant offset at any position
        assert z.mean(0).abs().max() < 6 / z.shape[0] ** 0.5
        # tails roughly Gaussian: P(|Z| > 2) = 0.0455
        tail = float((z.abs() > 2).float().mean())
        assert abs(tail - 0.0455) < 6 * (0.0455 * 0.9545 / n) ** 0.5
    # different copies are uncorrelated
    z0, z1 = training_unit_noise(p, 0).flatten(), training_unit_noise(p, 1).flatten()
    assert abs(float((z0 * z1).mean())) < 6 / z0.numel() ** 0.5


def test_unit_noise_function_is_seeded():
    assert torch.equal(unit_noise(5, (3, 4)), unit_noise(5, (3, 4)))
    assert not torch.equal(unit_noise(5, (3, 4)), unit_noise(6, (3, 4)))


# ---------------------------------------------------------------- fingerprint and auxiliary plans


def test_fingerprint_changes_with_everything_that_determines_the_noise():
    base = plan()["fingerprint"]
    assert base == plan_fingerprint(plan())
    assert len(base) == 16
    for change in (
        dict(sigma=0.25),
        dict(seed=4),
        dict(num_models=5),
        dict(num_draws=4),
        dict(n_train=N + 1),
        dict(input_shape=(1, 7, 7)),
    ):
        assert plan(**change)["fingerprint"] != base, change


def test_auxiliary_plan_is_independent_of_the_main_plan():
    p = plan()
    pilot = auxiliary_plan(p, "pilot")
    und = auxiliary_plan(p, "undefended")
    assert pilot["num_models"] == 1 and pilot["sigma0"] == p["sigma0"]
    assert pilot["n_train"] == p["n_train"] and pilot["input_shape"] == p["input_shape"]
    main_seeds = set(torch.cat([p["train_seeds"], p["test_seeds"], p["model_seeds"]]).tolist())
    for aux in (pilot, und):
        aux_seeds = set(torch.cat([aux["train_seeds"], aux["test_seeds"], aux["model_seeds"]]).tolist())
        assert not aux_seeds & main_seeds
        assert aux["seed"] != p["seed"]
        assert aux["fingerprint"] != p["fingerprint"]
        assert not torch.allclose(training_unit_noise(aux, 0), training_unit_noise(p, 0))
    assert pilot["seed"] != und["seed"]
    # reproducible
    assert torch.equal(auxiliary_plan(p, "pilot")["train_seeds"], pilot["train_seeds"])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("sigma", [0.0, -0.5])
def test_plan_sigma_must_be_positive(sigma):
    with pytest.raises(ConfigError, match="parameter 'sigma' = "):
        plan(sigma=sigma)


@pytest.mark.parametrize(
    "key, value, name",
    [
        ("num_models", 0, "num_models"),
        ("num_models", 2.5, "num_models"),
        ("num_draws", 0, "num_draws"),
        ("n_train", 0, "n_train"),
        ("seed", -1, "seed"),
    ],
)
def test_plan_bad_counts(key, value, name):
    with pytest.raises(ConfigError, match=f"'{name}' = {value}"):
        plan(**{key: value})


@pytest.mark.parametrize("sigma", [0.0, -1.0])
def test_noisy_copy_scalar_sigma_must_be_positive(sigma):
    with pytest.raises(ConfigError, match="sigma must be > 0"):
        noisy_training_copy(data(), sigma, plan(), 0)


def test_noisy_copy_sigma_vector_with_one_zero():
    s = torch.full((N,), 0.5)
    s[13] = 0.0
    with pytest.raises(ConfigError, match="sigma must be > 0"):
        noisy_training_copy(data(), s, plan(), 0)


def test_noisy_copy_sigma_vector_wrong_length():
    with pytest.raises(ConfigError, match=r"sigma has shape \(39,\)"):
        noisy_training_copy(data(), torch.full((N - 1,), 0.5), plan(), 0)


@pytest.mark.parametrize("x", [data(n=N + 1), data(shape=(1, 7, 7)), data(shape=(3, 6, 6))])
def test_data_not_matching_plan(x):
    with pytest.raises(ConfigError, match="does not match the noise plan.*n_train=40.*input_shape"):
        noisy_training_copy(x, 0.5, plan(), 0)
