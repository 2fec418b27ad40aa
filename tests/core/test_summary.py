"""certssb.core.summary: the run summary's attack metrics (reach, certifier-attack view, ASR, members)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch


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


def test_triggered_asr_is_the_share_predicted_as_the_target_and_none_without_a_target():
    from certssb.core.summary import triggered_asr

    pred = np.array([0, 0, 1, 0])
    assert triggered_asr(pred, {"target_y": torch.zeros(4, dtype=torch.long)}) == pytest.approx(0.75)
    assert triggered_asr(pred, {"target_y": torch.tensor([0, 1, 1, 1])}) == pytest.approx(0.5)  # per sample
    assert triggered_asr(pred, {"target_y": torch.full((4,), -1)}) is None  # a certifier attack: no target
    assert (
        triggered_asr(pred[:0], {"target_y": torch.zeros(0, dtype=torch.long)}) is None
    )  # nothing triggered


def test_member_accuracy_is_each_models_mean_share_of_draws_on_the_true_label():
    from certssb.core.summary import member_accuracy

    # 2 models x 3 samples x 2 classes, vote fractions over the draws; labels 0, 1, 1
    fractions = torch.tensor(
        [
            [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]],  # model 0: 1, 0.5, 1 on the true label
            [[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]],  # model 1: 0.25, 0, 0.5
        ]
    )
    data = {"y": torch.tensor([0, 1, 1]), "num_classes": 2}
    got = member_accuracy({"votes": fractions}, data)
    np.testing.assert_allclose(got, [(1 + 0.5 + 1) / 3, (0.25 + 0 + 0.5) / 3])
    # one vote per model (class indices) is the same as one-hot fractions
    hard = member_accuracy({"votes": torch.tensor([[0, 1, 0], [0, 0, 0]])}, data)
    np.testing.assert_allclose(hard, [2 / 3, 1 / 3])


def test_evasion_metrics_report_the_attack_outside_the_threat_model():
    from certssb.core.summary import OUTSIDE, REACH_KEYS, evasion_attack_metrics

    got = evasion_attack_metrics(
        {"joint_norm": 3, "feature_norm": 2.5, "label_changes": 7.0, "inserted": 0}, "evasion certificate"
    )
    assert got == {
        "attack_joint_norm": 3.0,
        "attack_feature_norm": 2.5,
        "attack_label_changes": 7,
        "attack_inserted": 0,
        "attack_in_threat_model": False,
        "attack_threat_model": f"{OUTSIDE} (evasion certificate)",
    }
    assert type(got["attack_joint_norm"]) is float and type(got["attack_label_changes"]) is int
    assert not set(got) & set(REACH_KEYS)  # no reach metric outside the threat model


@pytest.mark.parametrize("attack,label_mode", [("onepixel", "clean"), ("badnets", "dirty")])
def test_the_poison_summary_gives_the_joint_norm_and_the_threat_model(attack, label_mode):
    """||Delta|| = sqrt(sum_i ||delta_i||^2 + ||delta_test||^2) with the largest test trigger norm; inside the
    threat model only when no label changed and nothing was inserted."""
    from certssb.core.poisoning import poison
    from certssb.core.summary import INSIDE, OUTSIDE, poison_summary

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(100, 1, 8, 8, generator=g) * 0.5, torch.arange(100) % 4
    kw = dict(poison_rate=0.1, target=0, delta=1.0, num_classes=4, seed=0, label_mode=label_mode)
    res = poison(x, y, attack=attack, **kw)
    test_norms = torch.tensor([0.5, 2.0, 1.0])
    s = poison_summary(
        res,
        attack=attack,
        trigger=attack,
        poison_rate=0.1,
        target=0,
        delta=1.0,
        n_clean_test=7,
        triggered_norms=test_norms,
        certifier_labels=None,
        collapse_share=None,
    )
    train = float((res.norms.double() ** 2).sum())
    assert s["joint_norm"] == pytest.approx((train + 2.0**2) ** 0.5)
    assert s["train_joint_norm"] == pytest.approx(train**0.5) and s["test_trigger_norm_max"] == 2.0
    assert s["n_poisoned"] == 10 and s["n_triggered_test"] == 3 and s["n_train"] == 100
    assert s["in_threat_model"] == (label_mode == "clean") == (s["threat_model"] == INSIDE)
    assert s["threat_model"] in (INSIDE, OUTSIDE)
    assert s["label_changes"] == (0 if label_mode == "clean" else 10)
