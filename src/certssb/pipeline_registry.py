"""Project pipelines: data_engineering, modelling, evaluation (and the default: all three)."""
from __future__ import annotations

from kedro.pipeline import Pipeline

from certssb.pipelines import data_engineering, evaluation, modelling, study


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "data_engineering": data_engineering.create_pipeline(),
        "modelling": modelling.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines["study"] = study.create_pipeline()  # not part of the default run (~30 min)
    return pipelines
