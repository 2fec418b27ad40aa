"""modelling: pilot_model, undefended_model -> {method}.sigma -> {method}.ensemble, for each method.

The per-method part is one pipeline instantiated under the namespaces ``uniform`` and ``cert_ssb``: both
share every line of code but the sigma source (``params:<method>.method``).
"""
from kedro.pipeline import Pipeline, node, pipeline

from certssb.params import METHODS

from .nodes import optimise_sigma, train_ensemble, train_pilot, train_undefended

SHARED_INPUTS = {"poisoned_train", "clean_test", "triggered_test", "noise_plan", "pilot_model"}


def method_pipeline() -> Pipeline:
    return pipeline(
        [
            node(optimise_sigma,
                 ["params:method", "pilot_model", "poisoned_train", "clean_test", "triggered_test", "noise_plan",
                  "parameters"],
                 ["sigma", "sigma_history"], name="optimise_sigma"),
            node(train_ensemble, ["params:method", "poisoned_train", "sigma", "noise_plan", "parameters"],
                 ["ensemble", "training_log", "training_metrics"], name="train_ensemble"),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    shared = pipeline(
        [
            node(train_pilot, ["poisoned_train", "noise_plan", "parameters"], "pilot_model", name="train_pilot"),
            node(train_undefended, ["poisoned_train", "noise_plan", "parameters"], "undefended_model",
                 name="train_undefended"),
        ]
    )
    per_method = [
        pipeline(method_pipeline(), namespace=m, inputs=SHARED_INPUTS, parameters={"parameters": "parameters"})
        for m in METHODS
    ]
    return shared + sum(per_method, Pipeline([]))
