"""The audit pipeline after a (tiny) default run: both methods, the ladder per column and strategy, a break
factor per column, every Delta at c x R1 in its column's norm (inside for c < 1)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

CERTIFYING = {"noise": {"num_models": 12}, "evaluation": {"n0": 2, "alpha": 0.05}}


def test_audit_climbs_the_ladder_and_reports_break_factors(project):
    project.run(["data_engineering", "modelling", "evaluation"], params=CERTIFYING)
    quick = {
        "quick": True,
        "quick_points": 3,
        "quick_factors": [0.95, 8],
        "quick_strategies": ["pgd", "brew"],
        "brew_steps": 3,
        "pgd_steps": 3,
    }
    project.run(["audit"], params={**CERTIFYING, "audit": quick})
    for method in ("uniform", "cert_ssb"):
        report = pd.read_csv(project.latest(f"data/08_reporting/{method}/audit_report.csv"))
        summary = json.loads(project.latest(f"data/08_reporting/{method}/audit_summary.json").read_text())
        assert len(report) > 0 and set(report["strategy"]) == {"pgd", "brew"}
        assert (report["column_norm"] <= report["factor"] * report["r1"] * (1 + 1e-6)).all()
        pgd = report[report["strategy"] == "pgd"]
        budget = pgd["factor"] * pgd["r1"]
        assert ((pgd["column_norm"] - budget).abs() <= 1e-6 * budget).all()
        assert set(report["factor"]) <= {0.95, 8.0} and 0.95 in set(report["factor"])
        assert summary["flip_bound_per_point"] == pytest.approx(0.1) and summary["factors"] == [0.95, 8.0]
        for column, bf in summary["break_factor"].items():
            assert set(bf) == {"any", "training_only", "input_only"} and column in summary["power"]
        assert project.latest(f"data/08_reporting/{method}/audit_figure.png").stat().st_size > 1000
    cert_ssb = json.loads(project.latest("data/08_reporting/cert_ssb/audit_summary.json").read_text())
    assert set(cert_ssb["columns"]) == {"radius", "radius_published", "radius_resigma"}
    uniform = json.loads(project.latest("data/08_reporting/uniform/audit_summary.json").read_text())
    assert set(uniform["columns"]) == {"radius"}  # uniform sigma: one column (they are equal), no resigma


def test_a_bad_audit_parameter_is_refused_before_anything_runs(project):
    with pytest.raises(Exception, match=r"audit\.factors"):
        project.run(["audit"], params={"audit": {"factors": [2, 1]}})
