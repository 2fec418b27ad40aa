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


def test_radius_keys_match_the_metric_names():
    from certssb.core.metrics import radius_key as metrics_key

    for r in (0.0, 0.25, 0.5, 1.0, 1.25, 2.0):
        assert console.radius_key(r) == metrics_key(r)
    assert console.radius_key(0.5) == "r050" and console.radius_key(2.0) == "r200"


def test_the_shown_radii_are_grid_values_near_one_two_and_four_times_the_smallest():
    grid = [0.0, 0.1, 0.15, 0.2, 0.3, 0.4, 0.45, 1.0]
    assert console.pick_radii(grid) == [0.1, 0.2, 0.4]
    assert console.pick_radii([0.0, 0.25, 0.5]) == [0.25, 0.5]  # fewer than k: all non-zero ones
    assert console.pick_radii([0.1, 0.11, 0.12, 0.13]) == [0.1, 0.12, 0.13]  # the nearest not yet taken
    assert console.reach_radii(grid, None) == [0.0, 0.1, 0.2, 0.4]
    assert console.reach_radii(grid, 0.2) == [0.0, 0.1, 0.15]  # only below the ceiling
    assert console.ceiling_radius({"uniform": {"sigma_train_min": 0.25}}) is None  # no ceiling known


def test_the_rows_show_three_decimals_a_dash_for_missing_and_the_published_radius_for_cert_ssb_only():
    metrics = {
        "uniform": {"clean_accuracy": 0.9, "cert_acc_r050": 0.5, "cert_acc_published_r050": 0.6},
        "cert_ssb": {"accuracy": 0.8, "cert_acc_r050": 0.25, "cert_acc_published_r050": 0.75},
    }
    header, body = console.rows(metrics, {"attack_success_rate": 0.97}, [0.5])
    assert header == ["method", "clean acc", "ASR smoothed", "ASR undefended", "cert acc r=0.5", "abstain"]
    assert body == [
        ["uniform σ", "0.900", "–", "0.970", "0.500", "–"],
        ["Cert-SSB", "0.800", "–", "0.970", "0.250 (pub. 0.750)", "–"],
    ]
    assert console.notes({"uniform": {"attack_in_threat_model": True}}, [0.5]) == [
        "attack: inside the certified threat model (label-preserving feature perturbation)"
    ]
    assert (
        console.notes({"a": {"attack_in_threat_model": True}, "b": {"attack_in_threat_model": False}}, [])
        == []
    )
