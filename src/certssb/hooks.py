"""Project hooks: refuse bad parameters before the first node runs (so nothing is written)."""
from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from certssb.params import validate_parameters

log = logging.getLogger(__name__)


class ValidateParametersHook:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        params = catalog.load("parameters")
        names = set(run_params.get("pipeline_names") or ["__default__"])
        validate_parameters(params, names)
        log.info("parameters valid for pipeline(s) %s", ", ".join(sorted(names)))


class MlflowArtifactsHook:
    """Log every dataset whose catalog metadata names ``mlflow_artifact: <dir>`` to the active MLflow run.

    kedro-mlflow's ``MlflowArtifactDataset`` cannot wrap versioned datasets under Kedro 1.x (the wrapper
    gets its own save version), so the artifacts stay plain versioned datasets and this hook logs what
    was saved: tables as CSV, dicts as JSON, figures as PNG.
    """

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        import mlflow

        if self._catalog is None or mlflow.active_run() is None:
            return
        try:
            ds = self._catalog.get(dataset_name)
        except Exception:  # noqa: BLE001 - a dataset the catalog cannot describe is not ours to log
            return
        meta = getattr(ds, "metadata", None) or {}
        folder = meta.get("mlflow_artifact")
        if not folder:
            return
        fname = dataset_name.split(".")[-1]
        try:
            import matplotlib.figure
            import pandas as pd

            if isinstance(data, pd.DataFrame):
                mlflow.log_text(data.to_csv(index=False), f"{folder}/{fname}.csv")
            elif isinstance(data, dict):
                mlflow.log_dict(data, f"{folder}/{fname}.json")
            elif isinstance(data, matplotlib.figure.Figure):
                mlflow.log_figure(data, f"{folder}/{fname}.png")
        except Exception as exc:  # noqa: BLE001 - tracking must never break a run
            log.warning("could not log %s to MLflow: %s", dataset_name, exc)
