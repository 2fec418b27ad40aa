"""Project settings (Kedro 1.7)."""
from certssb.hooks import MlflowArtifactsHook, ValidateParametersHook

HOOKS = (ValidateParametersHook(), MlflowArtifactsHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # environments (conf/local, conf/paper_mnist, ...) override single keys of a parameter block
    "merge_strategy": {"parameters": "soft"},
}
