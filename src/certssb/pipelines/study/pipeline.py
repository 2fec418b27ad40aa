"""study: method x attack x sigma grid -> study_summary, study_curves, study_figure (data/08_reporting)."""
from kedro.pipeline import Pipeline, node, pipeline

from .nodes import run_study


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline([node(run_study, "parameters", ["study_summary", "study_curves", "study_figure"], name="study")])
