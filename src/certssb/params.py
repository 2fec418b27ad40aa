"""Moved to :mod:`certssb.config` (typed parameter blocks). This re-export keeps old imports working while
the branches merge; the lead removes it once nothing imports ``certssb.params``."""
from __future__ import annotations

from typing import Any

from certssb.config import METHODS, sigma_config, train_config, validate


def validate_parameters(params: dict[str, Any], pipelines: set[str] | None = None) -> None:
    """Old name of :func:`certssb.config.validate`."""
    validate(params, pipelines)


__all__ = ["METHODS", "validate_parameters", "sigma_config", "train_config", "validate"]
