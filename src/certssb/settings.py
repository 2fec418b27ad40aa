"""Project settings (Kedro 1.7)."""
from certssb.hooks import MlflowArtifactsHook, MlflowRunHook, ResultsTableHook, ValidateParametersHook

_MLFLOW_RUN = MlflowRunHook()
HOOKS = (ValidateParametersHook(), _MLFLOW_RUN, MlflowArtifactsHook(), ResultsTableHook(_MLFLOW_RUN))

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # environments (conf/local, conf/paper_mnist, ...) override single keys of a parameter block
    "merge_strategy": {"parameters": "soft"},
}
