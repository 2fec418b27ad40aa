"""certssb.pipelines.registered: the parameters the configuration files give at registration (base, then
local or ``KEDRO_ENV``), and the certifiers they select. The run-time refusal of a changed ``methods``:
tests/pipelines/test_methods.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from certssb.config import METHODS
from certssb.core.validation import ConfigError
from certssb.pipelines.registered import configured_methods, configured_parameters


@pytest.fixture(autouse=True)
def _certssb_settings():
    """The project's settings (its config loader arguments: soft merge of parameter blocks), as in a run."""
    from kedro.framework.project import configure_project

    configure_project("certssb")


def _conf(root: Path, **envs: str) -> Path:
    (root / "conf" / "local").mkdir(parents=True, exist_ok=True)  # as in the repository (.gitkeep)
    for env, text in envs.items():
        (root / "conf" / env).mkdir(parents=True, exist_ok=True)
        (root / "conf" / env / "parameters.yml").write_text(text)
    return root


def test_no_conf_folder_gives_no_parameters_and_every_certifier(tmp_path, monkeypatch):
    assert configured_parameters(tmp_path) == {}
    assert configured_methods(tmp_path) == METHODS
    monkeypatch.chdir(tmp_path)  # the default project path is the working directory
    assert configured_parameters() == {}


def test_local_overrides_base_and_kedro_env_replaces_local(tmp_path, monkeypatch):
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    _conf(
        tmp_path,
        base="seed: 1\nnoise: {sigma: 0.25, num_models: 50}\n",
        local="seed: 2\n",
        other="noise: {num_models: 8}\n",
    )
    assert configured_parameters(tmp_path) == {"seed": 2, "noise": {"sigma": 0.25, "num_models": 50}}
    monkeypatch.setenv("KEDRO_ENV", "other")
    assert configured_parameters(tmp_path) == {"seed": 1, "noise": {"sigma": 0.25, "num_models": 8}}  # soft


def test_the_certifiers_come_in_the_order_of_methods_and_a_bad_one_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    _conf(tmp_path, base="methods: [cohen, uniform]\n")
    assert configured_methods(tmp_path) == ("uniform", "cohen")
    _conf(tmp_path, local="methods: [uniform, smooth]\n")
    with pytest.raises(ConfigError, match=r"parameter 'methods\[\]' = 'smooth' is invalid: allowed values"):
        configured_methods(tmp_path)
