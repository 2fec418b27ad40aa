"""Pipeline slices on an in-memory catalog (Kedro starter style): SequentialRunner and MemoryDatasets.

Cheaper than the KedroSession runs of tests/pipelines/*/test_pipeline.py (no hooks, no MLflow, no files):
``raw_dataset`` comes from calling ``download`` on a tiny subset, every ``params:<block>`` input of the slice
is a MemoryDataset holding conf/base's block with small overrides, and the assertions read the slice's free
outputs back from the catalog (the runner releases the intermediate ones).
"""

from __future__ import annotations

import copy
from statistics import NormalDist
from typing import Any

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner
from kedro.validation import ParameterValidator

from certssb.config import block
from certssb.pipelines.data_engineering import pipeline as data_engineering
from certssb.pipelines.data_engineering.nodes import download
from certssb.pipelines.evaluation import pipeline as evaluation
from certssb.pipelines.modelling import pipeline as modelling

N_TRAIN, N_TEST, CERTIFY, M = 200, 60, 40, 6
CERT_COLUMNS = {"r1", "sigma", "sigma_min", "radius", "radius_published", "abstained", "prediction"}


@pytest.fixture(scope="module")
def tiny(conf_parameters: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """conf/base's parameters, shrunk to seconds on 2 CPU cores."""
    p = copy.deepcopy(conf_parameters)
    p["data"].update(
        max_train=N_TRAIN, max_test=N_TEST, certify_size=CERTIFY, root=str(tmp_path_factory.mktemp("raw"))
    )
    p["noise"].update(num_models=M)
    p["model"].update(architecture="mlp", epochs=1)
    p["pilot"].update(epochs=1)
    p["ensemble"].update(chunk_size=3, checkpoint_dir=None)  # no checkpoints: no files, nothing resumed
    # M - n0 = 5 estimation votes: the one-sided Clopper-Pearson bound of 5/5 is alpha^(1/5), which is
    # 0.25 < 1/2 at conf/base's alpha = 0.001 (every sample abstains) but 0.63 at alpha = 0.1
    p["evaluation"].update(n0=1, model_chunk=3, alpha=0.1)
    p["device"] = "cpu"
    return p


@pytest.fixture(scope="module")
def raw(tiny: dict[str, Any]) -> dict[str, Any]:
    return download(block("data", tiny["data"]), tiny["seed"])


def _param(params: dict[str, Any], name: str) -> Any:
    """The value of ``params:a.b`` (a namespaced or nested parameter) in the parameter tree."""
    value = params
    for key in name.removeprefix("params:").split("."):
        value = value[key]
    return copy.deepcopy(value)


def catalog_for(pipe: Pipeline, params: dict[str, Any], **data: Any) -> DataCatalog:
    """A catalog of MemoryDatasets for every free input of ``pipe``: ``data`` and the ``params:`` ones,
    typed by Kedro's own parameter validation as a KedroSession types them (the blocks of certssb.config)."""
    free = pipe.inputs()
    missing = free - set(data) - {n for n in free if n.startswith("params:")}
    assert not missing, f"free inputs of the slice with no data: {sorted(missing)}"
    typed = ParameterValidator({"slice": pipe}).validate_raw_params(params)
    datasets = {name: MemoryDataset(_param(typed, name)) for name in free if name.startswith("params:")}
    datasets.update({name: MemoryDataset(value) for name, value in data.items()})
    return DataCatalog(datasets)


def run(pipe: Pipeline, catalog: DataCatalog) -> dict[str, Any]:
    """Run ``pipe`` and load its free outputs (what the runner leaves in the catalog)."""
    outputs = SequentialRunner().run(pipe, catalog)
    assert set(outputs) == pipe.outputs()
    return {name: catalog.load(name) for name in outputs}


# --- data_engineering without download ------------------------------------------------------------------


def test_data_engineering_minus_download(tiny, raw):
    de = data_engineering.create_pipeline()
    pipe = de - de.only_nodes("download")
    assert pipe.inputs() == {
        "raw_dataset",
        "params:data",
        "params:attack",
        "params:noise",
        "params:evaluation",
        "params:seed",
    }
    out = run(pipe, catalog_for(pipe, tiny, raw_dataset=raw))

    target = tiny["attack"]["target"]
    n_poisoned = round(tiny["attack"]["poison_rate"] * N_TRAIN)
    # poisoned_train and poison_summary feed other nodes of the slice: the runner released them
    assert "poison_summary" not in out and "poisoned_train" not in out
    assert len(out["poison_report"]) == n_poisoned
    assert out["poison_metrics"]["n_poisoned"] == {"value": float(n_poisoned), "step": 0}
    assert out["poison_metrics"]["in_threat_model"]["value"] == 0.0  # conf/base: dirty label
    clean, trig = out["clean_test"], out["triggered_test"]
    assert clean["y"].numel() == CERTIFY and (trig["y"] != target).all()
    assert trig["y"].numel() == int((clean["y"] != target).sum())
    plan = out["noise_plan"]
    assert plan["num_models"] == M and plan["n_train"] == N_TRAIN
    # lineage: the test sets come from this raw dataset; the plan was made for the poisoned set, not for it
    assert clean["raw_dataset"] == trig["raw_dataset"] == raw["fingerprint"]
    assert plan["poisoned_train"] != raw["fingerprint"]


# --- one method's slice: raw_dataset -> uniform.certificates ----------------------------------------------


def uniform_slice() -> Pipeline:
    full = data_engineering.create_pipeline() + modelling.create_pipeline() + evaluation.create_pipeline()
    return full.from_inputs("raw_dataset").to_outputs("uniform.certificates")


def test_the_uniform_slice_holds_only_what_uniform_needs():
    pipe = uniform_slice()
    assert {n.name for n in pipe.nodes} == {
        "poison",
        "noise",
        "train_pilot",  # the pilot is an input of optimise_sigma, even for uniform
        "uniform.optimise_sigma",
        "uniform.train_ensemble",
        "uniform.votes",
        "uniform.certify",
    }
    assert sorted(pipe.inputs()) == [
        "params:attack",
        "params:data",
        "params:device",
        "params:ensemble",
        "params:evaluation",
        "params:model",
        "params:noise",
        "params:pilot",
        "params:precision",
        "params:seed",
        "params:sigma_opt",
        "params:uniform.method",
        "raw_dataset",
    ]
    # the namespace alone leaves the shared artifacts free; cert_ssb's never come in
    ns = modelling.create_pipeline().only_nodes_with_namespaces(["uniform"])
    assert {n for n in ns.inputs() if not n.startswith("params:")} == modelling.SHARED_INPUTS
    assert not any("cert_ssb" in n for n in pipe.inputs() | pipe.outputs() | ns.inputs())


@pytest.fixture(scope="module")
def uniform_run(tiny, raw) -> dict[str, Any]:
    pipe = uniform_slice()
    return run(pipe, catalog_for(pipe, tiny, raw_dataset=raw))


@pytest.mark.slow
def test_uniform_certificates(uniform_run, tiny):
    cert = uniform_run["uniform.certificates"]
    sigma0, alpha = tiny["noise"]["sigma"], tiny["evaluation"]["alpha"]
    assert CERT_COLUMNS <= set(cert.columns)
    assert (cert["method"] == "uniform").all()
    n_trig = uniform_run["poison_summary"]["n_triggered_test"]
    assert cert["split"].value_counts().to_dict() == {"clean": CERTIFY, "triggered": n_trig}
    assert (cert["n_estimation"] == M - tiny["evaluation"]["n0"]).all()
    # uniform sigma: every sigma is sigma_0, the sound radius is the published one
    assert (cert["sigma"] == sigma0).all() and (cert["sigma_min"] == sigma0).all()
    assert (cert["radius"] == cert["radius_published"]).all()
    assert cert["radius"].to_numpy() == pytest.approx((cert["sigma_min"] * cert["r1"]).to_numpy(), abs=1e-12)
    # abstained rows: no prediction, no radius
    abstained = cert[cert["abstained"]]
    assert (abstained["prediction"] == -1).all()
    assert (abstained["r1"] == 0).all() and (abstained["radius"] == 0).all()
    assert not abstained["correct"].any()
    # a certified row needs all 5 estimation votes: R1 = Phi^-1(alpha^(1/5)), the largest R1 there is
    certified = cert[~cert["abstained"]]
    assert 0 < len(certified) < len(cert), "the tiny run should certify some rows and abstain on others"
    best = NormalDist().inv_cdf(alpha ** (1 / (M - tiny["evaluation"]["n0"])))
    assert certified["r1"].to_numpy() == pytest.approx(best, rel=1e-6)
    assert (certified["radius"] > 0).all() and (cert["r1"] <= best + 1e-9).all()


@pytest.mark.slow
def test_uniform_slice_side_outputs(uniform_run, tiny):
    log = uniform_run["uniform.training_log"]
    assert sorted(log["model"].unique()) == list(range(M))
    assert sorted(log["epoch"].unique()) == list(range(tiny["model"]["epochs"]))  # a row per model and epoch
    assert len(uniform_run["uniform.training_metrics"]["loss"]) == M
    history = uniform_run["uniform.sigma_history"]
    assert (history["sigma"] == tiny["noise"]["sigma"]).all()  # uniform: nothing optimised


@pytest.mark.slow
def test_uniform_slice_is_deterministic(uniform_run, tiny, raw):
    pipe = uniform_slice()
    again = run(pipe, catalog_for(pipe, tiny, raw_dataset=raw))
    pd.testing.assert_frame_equal(again["uniform.certificates"], uniform_run["uniform.certificates"])
    pd.testing.assert_frame_equal(again["poison_report"], uniform_run["poison_report"])
    # the same losses and accuracies, model by model (the wall-clock seconds differ)
    pd.testing.assert_frame_equal(
        again["uniform.training_log"].drop(columns="seconds"),
        uniform_run["uniform.training_log"].drop(columns="seconds"),
    )
    assert again["uniform.training_metrics"] == uniform_run["uniform.training_metrics"]
