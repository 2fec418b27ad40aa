"""Reliability hooks (docs/reliability.md): the thread count, one run per project folder, the versions this
run saved, and MLflow runs left RUNNING by runs that died."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from certssb.hooks.run import _pipeline_names

log = logging.getLogger(__name__)


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
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
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
            if (
                isinstance(ds, AbstractVersionedDataset)
                and version is not None
                and version.load is None
                and version.save is not None
            ):
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
            stale = [
                r
                for r in client.search_runs(
                    experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000
                )
                if r.info.run_id != own
            ]
            for run in stale:
                client.set_terminated(run.info.run_id, status="KILLED")
            if stale:
                names = ", ".join(f"{r.info.run_name} ({r.info.run_id[:8]})" for r in stale[:5])
                log.warning(
                    "%d MLflow run(s) left RUNNING by runs that died marked KILLED: %s%s",
                    len(stale),
                    names,
                    " ..." if len(stale) > 5 else "",
                )
        except Exception as exc:  # noqa: BLE001 - tracking must never break a run
            log.warning("could not check for MLflow runs left RUNNING: %s", exc)
