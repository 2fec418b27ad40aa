"""Project settings (Kedro 1.7)."""
from certssb.config import validate
from certssb.hooks import MlflowArtifactsHook, MlflowRunHook, ResultsTableHook, ValidateParametersHook
from certssb.pipelines.study.grid import StudyCellParameters
from certssb.tracking_uri import ResolveTrackingUriHook

_MLFLOW_RUN = MlflowRunHook()
HOOKS = (
    ResolveTrackingUriHook(),  # a relative sqlite MLflow URI means <project root>/mlflow.db
    ValidateParametersHook(),  # bad parameters stop the run before anything is written
    StudyCellParameters(validate),  # the study's cells get (and validate) their own parameter blocks
    _MLFLOW_RUN,
    MlflowArtifactsHook(),
    ResultsTableHook(_MLFLOW_RUN),
)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # environments (conf/local, conf/paper_mnist, ...) override single keys of a parameter block
    "merge_strategy": {"parameters": "soft"},
}
