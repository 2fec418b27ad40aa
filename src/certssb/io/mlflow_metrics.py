"""kedro-mlflow's metrics-history dataset with dot-free metric names (``poison_joint_norm``, not
``poison.joint_norm``): a dotted name needs backticks in an MLflow filter and reads as a nested key."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset


class DotFreeMetricsHistoryDataset(MlflowMetricsHistoryDataset):
    """As ``MlflowMetricsHistoryDataset``; every ``.`` of the prefix and of the keys becomes ``_``."""

    def _build_args_list_from_metric_item(
        self, key: str, value: Any
    ) -> Generator[tuple[str, float, int], None, None]:
        return (
            (k.replace(".", "_"), v, s) for k, v, s in super()._build_args_list_from_metric_item(key, value)
        )

    def _is_dataset_metric(self, key: str) -> bool:
        return self._prefix is None or key.startswith(self._prefix.replace(".", "_"))
