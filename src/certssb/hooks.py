"""Project hooks: parameters checked once before anything runs, MLflow runs named and parameterised once,
artifacts logged, and a results table at the end of the run.

Order matters around kedro-mlflow's ``MlflowHook`` (an entry-point plugin, so pluggy calls it before the
project's hooks unless told otherwise):

* ``ValidateParametersHook.before_pipeline_run`` is ``tryfirst``: a bad parameter stops the run before
  kedro-mlflow opens an MLflow run, before any node and before anything is written; it also names the
  parent run (kedro-mlflow reads ``tracking.run.name`` when it starts the run);
* ``MlflowRunHook.before_pipeline_run`` is ``trylast``: the run is open, it tags the experiment for the
  runs table and logs the blocks the pipelines read, flattened once (``noise.sigma``);
* ``ResultsTableHook.after_pipeline_run`` prints the table from the catalog.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from certssb import config, console, tracking

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
            "environment (--env), not with --params")


class ValidateParametersHook:
    """``certssb.config.validate`` once, before the first node; the parent MLflow run's name."""

    def __init__(self) -> None:
        self._context: Any = None
        self.config: config.Config | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        params = catalog.load("parameters")
        names = _pipeline_names(run_params)
        self.config = config.validate(params, names)
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
            params = catalog.load("parameters")
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
            radii = (catalog.load("parameters").get("evaluation") or {}).get("radii") or []
            footer = [f"artifacts: {_where(catalog, f'{methods[0]}.metrics')}"]
            if self._mlflow is not None and self._mlflow.run_id:
                footer.append(f"MLflow run: {self._mlflow.run_name} ({self._mlflow.run_id}); "
                              "open with: mlflow ui --backend-store-uri sqlite:///mlflow.db")
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


# ------------------------------------------------------------------------------------------------------------
# reliability (docs/reliability.md): threads, one run per folder, this run's versions, runs that died


class ThreadPolicyHook:
    """``torch.set_num_threads`` once, at the start of the run, from the parameter ``num_threads``
    (``certssb.execution.threads``: null = ``$OMP_NUM_THREADS`` if set, else all cores)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from certssb.execution.threads import apply_threads

        params = catalog.load("parameters")
        n = apply_threads(params.get("num_threads") if isinstance(params, dict) else None)
        log.info("torch uses %d thread(s) (parameter num_threads; rule for concurrent jobs: cores / jobs)", n)


class RunLockHook:
    """One run per project folder: an exclusive lock on ``data/.kedro_run.lock`` held from the start of the
    pipeline to its end (``certssb.execution.lock``). A second ``kedro run`` in the folder stops at once with
    ONE line naming the running one (``Error: ...``, exit status 2). The operating system releases the lock of
    a process that dies, so a killed run never blocks the next one.

    Register it BEFORE ``ValidateParametersHook`` in ``settings.HOOKS``: both are ``tryfirst`` and pluggy
    calls the later-registered first, so a run with a bad parameter never takes the lock."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._lock: Any = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._root = Path(context.project_path)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from certssb.execution.lock import RunLock

        self._release()  # a lock left by an earlier session of this process (a hook that failed after it)
        root = self._root or Path.cwd()
        self._lock = RunLock(root / "data" / RunLock.NAME, describe=_describe_run(run_params))
        self._lock.acquire()

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Any,
                          catalog: Any) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _describe_run(run_params: dict[str, Any]) -> str:
    pipes = ",".join(sorted(_pipeline_names(run_params)))
    return f"kedro run --pipelines={pipes} (session {run_params.get('session_id')})"


