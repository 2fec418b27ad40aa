"""Project CLI: Kedro's own commands, with every mistake of ``kedro run`` printed as one short line.

Kedro 1.7 imports ``<package>.cli`` and lets its ``cli`` group override the built-in project commands
(``kedro.framework.cli.cli.KedroCLI.project_groups``: built-in < plugins < cli.py). ``run`` here is
Kedro's ``run`` command (same options, same callback, plus ``--verbose``) whose user errors -- a
:class:`~certssb.core.validation.ConfigError` or a :class:`UserError` anywhere in the exception chain --
become ``Error: <message>`` on stderr and exit status 2, instead of a rich traceback of ~300 lines.

The mistakes checked before anything is written (no MLflow run, no folder): an unknown ``--env`` and an
unknown ``--pipelines`` name (here), bad parameters, a missing upstream artifact and a ``--load-versions``
version that does not exist (:class:`certssb.hooks.InputsExistHook`). Errors during the run that are the
user's to fix (an offline download, a corrupt artifact) are turned into the same line, and the MLflow run
they left is deleted (:class:`certssb.hooks.UserErrorRunHook`).

Tracebacks: ``kedro run --verbose`` (or ``CERTSSB_TRACEBACK=1``) re-raises user errors with their traceback.
Every other exception keeps its traceback. Other code reports a user mistake with :func:`fail`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NoReturn

import click
from kedro.framework.cli.project import run as _kedro_run

from certssb.core.validation import ConfigError
from certssb.reporting.console import quiet

quiet()  # Kedro imports this module at start-up, after conf/logging.yml and before its plugins' hooks

EXIT_CONFIG_ERROR = 2
TRACEBACK_ENV = "CERTSSB_TRACEBACK"


class UserError(ConfigError):
    """A mistake the user can fix (an environment, a pipeline, an artifact): ``Error: <message>``, rc 2.

    A :class:`ConfigError` (bad parameters), so code that catches those catches these too."""


def fail(message: str) -> NoReturn:
    """Stop ``kedro run`` with ``Error: <message>`` on stderr and exit status 2 (the one-line error form)."""
    raise UserError(message)


def user_error(exc: BaseException | None) -> ConfigError | None:
    """The :class:`ConfigError` (or :class:`UserError`) in ``exc``'s chain (causes and contexts), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ConfigError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def verbose() -> bool:
    """Tracebacks wanted: ``kedro run --verbose`` or ``CERTSSB_TRACEBACK=1``."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


class ConfigFailure(click.ClickException):
    """Printed by click as ``Error: <message>``; exit status 2 (as a usage error)."""

    exit_code = EXIT_CONFIG_ERROR


def environments(conf_source: str | Path) -> list[str]:
    """The configuration environments: the folders of ``conf/``."""
    root = Path(conf_source)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def check_env(env: str | None, conf_source: str | Path) -> None:
    """An ``--env`` that is not a folder of ``conf/``: one line listing the environments."""
    if not env or (Path(conf_source) / env).is_dir():
        return
    fail(
        f"environment '{env}' does not exist (no folder {Path(conf_source).name}/{env}); environments: "
        + ", ".join(e for e in environments(conf_source) if e != "base")
    )


def check_pipelines(names: list[str] | None, registered: list[str]) -> None:
    """``--pipelines`` names that are not registered: one line listing the pipelines."""
    unknown = [n for n in names or () if n not in registered]
    if unknown:
        fail(
            f"pipeline {', '.join(repr(u) for u in unknown)} does not exist; pipelines: "
            + ", ".join(sorted(n for n in registered if n != "__default__"))
            + " (no --pipelines: data_engineering + modelling + evaluation)"
        )


class _DropUserErrorLogs(logging.Filter):
    """Kedro logs a failing node's exception (and "No nodes ran ...") before re-raising it; a user error is
    printed once, by the CLI. The exception being handled when the record is made tells which it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        import sys

        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if exc is None or not record.name.startswith(("kedro", "certssb")):
            return True
        return user_error(exc) is None and not _is_load_error(exc)


def _is_load_error(exc: BaseException) -> bool:
    """A dataset that could not be loaded (reported as a corrupt artifact by ``certssb.hooks``)."""
    from kedro.io.core import DatasetError

    return isinstance(exc, DatasetError)


_PENDING: list[str] = []  # messages of user errors raised during this run (set by the hooks)


def note_user_error(message: str) -> None:
    """Called by the hooks when a run failed on a user error (the CLI prints it once)."""
    _PENDING.append(message)


class RunCommand(click.Command):
    """Kedro's ``run`` with user errors turned into :class:`ConfigFailure`; ``--env`` is also put in
    ``KEDRO_ENV`` for the run, because the study's grid is read when pipelines are registered
    (``certssb.pipelines.study.grid.configured_study``), which sees the environment only through it."""

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.params.pop("verbose", False):
            os.environ[TRACEBACK_ENV] = "1"
        env, before = ctx.params.get("env"), os.environ.get("KEDRO_ENV")
        log_filter = _DropUserErrorLogs()
        if not verbose():
            for handler in logging.getLogger().handlers:
                handler.addFilter(log_filter)
        try:
            check_env(env, ctx.params.get("conf_source") or "conf")
            if env:
                os.environ["KEDRO_ENV"] = env
            names = ctx.params.get("pipelines") or (
                [ctx.params["pipeline"]] if ctx.params.get("pipeline") else []
            )
            if names:
                from kedro.framework.project import pipelines

                check_pipelines(list(names), list(pipelines.keys()))
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - only user errors are translated
            err = user_error(exc)
            if err is None or verbose():
                raise
            raise ConfigFailure(str(err)) from None
        finally:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(log_filter)
            _PENDING.clear()
            if env:
                if before is None:
                    os.environ.pop("KEDRO_ENV", None)
                else:
                    os.environ["KEDRO_ENV"] = before


run = RunCommand(
    name="run",
    callback=_kedro_run.callback,
    params=[
        *_kedro_run.params,
        click.Option(
            ["--verbose", "-v"],
            is_flag=True,
            default=False,
            help="Full tracebacks for user errors (or CERTSSB_TRACEBACK=1).",
        ),
    ],
    help=_kedro_run.help,
    short_help=_kedro_run.short_help,
    context_settings=_kedro_run.context_settings,
)


@click.group(name="certssb")
def cli() -> None:
    """Commands of the certssb project (``kedro run`` with one-line errors)."""


cli.add_command(run)
