"""evaluation: {method}.votes -> certificates -> certificates_updated -> certified_accuracy, metrics, plots.

The per-method part runs under the namespaces ``uniform`` and ``cert_ssb``; the shared part evaluates the
undefended model, compares the methods, and logs one nested MLflow run per method.
"""
from kedro.pipeline import Pipeline, node, pipeline

from certssb.config import METHODS

from .nodes import (
    CONFIG_BLOCKS, certify_samples, compare_methods, compute_metrics, compute_votes, evaluate_undefended, log_mlflow_runs,
    make_plots, storage_update,
)

SHARED_INPUTS = {"clean_test", "triggered_test", "noise_plan", "poison_summary", "undefended_metrics"}
SHARED_PARAMS = {"params:evaluation", "params:ensemble.ray", "params:device", "params:noise"}


def method_pipeline() -> Pipeline:
    return pipeline(
        [
            node(compute_votes, ["ensemble", "clean_test", "triggered_test", "sigma", "noise_plan",
                                 "params:evaluation", "params:ensemble.ray", "params:device"],
                 "votes", name="votes"),
            node(certify_samples, ["votes", "clean_test", "triggered_test", "sigma", "params:evaluation"],
                 "certificates", name="certify"),
            node(storage_update, ["certificates", "clean_test", "triggered_test", "params:evaluation"],
                 ["certificates_updated", "storage_report"], name="storage_update"),
            node(compute_metrics,
                 ["certificates", "certificates_updated", "votes", "clean_test", "triggered_test", "sigma",
                  "poison_summary", "undefended_metrics", "params:evaluation"],
                 ["certified_accuracy", "metrics"], name="metrics"),
            node(make_plots, ["certificates", "certificates_updated", "sigma", "metrics", "params:noise",
                              "params:evaluation"],
                 ["plot_certified_accuracy", "plot_sigma_histogram", "plot_radius_storage_update"], name="plots"),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    shared = pipeline([
        node(evaluate_undefended, ["undefended_model", "clean_test", "triggered_test", "params:device"],
             "undefended_metrics", name="evaluate_undefended"),
    ])
    per_method = [
        pipeline(method_pipeline(), namespace=m, inputs=SHARED_INPUTS, parameters=SHARED_PARAMS)
        for m in METHODS
    ]
    compare = pipeline([
        node(compare_methods, ["params:noise", "params:evaluation"] + [f"{m}.{x}" for m in METHODS
                                               for x in ("certified_accuracy", "certificates", "metrics")],
             ["certified_accuracy", "comparison_plot"],
             name="compare_methods"),
        node(log_mlflow_runs,
             [f"params:{b}" for b in CONFIG_BLOCKS] + [f"params:{m}" for m in METHODS]
             + [x for m in METHODS for x in (f"{m}.metrics", f"{m}.certified_accuracy", f"{m}.sigma")],
             "mlflow_runs", name="log_mlflow_runs"),
    ])
    return shared + sum(per_method, Pipeline([])) + compare
