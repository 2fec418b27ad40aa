"""data_engineering through a KedroSession: artifacts, versions, determinism, bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from kedro.io.core import Version

from certssb.io.torch_dataset import TorchDataset

pytestmark = pytest.mark.slow


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_runs_offline_and_writes_every_artifact(project):
    project.run(["data_engineering"])
    poisoned = _load(project.latest("data/03_primary/poisoned_train.pt"))
    clean = _load(project.latest("data/03_primary/clean_test.pt"))
    trig = _load(project.latest("data/03_primary/triggered_test.pt"))
    plan = _load(project.latest("data/05_model_input/noise_plan.pt"))
    report = pd.read_csv(project.latest("data/08_reporting/poison_report.csv"))
    summary = json.loads(project.latest("data/08_reporting/poison_summary.json").read_text())

    assert poisoned["x"].shape == (300, 1, 28, 28) and poisoned["x"].dtype == torch.float32
    assert 0.0 <= float(poisoned["x"].min()) and float(poisoned["x"].max()) <= 1.0
    assert len(report) == summary["n_poisoned"] == round(0.02 * 300)
    assert (report["new_label"] == 0).all() and (report["original_label"] != 0).all()
    assert (poisoned["y"][torch.tensor(report["index"].to_numpy())] == 0).all()
    # triggered test set: exactly the non-target clean test images, with their true labels
    assert clean["y"].numel() == 40
    assert trig["y"].numel() == int((clean["y"] != 0).sum()) == summary["n_triggered_test"]
    assert (trig["target_y"] == 0).all()
    expected_joint = (report["trigger_l2"].pow(2).sum() + summary["test_trigger_norm_max"] ** 2) ** 0.5
    assert summary["joint_norm"] == pytest.approx(expected_joint, rel=1e-6)
    # dirty-label backdoor (default): labels changed, nothing inserted, outside the certified threat model
    assert summary["label_mode"] == "dirty" and summary["inserted"] == 0
    assert summary["label_changes"] == len(report) and summary["in_threat_model"] is False
    assert summary["threat_model"] == "outside the certified threat model"
    assert summary["feature_norm"] == pytest.approx(report["trigger_l2"].pow(2).sum() ** 0.5, rel=1e-6)
    assert summary["train_poisoned_index"] == report["index"].tolist()
    assert summary["train_poisoned_norms"] == pytest.approx(report["trigger_l2"].tolist())
    # the noise plan holds seeds, not M noisy copies
    assert plan["num_models"] == 4 and plan["train_seeds"].shape == (4,)
    assert plan["poisoned_train"] == poisoned["fingerprint"]


def test_same_seed_reproduces_artifacts_and_versions_are_kept(project):
    project.run(["data_engineering"])
    project.run(["data_engineering"])
    versions = project.versions("data/03_primary/poisoned_train.pt")
    assert len(versions) == 2
    a, b = (
        _load(project.path / "data/03_primary/poisoned_train.pt" / v / "poisoned_train.pt") for v in versions
    )
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    p1, p2 = (
        _load(project.path / "data/05_model_input/noise_plan.pt" / v / "noise_plan.pt")
        for v in project.versions("data/05_model_input/noise_plan.pt")
    )
    assert torch.equal(p1["train_seeds"], p2["train_seeds"])
    # an older version can be loaded explicitly (what --load-versions does)
    old = TorchDataset(
        filepath=str(project.path / "data/03_primary/poisoned_train.pt"),
        version=Version(load=versions[0], save=None),
    ).load()
    assert torch.equal(old["x"], a["x"])


def test_different_seed_poisons_other_samples(project):
    project.run(["data_engineering"])
    project.run(["data_engineering"], params={"seed": 1})
    r0, r1 = (
        pd.read_csv(project.path / "data/08_reporting/poison_report.csv" / v / "poison_report.csv")
        for v in project.versions("data/08_reporting/poison_report.csv")
    )
    assert set(r0["source_index"]) != set(r1["source_index"])


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"attack": {"poison_rate": 1.5}}, "attack.poison_rate"),
        ({"attack": {"name": "nope"}}, "attack.name"),
        ({"data": {"dataset": "imagenet"}}, "data.dataset"),
        ({"attack": {"delta": -1.0}}, "attack.delta"),
        ({"noise": {"sigma": 0.0}}, "noise.sigma"),
        ({"attack": {"target": 10}}, "attack.target"),
    ],
)
def test_bad_parameters_stop_before_anything_is_written(project, params, name):
    project.run(["data_engineering"])
    before = {
        p: project.versions(p)
        for p in ("data/03_primary/poisoned_train.pt", "data/02_intermediate/raw_dataset.pt")
    }
    with pytest.raises(Exception) as err:
        project.run(["data_engineering"], params=params)
    assert name in str(err.value)
    after = {p: project.versions(p) for p in before}
    assert after == before  # nothing new written, nothing lost


def test_local_dataset_with_wrong_shapes_is_refused(project, tmp_path):
    import numpy as np

    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((10, 28, 28), dtype=np.uint8), y=np.zeros(9, dtype=np.int64))
    with pytest.raises(Exception, match="data.local_path"):
        project.run(["data_engineering"], params={"data": {"dataset": "local", "local_path": str(bad)}})
    assert project.versions("data/02_intermediate/raw_dataset.pt") == []
