"""kedro-mlflow's hook is handed the typed blocks as the mappings they were configured as."""

from __future__ import annotations

from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

from certssb import config
from certssb.hooks.mlflow_hook import TypedMlflowHook


def test_typed_blocks_reach_kedro_mlflow_as_plain_mappings(monkeypatch):
    seen = {}
    monkeypatch.setattr(MlflowHook, "before_node_run", lambda self, **kw: seen.update(kw["inputs"]))
    noise = config.block("noise", {"sigma": 0.25, "num_models": 8, "num_draws": 1, "materialise": 0})
    data = {"images": [1, 2]}
    TypedMlflowHook().before_node_run(
        node=None,
        catalog=None,
        inputs={"params:noise": noise, "params:seed": 3, "clean_test": data},
        is_async=False,
    )
    assert seen["params:noise"] == {"sigma": 0.25, "num_models": 8, "num_draws": 1, "materialise": 0}
    assert isinstance(seen["params:noise"], dict) and seen["params:seed"] == 3
    assert seen["clean_test"] is data  # artifacts are passed through untouched
