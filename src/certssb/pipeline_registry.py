"""Project pipelines: data_engineering, modelling, evaluation (the default: all three), study, audit and
attack_strength."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from certssb.pipelines import attack_strength, audit, data_engineering, evaluation, modelling, study


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = {
        "data_engineering": data_engineering.create_pipeline(),
        "modelling": modelling.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    # not part of the default run: one namespaced instance of the three pipelines per grid cell (~30 min);
    # the grid is read from conf/ now, see certssb.pipelines.study.grid
    pipelines["study"] = study.create_pipeline() + pipelines["data_engineering"].only_nodes("download")
    pipelines["audit"] = audit.create_pipeline()  # after a default run: retrain inside the radii (issue 12)
    # not part of the default run: undefended ASR over trigger x label mode x rate x delta x epochs (issue 13)
    pipelines["attack_strength"] = attack_strength.create_pipeline() + pipelines[
        "data_engineering"
    ].only_nodes("download")
    return pipelines
