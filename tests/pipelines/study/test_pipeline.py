"""The study grid on tiny parameters: one row per cell, one MLflow run per (method, attack, sigma)."""
from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def test_study_grid_runs_and_logs_each_cell(project):
    grid = {"study": {"attacks": ["onepixel", "abstain"], "sigmas": [0.25, 0.5], "quick": False}}
    project.run(["study"], params=grid)
    summary = pd.read_csv(project.latest("data/08_reporting/study/study_summary.csv"))
    assert len(summary) == 2 * 2 * 2
    assert set(summary["attack"]) == {"onepixel", "abstain"} and set(summary["sigma"]) == {0.25, 0.5}
    assert (summary.loc[summary.attack == "abstain", "poison_rate"] == 0.01).all()
    assert (summary["storage_clean_overlapping_pairs_after"] == 0).all()
    assert project.latest("data/08_reporting/study/study_figure.png").exists()
    client = MlflowClient()
    exp = client.get_experiment_by_name("certssb")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`certssb.attack` = 'abstain'")
    assert len(runs) == 4  # 2 methods x 2 sigmas
    assert {r.data.tags["certssb.sigma"] for r in runs} == {"0.25", "0.5"}


def test_study_refuses_a_bad_grid_before_running(project):
    with pytest.raises(Exception, match=r"study\.attacks"):
        project.run(["study"], params={"study": {"attacks": ["onepixel", "trojan"]}})
    assert project.versions("data/08_reporting/study/study_summary.csv") == []
