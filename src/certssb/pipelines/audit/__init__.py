"""audit: retrain inside each certificate's radius and count the certified predictions that flip."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
