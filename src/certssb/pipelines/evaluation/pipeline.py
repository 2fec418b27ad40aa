"""evaluation: {method}.votes -> certificates -> certificates_updated -> certified_accuracy, metrics, plots.

The per-method part runs under the namespaces of ``methods:`` (``uniform``, ``cert_ssb``, ``cohen``); the
shared part evaluates the undefended model, compares the methods, and logs one nested MLflow run per method.
``cohen`` (an evasion certifier) draws n0 + N input-noise samples of its one model and certifies them with
Clopper-Pearson over the draws; its storage update is not applicable (the certificates pass through).
"""

from __future__ import annotations

import functools

from kedro.pipeline import Pipeline, node, pipeline

from certssb.config import EVASION_METHODS
from certssb.pipelines.modelling.pipeline import namespaced

from .nodes import (
    CONFIG_BLOCKS,
    certify_cohen,
    certify_samples,
    compare_methods,
    compute_cohen_votes,
    compute_metrics,
    compute_votes,
    evaluate_undefended,
    log_mlflow_runs,
    make_plots,
    skip_storage_update,
    storage_update,
)

SHARED_INPUTS = {"clean_test", "triggered_test", "noise_plan", "poison_summary", "undefended_metrics"}
SHARED_PARAMS = {
    "params:evaluation",
    "params:ensemble",
    "params:device",
    "params:noise",
    "params:precision",
}


def method_pipeline(method: str = "uniform") -> Pipeline:
    if method in EVASION_METHODS:
        certify = [
            node(
                compute_cohen_votes,
                [
                    "ensemble",
                    "clean_test",
                    "triggered_test",
                    "sigma",
                    "noise_plan",
                    "params:n0",
                    "params:num_draws",
                    "params:device",
                    "params:noise",
                    "params:precision",
                ],
                "votes",
                name="votes",
            ),
            node(
                certify_cohen,
                ["votes", "clean_test", "triggered_test", "sigma", "params:evaluation"],
                "certificates",
                name="certify",
            ),
            node(
                skip_storage_update,
                "certificates",
                ["certificates_updated", "storage_report"],
                name="storage_update",
            ),
        ]
    else:
        certify = [
            node(
                compute_votes,
                [
                    "ensemble",
                    "clean_test",
                    "triggered_test",
                    "sigma",
                    "noise_plan",
                    "params:evaluation",
                    "params:ensemble",
                    "params:device",
                    "params:noise",
                    "params:precision",
                ],
                "votes",
                name="votes",
            ),
            node(
                certify_samples,
                ["votes", "clean_test", "triggered_test", "sigma", "params:evaluation"],
                "certificates",
                name="certify",
            ),
            node(
                storage_update,
                ["certificates", "clean_test", "triggered_test", "params:evaluation"],
                ["certificates_updated", "storage_report"],
                name="storage_update",
            ),
        ]
    return pipeline(
        [
            *certify,
            node(
                compute_metrics,
                [
                    "certificates",
                    "certificates_updated",
                    "votes",
                    "clean_test",
                    "triggered_test",
                    "sigma",
                    "poison_summary",
                    "undefended_metrics",
                    "params:evaluation",
                ],
                ["certified_accuracy", "metrics"],
                name="metrics",
            ),
            node(
                make_plots,
                [
                    "certificates",
                    "certificates_updated",
                    "sigma",
                    "metrics",
                    "params:noise",
                    "params:evaluation",
                ],
                ["plot_certified_accuracy", "plot_sigma_histogram", "plot_radius_storage_update"],
                name="plots",
            ),
        ]
    )


def create_pipeline(methods: tuple[str, ...] | None = None, **kwargs) -> Pipeline:
    if methods is None:
        from certssb.pipelines.registered import configured_methods

        methods = configured_methods()
    shared = pipeline(
        [
            node(
                evaluate_undefended,
                ["undefended_model", "clean_test", "triggered_test", "params:device", "noise_plan"],
                "undefended_metrics",
                name="evaluate_undefended",
            ),
        ]
    )
    per_method = [namespaced(method_pipeline(m), m, SHARED_INPUTS, SHARED_PARAMS) for m in methods]
    log_runs = functools.update_wrapper(functools.partial(log_mlflow_runs, methods=methods), log_mlflow_runs)
    compare = pipeline(
        [
            node(
                compare_methods,
                ["params:noise", "params:evaluation"]
                + [f"{m}.{x}" for m in methods for x in ("certified_accuracy", "certificates", "metrics")],
                ["certified_accuracy", "comparison_plot"],
                name="compare_methods",
            ),
            node(
                log_runs,
                [f"params:{b}" for b in CONFIG_BLOCKS]
                + [f"params:{m}" for m in methods]
                + [x for m in methods for x in (f"{m}.metrics", f"{m}.certified_accuracy", f"{m}.sigma")],
                "mlflow_runs",
                name="log_mlflow_runs",
            ),
        ]
    )
    return shared + sum(per_method, Pipeline([])) + compare
