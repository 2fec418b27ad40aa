"""What the configuration files fix when the pipelines are registered: the certifiers (``methods``) and the
study grid. Kedro builds the pipelines before it reads ``--params``, so these come from ``conf/base`` and
``conf/local`` (or the environment in ``KEDRO_ENV`` / ``--env``); ``certssb.hooks`` refuses a run whose
``--params`` change them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from certssb import config


def configured_parameters(project_path: str | Path | None = None) -> dict[str, Any]:
    """The parameters as the configuration files give them (base, then local or ``KEDRO_ENV``); {} without
    a ``conf`` folder (e.g. a bare checkout or a test's working directory)."""
    from kedro.framework.project import settings

    root = Path(project_path) if project_path is not None else Path.cwd()
    conf = root / settings.CONF_SOURCE
    if not conf.is_dir():
        return {}
    args = dict(settings.CONFIG_LOADER_ARGS)
    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(conf), env=os.environ.get("KEDRO_ENV"), **args)
    try:
        return dict(loader["parameters"] or {})
    except Exception:  # noqa: BLE001 - no parameters: nothing configured
        return {}


def configured_methods(project_path: str | Path | None = None) -> tuple[str, ...]:
    """The certifiers the configuration files select (``methods:``; all of ``config.METHODS`` when unset)."""
    return config.methods_from(configured_parameters(project_path))
