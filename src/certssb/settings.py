"""Project settings (Kedro 1.7)."""
import warnings

# Known, harmless third-party warnings that Kedro would print at every run (settings are imported before the
# config loader and the pipelines are built); every other warning still shows.
for _message in (
    r".*register_new_resolver\(\) is deprecated",  # omegaconf, called by kedro and kedro-mlflow
    r".*One or more dataset names contain '\.'",  # kedro: namespaced names (uniform.sigma, study.<cell>.*)
    r".*Support for class-based `config` is deprecated",  # pydantic, kedro-mlflow's config classes
):
    warnings.filterwarnings("ignore", message=_message)

from certssb.config import validate
from certssb.hooks import MlflowArtifactsHook, MlflowRunHook, ResultsTableHook, ValidateParametersHook
from certssb.hooks import PinLoadVersionsHook, RunLockHook, StaleMlflowRunsHook, ThreadPolicyHook
from certssb.pipelines.study.grid import StudyCellParameters
from certssb.tracking_uri import ResolveTrackingUriHook

_MLFLOW_RUN = MlflowRunHook()
HOOKS = (
    ResolveTrackingUriHook(),  # a relative sqlite MLflow URI means <project root>/mlflow.db
    RunLockHook(),  # one run per folder (registered before the validation: a bad parameter takes no lock)
    ValidateParametersHook(),  # bad parameters stop the run before anything is written
    StudyCellParameters(validate),  # the study's cells get (and validate) their own parameter blocks
    _MLFLOW_RUN,
    MlflowArtifactsHook(),
    ResultsTableHook(_MLFLOW_RUN),
    ThreadPolicyHook(),  # torch.set_num_threads(num_threads) at the start of the run
    PinLoadVersionsHook(),  # nodes load the versions this run saved
    StaleMlflowRunsHook(),  # MLflow runs left RUNNING by runs that died -> KILLED
)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # environments (conf/local, conf/paper_mnist, ...) override single keys of a parameter block
    "merge_strategy": {"parameters": "soft"},
}
