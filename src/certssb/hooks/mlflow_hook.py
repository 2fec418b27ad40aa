"""kedro-mlflow's hook for typed parameter blocks (imported by ``certssb.settings`` only: importing
kedro-mlflow imports MLflow, whose start-up warnings the settings filter first)."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

from certssb.config import plain


class TypedMlflowHook(MlflowHook):
    """kedro-mlflow's hook, given the ``params:<block>`` inputs of a node as the mappings they were configured
    as: the nodes get typed blocks, which kedro-mlflow would log as one string each instead of flattening them
    to ``noise.sigma``, ... Registered in place of the plugin's (``settings.DISABLE_HOOKS_FOR_PLUGINS``), last
    in ``settings.HOOKS`` so that pluggy calls it before the project's other hooks, as it did the plugin's."""

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any], is_async: bool) -> None:
        params = {k: plain(v) if k.startswith("params:") else v for k, v in inputs.items()}
        super().before_node_run(node=node, catalog=catalog, inputs=params, is_async=is_async)
