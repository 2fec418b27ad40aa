"""audit: per poisoning certifier of ``methods:`` (namespaces ``uniform`` and ``cert_ssb``; not ``cohen``,
whose certificate is about test-time inputs of a fixed model, not retraining), {method}.audit_report ->
audit_summary, audit_metrics, audit_figure. Reads the persisted artifacts of a default run; not part of
``__default__``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from certssb.config import EVASION_METHODS

from .nodes import run_audit, summarise_audit

SHARED_INPUTS = {"noise_plan", "poisoned_train", "clean_test", "pilot_model"}
SHARED_PARAMS = {
    "params:audit",
    "params:model",
    "params:ensemble",
    "params:evaluation",
    "params:sigma_opt",
    "params:device",
}


def method_pipeline() -> Pipeline:
    return pipeline(
        [
            node(
                run_audit,
                [
                    "ensemble",
                    "certificates",
                    "sigma",
                    "noise_plan",
                    "poisoned_train",
                    "clean_test",
                    "pilot_model",
                    "params:audit",
                    "params:model",
                    "params:ensemble",
                    "params:evaluation",
                    "params:sigma_opt",
                    "params:device",
                ],
                "audit_report",
                name="audit",
            ),
            node(
                summarise_audit,
                ["audit_report", "params:evaluation", "params:audit"],
                ["audit_summary", "audit_metrics", "audit_figure"],
                name="summarise_audit",
            ),
        ]
    )


def create_pipeline(methods: tuple[str, ...] | None = None, **kwargs) -> Pipeline:
    if methods is None:
        from certssb.pipelines.registered import configured_methods

        methods = configured_methods()
    return sum(
        (
            pipeline(method_pipeline(), namespace=m, inputs=SHARED_INPUTS, parameters=SHARED_PARAMS)
            for m in methods
            if m not in EVASION_METHODS
        ),
        Pipeline([]),
    )
