"""modelling: pilot_model, undefended_model -> {method}.sigma -> {method}.ensemble, for each certifier.

The per-method part is one pipeline instantiated under the namespaces of ``methods:`` (``uniform``,
``cert_ssb``, ``cohen``; the list is ``certssb.config.METHODS``, the selection is read from conf/ when the
pipelines are registered). The poisoning certifiers share every line of code but the sigma source
(``params:<method>.method``); ``cohen`` trains ONE base classifier with fresh Gaussian augmentation for its
own ``cohen.epochs`` instead of M models on fixed noisy copies. Every node reads parameter blocks
(``params:model``, ``params:sigma_opt``, ...), never the whole tree.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from certssb.config import EVASION_METHODS

from .nodes import optimise_sigma, train_ensemble, train_pilot, train_smoothed_classifier, train_undefended

SHARED_INPUTS = {"poisoned_train", "clean_test", "triggered_test", "noise_plan", "pilot_model"}
SHARED_PARAMS = {
    "params:model",
    "params:sigma_opt",
    "params:ensemble",
    "params:device",
    "params:seed",
    "params:precision",
}


def method_pipeline(method: str = "uniform") -> Pipeline:
    sigma = node(
        optimise_sigma,
        [
            "params:method",
            "pilot_model",
            "poisoned_train",
            "clean_test",
            "triggered_test",
            "noise_plan",
            "params:sigma_opt",
            "params:device",
            "params:seed",
            "params:precision",
        ],
        ["sigma", "sigma_history"],
        name="optimise_sigma",
    )
    if method in EVASION_METHODS:
        train = node(
            train_smoothed_classifier,
            [
                "params:method",
                "poisoned_train",
                "sigma",
                "noise_plan",
                "params:model",
                "params:epochs",
                "params:device",
                "params:precision",
            ],
            ["ensemble", "training_log", "training_metrics"],
            name="train_ensemble",
        )
    else:
        train = node(
            train_ensemble,
            [
                "params:method",
                "poisoned_train",
                "sigma",
                "noise_plan",
                "params:model",
                "params:ensemble",
                "params:device",
                "params:precision",
            ],
            ["ensemble", "training_log", "training_metrics"],
            name="train_ensemble",
        )
    return pipeline([sigma, train])


def namespaced(
    body: Pipeline, method: str, inputs: set[str] = SHARED_INPUTS, parameters: set[str] = SHARED_PARAMS
) -> Pipeline:
    """``body`` under the namespace ``method``, the shared inputs and parameters it reads kept global."""
    used = body.inputs()
    return pipeline(body, namespace=method, inputs=inputs & used, parameters=parameters & used)


def create_pipeline(methods: tuple[str, ...] | None = None, **kwargs) -> Pipeline:
    if methods is None:
        from certssb.pipelines.registered import configured_methods

        methods = configured_methods()
    shared = pipeline(
        [
            node(
                train_pilot,
                [
                    "poisoned_train",
                    "noise_plan",
                    "params:model",
                    "params:pilot",
                    "params:device",
                    "params:precision",
                ],
                "pilot_model",
                name="train_pilot",
            ),
            node(
                train_undefended,
                ["poisoned_train", "noise_plan", "params:model", "params:device", "params:precision"],
                "undefended_model",
                name="train_undefended",
            ),
        ]
    )
    per_method = [namespaced(method_pipeline(m), m) for m in methods]
    return shared + sum(per_method, Pipeline([]))
