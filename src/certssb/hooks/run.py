"""Project hooks: parameters checked once before anything runs, MLflow runs named and parameterised once,
artifacts logged, and a results table at the end of the run.

The parameters themselves are checked when Kedro builds the catalog, before any of these hooks
(``certssb.hooks.context.ProjectContext``): a bad parameter stops the run before kedro-mlflow opens an MLflow
run, before any node and before anything is written.

Order matters around kedro-mlflow's ``MlflowHook`` (``certssb.hooks.mlflow_hook.TypedMlflowHook``, registered
last in ``settings.HOOKS`` so that pluggy calls it before the project's other hooks, as it did the plugin's):

* ``ValidateParametersHook.before_pipeline_run`` is ``tryfirst``: ``methods`` must be the certifiers the
  pipelines were registered with; it names the parent run (kedro-mlflow reads ``tracking.run.name`` when it
  starts the run);
* ``MlflowRunHook.before_pipeline_run`` is ``trylast``: the run is open, it tags the experiment for the
  runs table and logs the blocks the pipelines read, flattened once (``noise.sigma``);
* ``ResultsTableHook.after_pipeline_run`` prints the table from the catalog.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from certssb import config
from certssb.reporting import console
from certssb.tracking import runs as tracking

log = logging.getLogger(__name__)


def _pipeline_names(run_params: dict[str, Any]) -> set[str]:
    names = run_params.get("pipeline_names") or run_params.get("pipeline_name") or ["__default__"]
    return {names} if isinstance(names, str) else set(names)


def _check_registered_methods(params: dict[str, Any], project_path: Any) -> None:
    """Refuse ``--params methods=...``: the certifiers' namespaces are built from conf/ when the pipelines are
    registered (``certssb.pipelines.registered``), so a runtime change would silently not apply."""
    from certssb.pipelines.registered import configured_methods

    given, registered = config.methods_from(params), configured_methods(project_path)
    if set(given) != set(registered):
        raise config.ConfigError(
            f"parameter 'methods' = {list(given)} differs from the certifiers the pipelines were registered "
            f"with ({list(registered)}, read from conf/): set 'methods' in conf/local/parameters.yml or an "
            "environment (--env), not with --params"
        )


class ValidateParametersHook:
    """What only the run can check (``methods`` against the registered pipelines; the parameters themselves
    were checked by ``certssb.hooks.context.ProjectContext``), and the parent MLflow run's name."""

    def __init__(self) -> None:
        self._context: Any = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        params = config.plain(catalog.load("parameters"))  # the nodes' blocks are typed: as configured
        names = _pipeline_names(run_params)
        _check_registered_methods(params, getattr(self._context, "project_path", None))
        log.info("parameters valid for pipeline(s) %s", ", ".join(sorted(names)))
        mlflow_config = getattr(self._context, "mlflow", None)
        run = getattr(getattr(mlflow_config, "tracking", None), "run", None)
        if run is not None and run.name is None:  # a name set in mlflow.yml wins
            run.name = tracking.run_name(names, params)


class MlflowRunHook:
    """Once the parent run is open: the experiment opens on the runs table; the used blocks logged once."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.run_name: str | None = None

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        import mlflow

        run = mlflow.active_run()
        self.run_id = self.run_name = None
        if run is None:
            return
        self.run_id, self.run_name = run.info.run_id, run.info.run_name
        try:
            tracking.ensure_runs_table(run.info.experiment_id)
            params = config.plain(catalog.load("parameters"))
            blocks = tracking.used_blocks(pipeline, config.blocks_for(_pipeline_names(run_params)))
            tracking.log_params_once(tracking.flatten_blocks(params, blocks & set(config.BLOCKS)))
        except Exception as exc:  # noqa: BLE001 - tracking must never break a run
            log.warning("could not log the parameters to MLflow: %s", exc)


class ResultsTableHook:
    """After a run that evaluated the methods: one table per run on the console (nothing otherwise)."""

    def __init__(self, mlflow_hook: MlflowRunHook | None = None) -> None:
        self._mlflow = mlflow_hook

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        outputs = pipeline.all_outputs() if hasattr(pipeline, "all_outputs") else set()
        methods = [m for m in config.METHODS if f"{m}.metrics" in outputs]
        if not methods:
            return
        try:
            per_method = {m: catalog.load(f"{m}.metrics") for m in methods}
            undefended = catalog.load("undefended_metrics") if catalog.exists("undefended_metrics") else None
            radii = (config.plain(catalog.load("parameters")).get("evaluation") or {}).get("radii") or []
            footer = [f"artifacts: {_where(catalog, f'{methods[0]}.metrics')}"]
            if self._mlflow is not None and self._mlflow.run_id:
                footer.append(
                    f"MLflow run: {self._mlflow.run_name} ({self._mlflow.run_id}); "
                    "open with: mlflow ui --backend-store-uri sqlite:///mlflow.db"
                )
            columns = console.reach_radii(radii, console.ceiling_radius(per_method))
            console.render(per_method, undefended, columns, footer)
        except Exception as exc:  # noqa: BLE001 - a summary must never fail a finished run
            log.warning("could not print the results table: %s", exc)


def _where(catalog: Any, name: str) -> str:
    """The reporting folder of a catalog entry (``data/08_reporting``), relative to the project."""
    try:
        ds = catalog.get(name)
        path = Path(str(getattr(ds, "_filepath", "")))
        folder = path.parent.parent if path.parent.name in config.METHODS else path.parent
        try:
            return str(folder.relative_to(Path.cwd()))
        except ValueError:
            return str(folder)
    except Exception:  # noqa: BLE001
        return "data/08_reporting"


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
