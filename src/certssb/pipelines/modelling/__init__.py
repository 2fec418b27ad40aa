"""Modelling: pilot model -> sample-specific sigma -> ensemble (per method)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
