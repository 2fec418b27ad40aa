"""certssb.reporting.console: the results table printed after a run (ceilings, radii, notes)."""

from __future__ import annotations

import pytest

from certssb.reporting import console


def test_the_console_names_each_certifiers_ceiling_and_shows_the_radii_below_the_largest():
    metrics = {
        "uniform": {"radius_ceiling_sigma_units": 1.0701, "sigma_train_min": 0.25},
        "cohen": {
            "radius_ceiling_sigma_units": 2.4627,
            "sigma_train_min": 0.25,
            "attack_in_threat_model": False,
        },
        "cert_ssb": {
            "radius_ceiling_sigma_units": 1.0701,
            "sigma_train_min": 0.25,
            "attack_in_threat_model": False,
        },
    }
    assert console.ceilings(metrics) == pytest.approx(
        {"uniform": 0.2675, "cohen": 0.6157, "cert_ssb": 0.2675}, abs=1e-4
    )
    assert console.reach_radii([0.0, 0.25, 0.5, 0.75, 1.0], console.ceiling_radius(metrics)) == [
        0.0,
        0.25,
        0.5,
    ]
    lines = console.notes(metrics, [0.0, 0.25, 0.5])
    assert "uniform σ r = 0.268" in lines[0] and "Cohen et al. (evasion) r = 0.616" in lines[0]
    assert lines[1].startswith("attack: outside the certified threat model")
