"""Custom Kedro datasets of the project (catalog ``type: certssb.datasets.<Name>``)."""
from certssb.datasets.torch_dataset import TorchDataset

__all__ = ["TorchDataset"]
