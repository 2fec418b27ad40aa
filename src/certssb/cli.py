"""Project CLI: Kedro's own commands, with ``kedro run`` printing a bad parameter as one short line.

Kedro 1.7 imports ``<package>.cli`` and lets its ``cli`` group override the built-in project commands
(``kedro.framework.cli.cli.KedroCLI.project_groups``: built-in < plugins < cli.py). ``run`` here is
Kedro's ``run`` command (same options, same callback) whose :class:`~certssb.core.validation.ConfigError`
becomes ``Error: <message>`` on stderr and exit status 2, instead of a rich traceback of ~300 lines.
Every other exception keeps its traceback.
"""
from __future__ import annotations

import os
from typing import Any

import click
from kedro.framework.cli.project import run as _kedro_run

from certssb.core.validation import ConfigError

EXIT_CONFIG_ERROR = 2


class ConfigFailure(click.ClickException):
    """Printed by click as ``Error: <message>``; exit status 2 (as a usage error)."""

    exit_code = EXIT_CONFIG_ERROR


class RunCommand(click.Command):
    """Kedro's ``run`` with :class:`ConfigError` turned into :class:`ConfigFailure`; ``--env`` is also put in
    ``KEDRO_ENV`` for the run, because the study's grid is read when pipelines are registered
    (``certssb.pipelines.study.grid.configured_study``), which sees the environment only through it."""

    def invoke(self, ctx: click.Context) -> Any:
        env, before = ctx.params.get("env"), os.environ.get("KEDRO_ENV")
        if env:
            os.environ["KEDRO_ENV"] = env
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise ConfigFailure(str(exc)) from None
        finally:
            if env:
                if before is None:
                    os.environ.pop("KEDRO_ENV", None)
                else:
                    os.environ["KEDRO_ENV"] = before


run = RunCommand(
    name="run", callback=_kedro_run.callback, params=list(_kedro_run.params), help=_kedro_run.help,
    short_help=_kedro_run.short_help, context_settings=_kedro_run.context_settings,
)


@click.group(name="certssb")
def cli() -> None:
    """Commands of the certssb project (``kedro run`` with short configuration errors)."""


cli.add_command(run)
