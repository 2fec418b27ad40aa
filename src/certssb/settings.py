"""Project settings (Kedro 1.7)."""
from certssb.hooks import MlflowArtifactsHook, ValidateParametersHook
from certssb.params import validate_parameters
from certssb.pipelines.study.grid import StudyCellParameters
from certssb.tracking_uri import ResolveTrackingUriHook

HOOKS = (ResolveTrackingUriHook(), ValidateParametersHook(), StudyCellParameters(lambda p, _: validate_parameters(p, {"__default__"})),
         MlflowArtifactsHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # environments (conf/local, conf/paper_mnist, ...) override single keys of a parameter block
    "merge_strategy": {"parameters": "soft"},
}
