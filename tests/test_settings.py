"""Configuration environments: paper-scale envs and command-line overrides change single keys only."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from certssb.config import validate
from certssb.settings import CONFIG_LOADER_ARGS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("env", ["paper_mnist", "paper_cifar10"])
def test_paper_environments_merge_softly_and_are_valid(env):
    loader = OmegaConfigLoader(
        str(ROOT / "conf"),
        env=env,
        **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k not in ("default_run_env",)},
    )
    params = loader["parameters"]
    assert params["noise"]["num_models"] == 1000
    assert params["noise"]["num_draws"] == 1  # untouched keys of the same block survive
    assert params["attack"]["name"] == "badnets"
    validate(params, {"__default__"})


@pytest.mark.parametrize("env", ["paper_mnist_embedded", "certifier_curves", "backdoor_sigma"])
def test_cpu_paper_and_sweep_environments_are_valid(env):
    loader = OmegaConfigLoader(
        str(ROOT / "conf"), env=env, **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    )
    params = loader["parameters"]
    validate(params, {"__default__", "study"})
    if env == "paper_mnist_embedded":
        assert params["noise"]["num_models"] == 1000 and params["data"]["classes"] == [1, 0]
        assert params["evaluation"]["bound"] == "hoeffding" and params["evaluation"]["aggregation"] == "soft"
    elif env == "certifier_curves":
        assert params["study"]["rates"] == [0.005, 0.01, 0.02, 0.05]
    else:
        assert params["study"]["attacks"] == ["badnets"] and params["attack"]["name"] == "badnets"


def test_binary_environment():
    loader = OmegaConfigLoader(
        str(ROOT / "conf"),
        env="mnist_1v0",
        **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"},
    )
    assert loader["parameters"]["data"]["classes"] == [1, 0]
    assert loader["parameters"]["data"]["dataset"] == "mnist_embedded"


def test_runtime_params_override_single_keys(tmp_path):
    loader = OmegaConfigLoader(
        str(ROOT / "conf"), runtime_params={"attack": {"trigger": "badnets"}}, **CONFIG_LOADER_ARGS
    )
    attack = loader["parameters"]["attack"]
    assert attack["trigger"] == "badnets" and attack["name"] == "badnets"
