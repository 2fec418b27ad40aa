"""The project's Kedro hooks, registered in ``certssb.settings``:

- ``run``: parameters checked once before anything runs, MLflow runs named and parameterised once, artifacts
  logged, the results table at the end (the order around kedro-mlflow's own hook is explained there);
- ``reliability``: threads, one run per folder, this run's versions, runs that died (docs/reliability.md);
- ``errors``: every mistake one line, no MLflow run left by it (``certssb.cli``; docs/tracking.md).
"""

from certssb.hooks.errors import InputsExistHook, UserErrorRunHook, producer
from certssb.hooks.reliability import PinLoadVersionsHook, RunLockHook, StaleMlflowRunsHook, ThreadPolicyHook
from certssb.hooks.run import MlflowArtifactsHook, MlflowRunHook, ResultsTableHook, ValidateParametersHook

__all__ = [
    "InputsExistHook",
    "MlflowArtifactsHook",
    "MlflowRunHook",
    "PinLoadVersionsHook",
    "ResultsTableHook",
    "RunLockHook",
    "StaleMlflowRunsHook",
    "ThreadPolicyHook",
    "UserErrorRunHook",
    "ValidateParametersHook",
    "producer",
]
