"""certssb.core.summary: the run summary's attack metrics (reach, certifier-attack view, ASR, members)."""

from __future__ import annotations

import pandas as pd
import pytest


def test_the_run_summary_gives_the_reach_only_when_points_were_poisoned():
    from certssb.core.summary import _reach

    certs = pd.DataFrame(
        {
            "split": ["clean", "clean", "triggered"],
            "correct": [True, True, True],
            "abstained": [False, False, False],
            "radius": [0.4, 0.6, 0.1],
        }
    )
    poisoned = {"train_poisoned_norms": [1.0, 1.0], "test_trigger_norm_max": 0.3, "joint_norm": 1.5}
    got = _reach(certs, poisoned)
    assert got["certified_radius_median"] == pytest.approx(0.5)
    assert got["attack_norm_covered"] == pytest.approx(0.5 / 1.5)
    assert (
        got["attack_points_covered"] == 0 and got["certificate_covers_test_trigger"]
    )  # 0.3 < 0.5 < sqrt(1.09)
    none = _reach(certs, {"train_poisoned_norms": [], "test_trigger_norm_max": 0.0, "joint_norm": 0.0})
    assert "attack_points_covered" not in none and none["attack_norm_covered"] == 1.0


def test_the_certifier_attack_view_counts_wrong_certificates_over_all_inputs():
    from certssb.core.summary import certifier_attack_view

    certs = pd.DataFrame(
        {
            "abstained": [False, False, True, False],
            "prediction": [1, 2, -1, 0],
            "label": [1, 1, 1, 0],
            "radius": [0.4, 0.9, 0.0, 0.2],
        }
    )
    got = certifier_attack_view(certs)
    assert got["certified_wrong_rate"] == pytest.approx(1 / 4)  # the abstention counts in the denominator
    assert got["median_radius_certified"] == pytest.approx(0.4)  # over the three held inputs
    none = certifier_attack_view(certs.assign(abstained=True))
    assert none == {"median_radius_certified": 0.0, "certified_wrong_rate": 0.0}
