"""Parameter blocks of conf/base for tests that call nodes or run pipeline slices without a KedroSession."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def conf_parameters() -> dict[str, Any]:
    """Every parameter block of conf/base (not conf/local), as a KedroSession reads them; do not mutate."""
    from kedro.config import OmegaConfigLoader

    with warnings.catch_warnings():  # kedro's own register_new_resolver deprecation warnings
        warnings.simplefilter("ignore", UserWarning)
        loader = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="base")
        return dict(loader["parameters"])


@pytest.fixture
def base_params(conf_parameters: dict[str, Any]) -> dict[str, Any]:
    """A private deep copy of the conf/base parameters, free to override."""
    return copy.deepcopy(conf_parameters)
