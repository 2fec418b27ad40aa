"""Evaluation: votes -> certificates -> storage update -> metrics and plots (per method)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
