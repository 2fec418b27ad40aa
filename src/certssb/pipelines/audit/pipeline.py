"""audit: per method (namespaces ``uniform`` and ``cert_ssb``), {method}.audit_report -> audit_summary,
audit_metrics, audit_figure. Reads the persisted artifacts of a default run; not part of ``__default__``."""
from kedro.pipeline import Pipeline, node, pipeline

from .nodes import run_audit, summarise_audit

METHODS = ("uniform", "cert_ssb")
SHARED_INPUTS = {"noise_plan", "poisoned_train", "clean_test", "pilot_model"}
SHARED_PARAMS = {"params:audit", "params:model", "params:ensemble", "params:evaluation", "params:sigma_opt",
                 "params:device"}


def method_pipeline() -> Pipeline:
    return pipeline([
        node(run_audit, ["ensemble", "certificates", "sigma", "noise_plan", "poisoned_train", "clean_test",
                         "pilot_model", "params:audit", "params:model", "params:ensemble",
                         "params:evaluation", "params:sigma_opt", "params:device"], "audit_report",
             name="audit"),
        node(summarise_audit, ["audit_report", "params:evaluation", "params:audit"],
             ["audit_summary", "audit_metrics", "audit_figure"],
             name="summarise_audit"),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    return sum((pipeline(method_pipeline(), namespace=m, inputs=SHARED_INPUTS, parameters=SHARED_PARAMS)
                for m in METHODS), Pipeline([]))
