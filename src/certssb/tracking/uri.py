"""One MLflow database per project, whatever the working directory (a notebook runs in notebooks/).

``conf/base/mlflow.yml`` says ``sqlite:///mlflow.db``: SQLAlchemy resolves that path against the current
directory, so a session started from ``notebooks/`` created a second, empty ``notebooks/mlflow.db``
(kedro-mlflow makes plain relative paths absolute, but not sqlite URIs). :func:`resolve` anchors a
relative sqlite path at the project root; :class:`ResolveTrackingUriHook` applies it before kedro-mlflow
reads its configuration (register it in ``settings.HOOKS``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

_SQLITE = "sqlite:///"


def resolve(project_path: str | Path, uri: str | None) -> str | None:
    """``sqlite:///<relative path>`` -> ``sqlite:///<project_path>/<relative path>``; anything else unchanged.

    ``sqlite:////abs/path.db`` (absolute), ``sqlite://`` (in memory), ``http(s)://``, ``databricks`` and
    ``None`` are returned as given.
    """
    if uri is None or not uri.startswith(_SQLITE):
        return uri
    rest = uri[len(_SQLITE) :]
    path, sep, query = rest.partition("?")
    if not path or Path(path).is_absolute() or path == ":memory:":
        return uri
    return _SQLITE + (Path(project_path).resolve() / path).as_posix() + sep + query


class ResolveTrackingUriHook:
    """Rewrites ``server.mlflow_tracking_uri`` (and the registry URI) of the ``mlflow`` config with
    :func:`resolve` before kedro-mlflow's own ``after_context_created`` reads it (``tryfirst``)."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        # kedro-mlflow sets its logger to INFO when imported, after conf/logging.yml was applied: its level
        # there (WARNING) is restored here, before its own after_context_created logs anything
        logging.getLogger("kedro_mlflow").setLevel(logging.WARNING)
        from certssb.reporting.console import quiet

        quiet()  # again, if the session set logging up anew
        loader = context.config_loader
        if "mlflow" not in loader.config_patterns:
            loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
        try:
            conf = dict(loader["mlflow"])
        except Exception:  # noqa: BLE001 - no mlflow.yml: kedro-mlflow's defaults apply
            return
        server = dict(conf.get("server") or {})
        for key in ("mlflow_tracking_uri", "mlflow_registry_uri"):
            if isinstance(server.get(key), str):
                server[key] = resolve(context.project_path, server[key])
        conf["server"] = server
        loader["mlflow"] = conf
