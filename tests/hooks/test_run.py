"""certssb.hooks.run: the validation hook names the parent run; MLflow params once, filterable metrics;
the results table after a run."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from certssb import config
from certssb.hooks import MlflowRunHook, ResultsTableHook, ValidateParametersHook
from certssb.reporting import console
from certssb.tracking import runs as tracking
from tests.doubles import FakePipeline as _Pipeline

ROOT = Path(__file__).resolve().parents[2]


class _Catalog:
    def __init__(self, data: dict) -> None:
        self.data = data

    def load(self, name: str):
        return self.data[name]

    def exists(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str):
        return SimpleNamespace(_filepath=f"{os.getcwd()}/data/08_reporting/uniform/metrics.json")


def _params() -> dict:
    return {
        "attack": {"name": "onepixel"},
        "noise": {"sigma": 0.25, "num_models": 50},
        "evaluation": {"radii": [0.0, 0.25, 0.5, 0.75, 1.0, 2.0]},
        "seed": 0,
    }


def test_the_validation_hook_names_the_parent_run(monkeypatch):
    import certssb.hooks.run as hooks

    monkeypatch.setattr(hooks, "_check_registered_methods", lambda params, path: None)
    run = SimpleNamespace(name=None)
    hook = ValidateParametersHook()
    hook.after_context_created(SimpleNamespace(mlflow=SimpleNamespace(tracking=SimpleNamespace(run=run))))
    noise = config.block("noise", {**_params()["noise"], "num_draws": 1, "materialise": 0})
    typed = {**_params(), "noise": noise}  # a block Kedro's validation typed for the nodes
    hook.before_pipeline_run({"pipeline_names": ["evaluation"]}, _Pipeline(), _Catalog({"parameters": typed}))
    assert run.name == "evaluation · onepixel · σ₀=0.25"
    run.name = "mine"  # a name from mlflow.yml is kept
    hook.before_pipeline_run({"pipeline_names": None}, _Pipeline(), _Catalog({"parameters": _params()}))
    assert run.name == "mine"


def test_mlflow_runs_params_once_filterable_metrics_and_runs_table(tmp_path, monkeypatch):
    """A parent run with the used blocks logged once; nested runs named <method> found by the README
    filter."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.set_experiment("certssb-test")
    params = _params()
    sigma = {
        "train": torch.full((5,), 0.25),
        "clean": torch.full((3,), 0.25),
        "triggered": torch.full((3,), 0.25),
    }
    try:
        with mlflow.start_run(run_name=tracking.run_name(["evaluation"], params)) as parent:
            hook = MlflowRunHook()
            hook.before_pipeline_run(
                {"pipeline_names": ["evaluation"]},
                _Pipeline(inputs={"params:noise", "params:attack"}),
                _Catalog({"parameters": params}),
            )
            hook.before_pipeline_run(
                {"pipeline_names": ["evaluation"]},  # twice: no error, no duplicate
                _Pipeline(inputs={"params:noise", "params:attack"}),
                _Catalog({"parameters": params}),
            )
            for method, acc in (("uniform", 0.0), ("cert_ssb", 0.6)):
                tracking.log_method_run(
                    method,
                    {
                        "method": method,
                        "cert_acc_r0.50": acc,
                        "cert_acc_r025": 0.7,
                        "degenerate_members": [1],
                        "attack_in_threat_model": True,
                    },
                    pd.DataFrame({"radius": [0.5]}),
                    sigma,
                    sigma0=0.25,
                )
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    client = mlflow.MlflowClient(uri)
    got = client.get_run(parent.info.run_id)
    assert got.info.run_name == "evaluation · onepixel · σ₀=0.25"
    assert set(got.data.params) == {"noise.sigma", "noise.num_models", "attack.name"}  # used blocks, once
    hits = client.search_runs([exp.experiment_id], filter_string="metrics.cert_acc_r050 > 0")
    assert [r.info.run_name for r in hits] == ["cert_ssb"]
    nested = hits[0]
    assert nested.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert nested.data.params == {"method": "cert_ssb", "sigma0": "0.25", "attack_in_threat_model": "True"}
    assert nested.data.tags["certssb.attack_in_threat_model"] == "True"
    assert nested.data.metrics["sigma_train_max"] == pytest.approx(0.25)
    assert all("." not in k for k in nested.data.metrics)
    assert (
        client.get_experiment(exp.experiment_id).tags[tracking.EXPERIMENT_KIND_TAG]
        == tracking.RUNS_TABLE_KIND
    )


def test_results_table_after_an_evaluation_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    metrics = {
        "uniform": {
            "clean_accuracy": 0.91,
            "attack_success_rate": 0.02,
            "cert_acc_r025": 0.8,
            "cert_acc_r050": 0.6,
            "cert_acc_r100": 0.1,
            "abstain_rate": 0.05,
        },
        "cert_ssb": {
            "clean_accuracy": 0.93,
            "attack_success_rate": 0.01,
            "cert_acc_r025": 0.7,
            "cert_acc_r050": 0.5,
            "cert_acc_r100": 0.0,
            "cert_acc_published_r050": 0.65,
            "abstain_rate": 0.04,
        },
    }
    catalog = _Catalog(
        {
            "parameters": _params(),
            "undefended_metrics": {"attack_success_rate": 0.97},
            **{f"{m}.metrics": v for m, v in metrics.items()},
        }
    )
    mlflow_hook = SimpleNamespace(run_id="abc123", run_name="__default__ · onepixel · σ₀=0.25")
    hook = ResultsTableHook(mlflow_hook)  # type: ignore[arg-type]
    hook.after_pipeline_run({}, _Pipeline(outputs={"uniform.metrics", "cert_ssb.metrics"}), catalog)
    out = capsys.readouterr().out
    assert console.pick_radii(_params()["evaluation"]["radii"]) == [0.25, 0.5, 1.0]
    for text in (
        "uniform σ",
        "Cert-SSB",
        "0.910",
        "0.970",
        "0.600",
        "(pub. 0.650)",
        "0.040",
        "cert acc r=0.5",
        "abc123",
        "data/08_reporting",
    ):
        assert text in out, (text, out)
    # nothing when the evaluation did not run
    hook.after_pipeline_run({}, _Pipeline(outputs={"poisoned_train"}), catalog)
    assert capsys.readouterr().out == ""
