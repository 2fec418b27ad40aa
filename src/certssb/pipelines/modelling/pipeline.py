"""modelling: pilot_model, undefended_model -> {method}.sigma -> {method}.ensemble, for each method.

The per-method part is one pipeline instantiated under the namespaces ``uniform`` and ``cert_ssb``: both
share every line of code but the sigma source (``params:<method>.method``). Every node reads parameter
blocks (``params:model``, ``params:sigma_opt``, ...), never the whole tree.
"""
from kedro.pipeline import Pipeline, node, pipeline

from .nodes import optimise_sigma, train_ensemble, train_pilot, train_undefended

METHODS = ("uniform", "cert_ssb")
SHARED_INPUTS = {"poisoned_train", "clean_test", "triggered_test", "noise_plan", "pilot_model"}
SHARED_PARAMS = {"params:model", "params:sigma_opt", "params:ensemble", "params:device", "params:seed"}


def method_pipeline() -> Pipeline:
    return pipeline(
        [
            node(optimise_sigma,
                 ["params:method", "pilot_model", "poisoned_train", "clean_test", "triggered_test", "noise_plan",
                  "params:sigma_opt", "params:device", "params:seed"],
                 ["sigma", "sigma_history"], name="optimise_sigma"),
            node(train_ensemble, ["params:method", "poisoned_train", "sigma", "noise_plan", "params:model",
                                  "params:ensemble", "params:device"],
                 ["ensemble", "training_log", "training_metrics"], name="train_ensemble"),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    shared = pipeline(
        [
            node(train_pilot, ["poisoned_train", "noise_plan", "params:model", "params:pilot", "params:device"],
                 "pilot_model", name="train_pilot"),
            node(train_undefended, ["poisoned_train", "noise_plan", "params:model", "params:device"],
                 "undefended_model", name="train_undefended"),
        ]
    )
    per_method = [
        pipeline(method_pipeline(), namespace=m, inputs=SHARED_INPUTS, parameters=SHARED_PARAMS) for m in METHODS
    ]
    return shared + sum(per_method, Pipeline([]))
