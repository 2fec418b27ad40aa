"""Project settings (Kedro 1.7)."""

import os
import warnings

# MLflow sets up its own INFO-level stream handler when it is imported (after conf/logging.yml was applied),
# which printed "Creating initial MLflow database tables..." on a first run: conf/logging.yml owns its
# loggers.
os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")

# Known, harmless third-party warnings that Kedro would print at every run (settings are imported before the
# config loader and the pipelines are built); every other warning still shows.
for _message in (
    r".*register_new_resolver\(\) is deprecated",  # omegaconf, called by kedro and kedro-mlflow
    r".*One or more dataset names contain '\.'",  # kedro: namespaced names (uniform.sigma, study.<cell>.*)
    r".*Support for class-based `config` is deprecated",  # pydantic, kedro-mlflow's config classes
    # mlflow.pyfunc (ANSI-coloured), on import by kedro-mlflow
    r"(?s).*Add type hints to the `predict` method",
):
    warnings.filterwarnings("ignore", message=_message)

from certssb.reporting.console import quiet

quiet()  # the root log handlers drop harmless third-party warnings (and their ANSI codes) from here on: this
#          module is imported before Kedro loads its plugins (kedro-mlflow warns on import)

from certssb.hooks import (
    InputsExistHook,
    MlflowArtifactsHook,
    MlflowRunHook,
    PinLoadVersionsHook,
    ResultsTableHook,
    RunLockHook,
    StaleMlflowRunsHook,
    ThreadPolicyHook,
    UserErrorRunHook,
    ValidateParametersHook,
)
from certssb.hooks.context import ProjectContext
from certssb.hooks.mlflow_hook import TypedMlflowHook
from certssb.pipelines.study.grid import StudyConfigLoader
from certssb.tracking.uri import ResolveTrackingUriHook

_MLFLOW_RUN = MlflowRunHook()
HOOKS = (
    ResolveTrackingUriHook(),  # a relative sqlite MLflow URI means <project root>/mlflow.db
    # tryfirst hooks run in the reverse order of registration: parameters, inputs, then the lock
    # (the parameters and the study cells' are checked earlier, by CONTEXT_CLASS, before Kedro types them)
    RunLockHook(),  # one run per folder (a bad parameter or a missing input takes no lock)
    InputsExistHook(),  # a missing upstream artifact stops the run before anything is written (after params)
    ValidateParametersHook(),  # `methods` against the registered pipelines; names the parent MLflow run
    _MLFLOW_RUN,
    MlflowArtifactsHook(),
    UserErrorRunHook(_MLFLOW_RUN),  # a run failed on a user error leaves no MLflow run; tags the parent run
    ResultsTableHook(_MLFLOW_RUN),
    ThreadPolicyHook(),  # torch.set_num_threads(num_threads) at the start of the run
    PinLoadVersionsHook(),  # nodes load the versions this run saved
    StaleMlflowRunsHook(),  # MLflow runs left RUNNING by runs that died -> KILLED
    TypedMlflowHook(),  # kedro-mlflow's hook (last: called first, as the plugin's was), given plain params
)
# kedro-mlflow's own hook instance is replaced by TypedMlflowHook (the nodes' parameter blocks are typed)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

# the project's parameter check (certssb.config) runs before Kedro types the blocks for the nodes
CONTEXT_CLASS = ProjectContext

# Kedro's OmegaConfigLoader, whose parameters also hold the study cells' own parameters, generated from the
# merged parameters (study_cell.<cell>.<block>; certssb.pipelines.study.grid)
CONFIG_LOADER_CLASS = StudyConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # environments (conf/local, conf/paper_mnist, ...) override single keys of a parameter block
    "merge_strategy": {"parameters": "soft"},
}
