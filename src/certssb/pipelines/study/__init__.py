"""Study: the grid method x attack x sigma, reproducing the papers' findings."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
