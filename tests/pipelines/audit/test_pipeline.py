"""The audit pipeline after a (tiny) default run: both methods, flip counts per radius column, no flip of the
sound radius beyond what alpha allows."""
from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

CERTIFYING = {"noise": {"num_models": 12}, "evaluation": {"n0": 2, "alpha": 0.05}}


def test_audit_retrains_inside_the_radii_and_reports_flips(project):
    project.run(["data_engineering", "modelling", "evaluation"], params=CERTIFYING)
    project.run(["audit"], params={**CERTIFYING, "audit": {"quick": True, "quick_points": 4}})
    for method in ("uniform", "cert_ssb"):
        report = pd.read_csv(project.latest(f"data/08_reporting/{method}/audit_report.csv"))
        summary = json.loads(project.latest(f"data/08_reporting/{method}/audit_summary.json").read_text())
        assert set(report["strategy"]) <= {"lowsigma"}
        assert (report["weighted_norm"] <= 0.95 * report["r1"] * (1 + 1e-6)).all()  # inside the certificate
        assert (report["R"] > 0).all() and len(report) > 0
        assert summary["alpha"] == 0.05 and "flips_radius" in summary
        assert summary["columns"]["radius"]["lowsigma"]["p_value"] <= 1.0
        assert project.latest(f"data/08_reporting/{method}/audit_figure.png").stat().st_size > 1000
    cert_ssb = json.loads(project.latest("data/08_reporting/cert_ssb/audit_summary.json").read_text())
    assert set(cert_ssb["columns"]) == {"radius", "radius_published"}  # uniform: one column (they are equal)


def test_a_bad_audit_parameter_is_refused_before_anything_runs(project):
    with pytest.raises(Exception, match=r"audit\.fraction"):
        project.run(["audit"], params={"audit": {"fraction": 1.5}})