class PinLoadVersionsHook:
    """Each node loads the versions that THIS run saved: every versioned dataset the pipeline writes gets the
    run's save version as its load version (Kedro's ``Version(load, save)``; without it a load picks the
    newest version on disk, whoever wrote it). Explicit ``--load-versions`` are kept; inputs the run does not
    write still load their newest version (and the lineage checks of the nodes compare them)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from kedro.io.core import AbstractVersionedDataset, Version

        for name in sorted(pipeline.all_outputs()):
            try:
                ds = catalog.get(name)
            except Exception:  # noqa: BLE001, S112 - not a catalog entry (a MemoryDataset made at run time)
                continue
            version = getattr(ds, "_version", None)
            if isinstance(ds, AbstractVersionedDataset) and version is not None and version.load is None \
                    and version.save is not None:
                ds._version = Version(version.save, version.save)
                ds._clear_version_cache()


class StaleMlflowRunsHook:
    """At the start of a run (the folder's lock is held, so no other run of this folder is alive), MLflow runs
    still marked RUNNING in the project's local tracking store belong to runs that died (killed, crashed):
    they are marked KILLED, with one warning. Remote tracking servers (http...) are left alone: other folders
    may be running there."""

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        import mlflow

        try:
            uri = mlflow.get_tracking_uri()
            if not uri.startswith(("sqlite:", "file:", "/")):
                return
            from mlflow.tracking import MlflowClient

            active = mlflow.active_run()
            own = active.info.run_id if active is not None else None
            client = MlflowClient()
            experiments = [e.experiment_id for e in client.search_experiments()]
            stale = [r for r in client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'",
                                                   max_results=1000) if r.info.run_id != own]
            for run in stale:
                client.set_terminated(run.info.run_id, status="KILLED")
            if stale:
                names = ", ".join(f"{r.info.run_name} ({r.info.run_id[:8]})" for r in stale[:5])
                log.warning("%d MLflow run(s) left RUNNING by runs that died marked KILLED: %s%s", len(stale),
                            names, " ..." if len(stale) > 5 else "")
        except Exception as exc:  # noqa: BLE001 - tracking must never break a run
            log.warning("could not check for MLflow runs left RUNNING: %s", exc)


# --- issue 21: every mistake one line (certssb.cli), MLflow tags for comparison --------------------------------

PIPELINE_ORDER = ("data_engineering", "modelling", "evaluation")


def producer(name: str, pipelines: Any) -> str | None:
    """The registered pipeline that writes the dataset ``name`` (the three of the default run first, then the
    smallest other one); None when none does."""
    try:
        registered = {k: pipelines[k] for k in pipelines.keys() if k != "__default__"}
    except Exception:  # noqa: BLE001
        return None
    ordered = [k for k in PIPELINE_ORDER if k in registered] + sorted(
        (k for k in registered if k not in PIPELINE_ORDER), key=lambda k: len(registered[k].nodes))
    return next((k for k in ordered if name in registered[k].all_outputs()), None)


def _versions(ds: Any) -> list[str]:
    """The saved versions of a versioned file dataset (its folder's sub-folders), newest last."""
    path = Path(str(getattr(ds, "_filepath", "")))
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


class InputsExistHook:
    """Before the run opens an MLflow run or writes anything (``tryfirst``): every input the pipeline does not
    produce itself must exist, and every ``--load-versions`` version too; otherwise one line naming the
    artifact and the pipeline that writes it (``certssb.cli.fail``)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from kedro.framework.project import pipelines

        from certssb.cli import fail

        for name, version in sorted((run_params.get("load_versions") or {}).items()):
            if name not in catalog:
                fail(f"--load-versions names dataset '{name}', which is not in the catalog")
            ds = catalog.get(name)
            if not catalog.exists(name):
                have = _versions(ds)
                fail(f"--load-versions {name}:{version}: no such version of '{name}'; "
                     + (f"versions: {', '.join(have[-5:])}" if have else "it has no saved version yet"))
        for name in sorted(pipeline.inputs()):
            if name.startswith("params:") or name == "parameters" or name not in catalog:
                continue
            try:
                present = catalog.exists(name)
            except Exception:  # noqa: BLE001 - a dataset that cannot say: let the run find out
                continue
            if not present:
                by = producer(name, pipelines)
                fail(f"artifact '{name}' does not exist yet: run "
                     + (f"`kedro run --pipelines={by}` (or the default `kedro run`) first" if by else
                        "the pipeline that writes it first"))


def _corrupt_artifact(error: BaseException, catalog: Any) -> str | None:
    """For a dataset that failed to load: one line naming it and how to rebuild it; None for other errors.

    Kedro 1.7 raises ``DatasetError("<name>: <why>")`` from ``catalog.load``; older messages name the file."""
    from kedro.framework.project import pipelines
    from kedro.io.core import DatasetError

    exc: BaseException | None = error
    while exc is not None and not isinstance(exc, DatasetError):
        exc = exc.__cause__ or exc.__context__
    if exc is None:
        return None
    text = str(exc)
    head = text.split(":", 1)[0].strip()
    names = [head] if head and head in catalog else []
    for name in [] if names else list(catalog.keys() if hasattr(catalog, "keys") else ()):
        try:
            path = str(getattr(catalog.get(name), "_filepath", "") or "")
        except Exception:  # noqa: BLE001
            continue
        if path and path in text:
            names.append(name)
            break
    if not names or not ("load" in text or "read" in text):
        return None
    name = names[0]
    by = producer(name, pipelines)
    return (f"artifact '{name}' cannot be read (corrupt or incomplete file); rebuild it with "
            + (f"`kedro run --pipelines={by}`" if by else "the pipeline that writes it")
            + " (`kedro run --verbose` shows why)")


class UserErrorRunHook:
    """A run that failed on the user's mistake (an offline download, a corrupt artifact) leaves no MLflow run:
    the run and its nested runs are deleted, and the error becomes one line (``certssb.cli``). Also sets
    the parent run's tags once it is open: ``kedro_run_id``, ``kedro_command`` (as typed), ``runner``."""

    def __init__(self, mlflow_hook: MlflowRunHook | None = None) -> None:
        self._mlflow = mlflow_hook

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        import sys

        import mlflow

        if mlflow.active_run() is None:
            return
        try:
            runner = str(run_params.get("runner") or "SequentialRunner")
            mlflow.set_tags({
                "kedro_run_id": str(run_params.get("run_id")),
                "kedro_command": " ".join(["kedro", *sys.argv[1:]]) if Path(sys.argv[0]).name == "kedro"
                else tracking.typed_command(run_params),
                "runner": runner.split(" object at ")[0].rsplit(".", 1)[-1].lstrip("<"),
            })
        except Exception as exc:  # noqa: BLE001 - tracking must never break a run
            log.warning("could not tag the MLflow run: %s", exc)

    @hook_impl(trylast=True)
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        from certssb.cli import UserError, note_user_error, user_error

        err = user_error(error)
        message = str(err) if err is not None else _corrupt_artifact(error, catalog)
        if message is None:
            return
        note_user_error(message)
        self._delete_runs()
        if err is None:
            raise UserError(message) from error

    def _delete_runs(self) -> None:
        import shutil

        import mlflow

        run_id = self._mlflow.run_id if self._mlflow is not None else None
        if not run_id:
            return
        try:
            client = mlflow.MlflowClient()
            parent = client.get_run(run_id)
            children = client.search_runs([parent.info.experiment_id],
                                          filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
            store = getattr(getattr(client, "_tracking_client", None), "store", None)
            for run in [*children, parent]:
                client.delete_run(run.info.run_id)
                if hasattr(store, "_hard_delete_run"):  # gone from the database too, not only hidden
                    store._hard_delete_run(run.info.run_id)
                uri = run.info.artifact_uri or ""
                if uri.startswith("file://") or uri.startswith("/"):
                    folder = Path(uri.replace("file://", "", 1))
                    if folder.is_dir():
                        shutil.rmtree(folder.parent if folder.name == "artifacts" else folder,
                                      ignore_errors=True)
        except Exception as exc:  # noqa: BLE001 - the error itself is what matters
            log.warning("could not delete the failed MLflow run %s: %s", run_id, exc)
