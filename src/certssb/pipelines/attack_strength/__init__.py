"""attack_strength: how strong a backdoor must be for the undefended model to learn it (issue 13)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
