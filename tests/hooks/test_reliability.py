"""The reliability hooks (certssb.hooks): one run per folder, this run's load versions, MLflow runs left
RUNNING by dead runs, the thread policy. docs/reliability.md."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from kedro.io import DataCatalog
from kedro.io.core import Version
from kedro.pipeline import Pipeline, node

from certssb.execution.lock import RunLock
from certssb.hooks import PinLoadVersionsHook
from certssb.io.torch_dataset import TorchDataset
from tests.project_copy import copy_project

ROOT = Path(__file__).resolve().parents[2]


def _hold_lock(path: Path, describe: str = "kedro run --pipelines=study") -> subprocess.Popen:
    """Another process holding the folder's lock (as a running `kedro run` does) until it is killed."""
    code = (
        f"import time; from certssb.execution.lock import RunLock; "
        f"RunLock({str(path)!r}, describe={describe!r}).acquire(); print('held', flush=True); "
        "time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_kedro_run_in_the_folder_exits_2_in_one_line_naming_the_first(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from kedro.framework.cli.cli import KedroCLI

    proj = copy_project(tmp_path)
    monkeypatch.chdir(proj)
    holder = _hold_lock(proj / "data" / RunLock.NAME)
    try:
        result = CliRunner().invoke(KedroCLI(proj), ["run", "--pipelines=data_engineering"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert errors[0].startswith("Error: another kedro run is running in this project folder (pid ")
    assert "kedro run --pipelines=study" in errors[0]
    assert [p.name for p in (proj / "data").iterdir()] == [RunLock.NAME]  # nothing else written


def test_nodes_load_the_version_this_run_saved(tmp_path):
    """Another run saving a newer version in between does not change what this run's next node loads."""
    ds = TorchDataset(filepath=str(tmp_path / "a.pt"), version=Version(None, "2026-01-01T00.00.00.000Z"))
    catalog = DataCatalog({"a": ds})
    pipe = Pipeline([node(lambda: 1, None, "a", name="make")])
    PinLoadVersionsHook().before_pipeline_run({}, pipe, catalog)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Kedro's "Save version ... did not match load version" would raise
        catalog.save("a", {"run": "this"})
    TorchDataset(filepath=str(tmp_path / "a.pt"), version=Version(None, "2026-01-01T00.00.09.000Z")).save(
        {"run": "other"}
    )  # a concurrent run, newer
    ds._release()  # the runner releases datasets between nodes (clears Kedro's version cache)
    assert catalog.load("a") == {"run": "this"}


def test_an_explicit_load_version_is_kept(tmp_path):
    ds = TorchDataset(
        filepath=str(tmp_path / "a.pt"),
        version=Version("2025-01-01T00.00.00.000Z", "2026-01-01T00.00.00.000Z"),
    )
    PinLoadVersionsHook().before_pipeline_run(
        {}, Pipeline([node(lambda: 1, None, "a", name="m")]), DataCatalog({"a": ds})
    )
    assert ds._version.load == "2025-01-01T00.00.00.000Z"


@pytest.mark.slow
def test_a_run_marks_runs_left_running_killed_and_records_its_threads(project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("certssb") or client.get_experiment(
        client.create_experiment("certssb")
    )
    dead = client.create_run(exp.experiment_id, run_name="killed earlier")  # status RUNNING, process gone
    before = torch.get_num_threads()
    try:
        project.run(["data_engineering", "modelling"], params={"num_threads": 1})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert client.get_run(dead.info.run_id).info.status == "KILLED"
    statuses = [r.info.status for r in client.search_runs([exp.experiment_id])]
    assert "RUNNING" not in statuses
    ens = torch.load(project.latest("data/06_models/uniform/ensemble.pt"), weights_only=True)
    assert ens["train_config"]["num_threads"] == 1 and len(ens["train_config"]["training_code"]) == 12
    assert not (project.path / "data" / RunLock.NAME).read_text()  # released: the next run goes
