"""``kedro run --params precision=bfloat16`` end to end on the tiny parameters, the precision recorded in
every artifact of the run and in MLflow, and runs at two precisions never mixed (one lineage line)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from certssb.config import METHODS
from certssb.core.validation import ConfigError

pytestmark = pytest.mark.slow


def test_a_bf16_run_end_to_end_records_its_precision_and_fp32_parameters_are_refused(project):
    project.run(params={"precision": "bfloat16"})  # the default run: data, modelling, evaluation
    for name in ("pilot_model", "undefended_model"):
        art = torch.load(project.latest(f"data/06_models/{name}.pt"), weights_only=True)
        assert art["train_config"]["precision"] == "bfloat16"
    for method in METHODS:
        ens = torch.load(project.latest(f"data/06_models/{method}/ensemble.pt"), weights_only=True)
        assert ens["train_config"]["precision"] == "bfloat16"
        assert all(t.dtype == torch.float32 for t in ens["params"].values())  # weights stay float32
        votes = torch.load(project.latest(f"data/07_model_output/{method}/votes.pt"), weights_only=True)
        assert votes["precision"] == "bfloat16" and votes["ensemble"] == ens["fingerprint"]
        certs = pd.read_csv(project.latest(f"data/07_model_output/{method}/certificates.csv"))
        assert set(certs["precision"]) == {"bfloat16"} and len(certs) > 0
        metrics = json.loads(project.latest(f"data/08_reporting/{method}/metrics.json").read_text())
        assert metrics["precision"] == "bfloat16" and 0 <= metrics["clean_accuracy"] <= 1
    client = MlflowClient()
    exp = client.get_experiment_by_name("certssb")
    run = client.search_runs([exp.experiment_id], filter_string="tags.`certssb.method` = 'cohen'")[0]
    assert run.data.params["precision_resolved"] == "bfloat16"

    # the same models with float32 parameters: refused before any vote is cast
    with pytest.raises(
        ConfigError,
        match=r"^\w+\.ensemble was made from another parameter precision "
        r"\(fingerprints bfloat16 vs float32\): rerun "
        r"`kedro run --pipelines=modelling`",
    ) as err:
        project.run(["evaluation"], params={"precision": "float32"})
    assert "\n" not in str(err.value)
    # and a float32 training run gets checkpoints of its own (another fingerprint), never the bf16 chunks
    bf16 = torch.load(project.latest("data/06_models/uniform/ensemble.pt"), weights_only=True)["fingerprint"]
    project.run(["modelling"], params={"precision": "float32"}, node_names=["uniform.train_ensemble"])
    fp32 = torch.load(project.latest("data/06_models/uniform/ensemble.pt"), weights_only=True)
    assert fp32["train_config"]["precision"] == "float32" and fp32["fingerprint"] != bf16
