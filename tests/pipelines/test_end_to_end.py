"""All three pipelines through KedroSessions on tiny parameters, each pipeline in its own session."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from scipy.stats import norm

pytestmark = pytest.mark.slow
RADII = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0]


def test_three_pipelines_end_to_end(project):
    project.run(["data_engineering"])
    project.run(["modelling"])  # reads only persisted artifacts of the previous session
    project.run(["evaluation"])

    # the ensemble: M state dicts + what made them
    ens = torch.load(project.latest("data/06_models/cert_ssb/ensemble.pt"), weights_only=True)
    assert len(ens["model_indices"]) == 4 and ens["method"] == "cert_ssb"
    assert all(t.shape[0] == 4 for t in ens["params"].values())
    sig = torch.load(project.latest("data/06_models/cert_ssb/sigma.pt"), weights_only=True)
    assert float(sig["train"].min()) >= 0.25 - 1e-6 and float(sig["train"].max()) <= 0.5 + 1e-6
    uni = torch.load(project.latest("data/06_models/uniform/sigma.pt"), weights_only=True)
    assert torch.all(uni["train"] == 0.25)

    table = pd.read_csv(project.latest("data/08_reporting/certified_accuracy.csv"))
    assert set(table["method"]) == {"uniform", "cert_ssb", "cohen"}
    assert len(table) == 3 * 2 * 2 * len(RADII)  # methods x splits x regions x radii
    for _, g in table.groupby(["method", "split", "region"]):
        ca = g.sort_values("radius")["certified_accuracy"].to_numpy()
        assert np.all(np.diff(ca) <= 1e-12)  # non-increasing in the radius
        assert np.all((ca >= 0) & (ca <= 1))

    certs = pd.read_csv(project.latest("data/07_model_output/cert_ssb/certificates.csv"))
    assert {
        "sample_id",
        "label",
        "prediction",
        "p_lower_a",
        "p_upper_b",
        "r1",
        "sigma",
        "sigma_min",
        "radius",
        "radius_published",
        "abstained",
    } <= set(certs.columns)
    assert (certs["radius"] <= 0.25 * certs["r1"] + 1e-9).all()  # sigma_0 = 0.25 is the smallest sigma
    assert (certs["radius"] <= certs["radius_published"] + 1e-9).all()
    uni = pd.read_csv(project.latest("data/07_model_output/uniform/certificates.csv"))
    np.testing.assert_allclose(uni["radius"], uni["radius_published"])
    report = json.loads(project.latest("data/08_reporting/cert_ssb/storage_report.json").read_text())
    assert report["all"]["overlapping_pairs_after"] == 0 and report["rule"] == "trim"
    for name in ("certified_accuracy", "sigma_histogram", "radius_storage_update"):
        assert project.latest(f"data/08_reporting/cert_ssb/{name}.png").stat().st_size > 1000

    # cohen: one augmented base classifier, Clopper-Pearson over its N = 40 input draws (the poisoning
    # certifiers bound their M - n0 = 3 models), storage update not applicable, its threat model stated
    coh = torch.load(project.latest("data/06_models/cohen/ensemble.pt"), weights_only=True)
    assert len(coh["model_indices"]) == 1 and coh["train_config"]["epochs"] == 1
    cc = pd.read_csv(project.latest("data/07_model_output/cohen/certificates.csv"))
    assert list(cc.columns) == list(certs.columns) and set(cc["method"]) == {"cohen"}
    assert (cc["n_estimation"] == 40).all() and (uni["n_estimation"] == 3).all()
    np.testing.assert_allclose(cc["radius"], cc["radius_published"])
    assert ((cc["p_lower_a"] <= 0.5) == cc["abstained"]).all()
    coh_report = json.loads(project.latest("data/08_reporting/cohen/storage_report.json").read_text())
    assert coh_report["rule"] == "not applicable"
    coh_metrics = json.loads(project.latest("data/08_reporting/cohen/metrics.json").read_text())
    assert coh_metrics["certifies"] == (
        "test-time l2 perturbation of the input, model fixed; certifies nothing about poisoning"
    )
    assert coh_metrics["radius_ceiling_sigma_units"] == pytest.approx(float(norm.ppf(0.001 ** (1 / 40))))
    cs_metrics = json.loads(project.latest("data/08_reporting/cert_ssb/metrics.json").read_text())
    same = {k for k in cs_metrics if k.startswith(("cert_acc_", "abstain", "triggered_abstain"))}
    assert set(coh_metrics) >= same

    # MLflow: one nested run per method with the certified-accuracy metrics and the parameters
    client = MlflowClient()
    exp = client.get_experiment_by_name("certssb")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`certssb.method` = 'cert_ssb'")
    assert len(runs) == 1
    logged = json.loads((project.path / "data/08_reporting/mlflow_runs.json").read_text())
    assert logged["runs"]["cert_ssb"] == runs[0].info.run_id
    m = runs[0].data.metrics
    metrics = json.loads(project.latest("data/08_reporting/cert_ssb/metrics.json").read_text())
    for r in RADII:
        key = f"r{round(r * 100):03d}"
        assert m[f"cert_acc_{key}"] == pytest.approx(metrics[f"cert_acc_{key}"])
        assert metrics[f"cert_acc_published_{key}"] >= metrics[f"cert_acc_{key}"] - 1e-12
    # the default attack relabels: outside the certified threat model, no "certified against" fraction
    assert metrics["attack_in_threat_model"] is False and "fraction_certified_against_attack" not in metrics
    assert metrics["attack_label_changes"] > 0
    cert_keys = [k for k in metrics if k.startswith("cert_acc_r")]
    assert len(cert_keys) == len(RADII)
    for key in cert_keys:  # MLflow names carry no dot: cert_acc_r0.50 / cert_acc_r050 -> cert_acc_r050
        assert m[key.replace(".", "")] == pytest.approx(metrics[key])
    assert "clean_accuracy" in m and "abstain_rate" in m and "sigma_train_max" in m
    # outside the threat model: no reach metric in metrics.json nor in MLflow, the flag beside the numbers
    from certssb.core.summary import REACH_KEYS

    assert not set(REACH_KEYS) & (set(metrics) | set(m))
    assert runs[0].data.params["attack_in_threat_model"] == "False"
    assert runs[0].info.run_name == "mnist_embedded · badnets 2% · σ₀=0.25 · cert_ssb"
    params = runs[0].data.params  # the method's run carries its whole configuration
    assert (
        params["method"] == "cert_ssb"
        and params["sigma0"] == "0.25"
        and params["attack.poison_rate"] == "0.02"
    )
    assert params["sigma_opt.steps"] == "2" and params["cert_ssb.method"] == "cert_ssb"
    assert runs[0].data.tags["kedro_run_id"] and runs[0].data.tags["kedro_command"].startswith("kedro run")
    assert params["precision_resolved"] == "float32"
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])  # nested under the kedro-mlflow run
    assert parent.info.run_name == "evaluation · mnist_embedded · badnets 2% · σ₀=0.25"
    assert "object at 0x" not in parent.data.tags["runner"]
    assert all("." not in k for k in parent.data.metrics)
    assert parent.data.params["noise.sigma"] == "0.25" and parent.data.params["attack.name"] == "badnets"
    assert not any(k.startswith("parameters.") for k in parent.data.params)  # each parameter logged once


def test_evaluation_refuses_models_from_another_run(project):
    project.run(["data_engineering"])
    project.run(["modelling"])
    project.run(["data_engineering"], params={"seed": 3})  # new data, old models
    with pytest.raises(
        Exception,
        match=r"ensemble was made from another (noise_plan|poisoned_train|\S*sigma)"
        r"(?: than \S+)? \(fingerprints \w+ vs \w+\): "
        r"rerun `kedro run --pipelines=modelling`",
    ):
        project.run(["evaluation"])


def test_two_runs_compare_on_one_dataframe(project):
    """Two default runs with different poison rates: one ``mlflow.search_runs`` gives both methods' runs of
    both, with the poison rate (a param of each method's run) beside the certified accuracy."""
    import mlflow

    project.run(params={"attack": {"poison_rate": 0.02}})
    project.run(params={"attack": {"poison_rate": 0.05}})
    exp = MlflowClient().get_experiment_by_name("certssb")
    df = mlflow.search_runs([exp.experiment_id], filter_string="params.method != ''")
    got = sorted(zip(df["params.attack.poison_rate"], df["params.method"]))
    assert got == sorted([(r, m) for r in ("0.02", "0.05") for m in ("uniform", "cert_ssb", "cohen")])
    assert df["metrics.cert_acc_r025"].notna().all() and df["metrics.clean_accuracy"].notna().all()
    assert set(df["tags.mlflow.runName"]) >= {"mnist_embedded · badnets 5% · σ₀=0.25 · uniform"}
    assert str(project.path) in exp.artifact_location  # the artifacts stay in this project
