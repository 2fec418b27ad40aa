"""Every mistake one line (``certssb.cli``): missing inputs and versions caught before anything is written, a
run that failed on the user's mistake leaves no MLflow run; and the parent run's comparison tags."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from certssb.hooks.run import MlflowRunHook
from certssb.tracking import runs as tracking

log = logging.getLogger(__name__)

PIPELINE_ORDER = ("data_engineering", "modelling", "evaluation")


def producer(name: str, pipelines: Any) -> str | None:
    """The registered pipeline that writes the dataset ``name`` (the three of the default run first, then the
    smallest other one); None when none does."""
    try:
        registered = {k: pipelines[k] for k in pipelines.keys() if k != "__default__"}
    except Exception:  # noqa: BLE001
        return None
    ordered = [k for k in PIPELINE_ORDER if k in registered] + sorted(
        (k for k in registered if k not in PIPELINE_ORDER), key=lambda k: len(registered[k].nodes)
    )
    return next((k for k in ordered if name in registered[k].all_outputs()), None)


def rebuild_hint(artifact: str, pipelines: Any) -> str:
    """How to rebuild ``artifact`` with ``kedro run`` (the registered pipeline that writes it)."""
    by = producer(artifact, pipelines)
    return (
        f"rerun `kedro run --pipelines={by}`" if by else "rerun the upstream pipelines"
    ) + " (or pass matching --load-versions)"


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
                fail(
                    f"--load-versions {name}:{version}: no such version of '{name}'; "
                    + (f"versions: {', '.join(have[-5:])}" if have else "it has no saved version yet")
                )
        for name in sorted(pipeline.inputs()):
            if name.startswith("params:") or name == "parameters" or name not in catalog:
                continue
            try:
                present = catalog.exists(name)
            except Exception:  # noqa: BLE001 - a dataset that cannot say: let the run find out
                continue
            if not present:
                by = producer(name, pipelines)
                fail(
                    f"artifact '{name}' does not exist yet: run "
                    + (
                        f"`kedro run --pipelines={by}` (or the default `kedro run`) first"
                        if by
                        else "the pipeline that writes it first"
                    )
                )


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
    return (
        f"artifact '{name}' cannot be read (corrupt or incomplete file); rebuild it with "
        + (f"`kedro run --pipelines={by}`" if by else "the pipeline that writes it")
        + " (`kedro run --verbose` shows why)"
    )


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
            mlflow.set_tags(
                {
                    "kedro_run_id": str(run_params.get("run_id")),
                    "kedro_command": " ".join(["kedro", *sys.argv[1:]])
                    if Path(sys.argv[0]).name == "kedro"
                    else tracking.typed_command(run_params),
                    "runner": runner.split(" object at ")[0].rsplit(".", 1)[-1].lstrip("<"),
                }
            )
        except Exception as exc:  # noqa: BLE001 - tracking must never break a run
            log.warning("could not tag the MLflow run: %s", exc)

    @hook_impl(trylast=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        from kedro.framework.project import pipelines

        from certssb.cli import UserError, note_user_error, user_error
        from certssb.core.artifacts import LineageError

        err = user_error(error)
        message = str(err) if err is not None else _corrupt_artifact(error, catalog)
        if message is None:
            return
        if isinstance(err, LineageError):  # core names the artifact; how to rebuild it is Kedro's to say
            message = f"{message}: {rebuild_hint(err.artifact, pipelines)}"
        note_user_error(message)
        self._delete_runs()
        if err is None or isinstance(err, LineageError):
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
            children = client.search_runs(
                [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
            )
            store = getattr(getattr(client, "_tracking_client", None), "store", None)
            for run in [*children, parent]:
                client.delete_run(run.info.run_id)
                if hasattr(store, "_hard_delete_run"):  # gone from the database too, not only hidden
                    store._hard_delete_run(run.info.run_id)
                uri = run.info.artifact_uri or ""
                if uri.startswith("file://") or uri.startswith("/"):
                    folder = Path(uri.replace("file://", "", 1))
                    if folder.is_dir():
                        shutil.rmtree(
                            folder.parent if folder.name == "artifacts" else folder, ignore_errors=True
                        )
        except Exception as exc:  # noqa: BLE001 - the error itself is what matters
            log.warning("could not delete the failed MLflow run %s: %s", run_id, exc)
