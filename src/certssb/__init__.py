"""certssb: certified robustness of image classifiers against backdoor (poisoning) attacks.

Python API (imported lazily, so that ``import certssb`` stays light for Kedro):
``certssb.SmoothedEnsemble``, ``certssb.train_ensemble``, ``certssb.ABSTAIN`` (see ``certssb.api``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1"
__all__ = ["ABSTAIN", "SmoothedEnsemble", "train_ensemble"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from certssb import api

        return getattr(api, name)
    raise AttributeError(f"module 'certssb' has no attribute {name!r}")
