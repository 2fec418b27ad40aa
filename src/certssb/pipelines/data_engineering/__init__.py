"""Data engineering: download -> poison -> noise plan."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
