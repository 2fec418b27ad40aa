"""Hooks, CLI and MLflow conventions: short config errors, run names, params once, filterable metrics,
table."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from certssb import config
from certssb.hooks import MlflowRunHook, ResultsTableHook, ValidateParametersHook
from certssb.reporting import console
from certssb.tracking import runs as tracking
from tests.project_copy import copy_project

ROOT = Path(__file__).resolve().parents[1]


def test_run_puts_env_in_kedro_env_while_it_runs_so_the_study_grid_reads_the_same_environment(monkeypatch):
    from click.testing import CliRunner
    from kedro.framework.cli.project import run as kedro_run

    from certssb.cli import RunCommand

    seen = []
    cmd = RunCommand(
        name="run",
        callback=lambda **kw: seen.append((kw["env"], os.environ.get("KEDRO_ENV"))),
        params=list(kedro_run.params),
    )
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    assert CliRunner().invoke(cmd, ["--env", "certifier_curves"]).exit_code == 0
    assert seen == [("certifier_curves", "certifier_curves")] and "KEDRO_ENV" not in os.environ
    monkeypatch.setenv("KEDRO_ENV", "local")
    CliRunner().invoke(cmd, ["--env", "paper_mnist"])
    assert seen[-1][1] == "paper_mnist" and os.environ["KEDRO_ENV"] == "local"  # restored afterwards


def test_kedro_run_prints_a_config_error_as_one_line_and_exits_2(tmp_path, monkeypatch):
    """`kedro run --params noise.num_modles=7` through Kedro's own CLI entry (which loads certssb.cli)."""
    from click.testing import CliRunner
    from kedro.framework.cli.cli import KedroCLI

    proj = copy_project(tmp_path)
    monkeypatch.chdir(proj)
    result = CliRunner().invoke(KedroCLI(proj), ["run", "--params", "noise.num_modles=7"])
    expected = "Error: parameter 'noise.num_modles' is not known: did you mean 'noise.num_models'?"
    assert result.exit_code == 2, result.output
    assert expected in result.output.splitlines()
    assert "Traceback" not in result.output
    assert not (proj / "data").exists()  # stopped before any node wrote anything
    import mlflow

    runs = mlflow.MlflowClient(f"sqlite:///{proj / 'mlflow.db'}").search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(f"sqlite:///{proj / 'mlflow.db'}").search_experiments()]
    )
    assert runs == []  # validation runs before kedro-mlflow opens a run


class _Catalog:
    def __init__(self, data: dict) -> None:
        self.data = data

    def load(self, name: str):
        return self.data[name]

    def exists(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str):
        return SimpleNamespace(_filepath=f"{os.getcwd()}/data/08_reporting/uniform/metrics.json")


class _Pipeline:
    def __init__(self, inputs=(), outputs=()) -> None:
        self._inputs, self._outputs = set(inputs), set(outputs)

    def inputs(self):
        return self._inputs

    def all_outputs(self):
        return self._outputs


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


def test_used_blocks_and_flattening():
    p = _Pipeline(inputs={"params:noise", "params:uniform.method", "clean_test"})
    assert tracking.used_blocks(p, {"x"}) == {"noise", "uniform"}
    assert tracking.used_blocks(_Pipeline(inputs={"parameters"}), {"data", "noise"}) == {"data", "noise"}
    flat = tracking.flatten_blocks(
        {
            "noise": {"sigma": 0.25},
            "ensemble": {"ray": {"address": None}},
            "evaluation": {"radii": [0, 0.5]},
            "data": {"x": 1},
        },
        {"noise", "ensemble", "evaluation"},
    )
    assert flat == {"noise.sigma": 0.25, "ensemble.ray.address": None, "evaluation.radii": [0, 0.5]}


def test_sigma_statistics():
    sigma = {
        "train": torch.tensor([0.2, 0.3, 0.4]),
        "clean": torch.tensor([0.25, 0.5]),
        "triggered": torch.tensor([0.1]),
    }
    s = tracking.sigma_stats(sigma)
    assert s["sigma_train_mean"] == pytest.approx(0.3)
    assert (s["sigma_train_min"], s["sigma_train_max"]) == pytest.approx((0.2, 0.4))
    assert (s["sigma_test_min"], s["sigma_test_max"]) == pytest.approx((0.1, 0.5))
    assert s["sigma_test_mean"] == pytest.approx(np.mean([0.25, 0.5, 0.1]))


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


@pytest.mark.parametrize(
    "artifact,pipeline",
    [
        ("clean_test", "data_engineering"),
        ("noise_plan", "data_engineering"),
        ("cert_ssb.sigma", "modelling"),
        ("cert_ssb.ensemble", "modelling"),
        ("cert_ssb.votes", "evaluation"),
        ("uniform.certificates", "evaluation"),
    ],
)
def test_a_lineage_error_is_told_how_to_rebuild_its_artifact(artifact, pipeline):
    """core names the artifact (``LineageError.artifact``); the hooks add the command that rebuilds it."""
    from certssb.config import METHODS
    from certssb.hooks.errors import rebuild_hint
    from certssb.pipelines import data_engineering, evaluation, modelling

    registry = {
        "data_engineering": data_engineering.create_pipeline(),
        "modelling": modelling.create_pipeline(METHODS),
        "evaluation": evaluation.create_pipeline(METHODS),
    }
    hint = rebuild_hint(artifact, registry)
    assert hint == f"rerun `kedro run --pipelines={pipeline}` (or pass matching --load-versions)"


def test_kedros_parameter_error_becomes_the_projects_one_line():
    """Should Kedro's own validation refuse a block first, the user still reads the project's one line."""
    from kedro.validation import ParameterValidationError

    from certssb.hooks.context import one_line

    raw = {"noise": {"sigma": -1, "num_models": 50, "num_draws": 1, "materialise": 0}}
    kedro_error = ParameterValidationError("Parameter validation failed:\n- Parameter 'noise': ...")
    err = one_line(kedro_error, raw)
    assert str(err).startswith("parameter 'noise.sigma' = -1 is invalid: must be a number in (0, inf)")
    assert "\n" not in str(err)
    assert str(one_line(kedro_error, {})) == "Parameter 'noise': ..."  # none of ours refuses: Kedro's
