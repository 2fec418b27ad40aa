"""The study cells' parameters are configuration: the project's config loader generates
``study_cell.<cell>.<block>`` from the merged parameters (runtime ``--params`` included), so Kedro's catalog,
kedro-viz and the parameter checks see them; a bad cell value stops the run with one line before any node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from certssb.config import validate
from certssb.pipelines.study import grid as study_grid
from certssb.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS
from tests.project_copy import copy_project

ROOT = Path(__file__).resolve().parents[3]
KEDRO = str(Path(sys.executable).with_name("kedro"))
ENVS = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name not in ("base", "local"))


def _parameters(env: str = "base", runtime: dict | None = None) -> dict:
    """The parameters as a session loads them (the project's loader and merge rules; no conf/local)."""
    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = CONFIG_LOADER_CLASS(str(ROOT / "conf"), env=env, runtime_params=runtime, **args)
    return loader["parameters"]


def test_the_config_holds_every_cell_with_quick_overrides_from_runtime_params():
    assert issubclass(CONFIG_LOADER_CLASS, study_grid.StudyConfigLoader)
    slow, quick = _parameters(), _parameters(runtime={"study": {"quick": True}})
    study = slow["study"]
    assert list(slow["study_cell"]) == [c.name for c in study_grid.cells(study)]
    assert "abstain_s050" in slow["study_cell"] and "study_cell" not in slow["study_cell"]["abstain_s050"]
    over = study["quick_overrides"]
    assert over["noise"]["num_models"] != slow["noise"]["num_models"]  # else the check below proves nothing
    for p, m, epochs in (
        (slow, slow["noise"]["num_models"], slow["model"]["epochs"]),
        (quick, over["noise"]["num_models"], over["model"]["epochs"]),
    ):
        cell = p["study_cell"]["abstain_s050"]
        assert cell["noise"] == {**p["noise"], "sigma": 0.5, "num_models": m}
        assert cell["model"]["epochs"] == epochs
        assert cell["attack"] == {
            **p["attack"],
            "name": "abstain",
            "poison_rate": study["certifier_attack_rate"],
            "trigger": study["certifier_trigger"],
        }
        # the blocks of a default run (plain dicts, as Kedro's parameter validation wants them), not the grid
        assert {"data", "noise", "model", "evaluation", "seed"} <= set(cell) and "study" not in cell
        assert p["noise"]["sigma"] == 0.25  # the run's own blocks are untouched
    # a cell without a rate axis keeps the attack's own poison rate
    assert slow["study_cell"]["badnets_s025"]["attack"]["poison_rate"] == slow["attack"]["poison_rate"]


def test_no_study_block_no_cells_and_a_bad_grid_is_left_to_the_registration():
    params = _parameters()
    assert "study_cell" not in study_grid.with_cells({k: v for k, v in params.items() if k != "study"})
    bad = {**params, "study": {**params["study"], "sigmas": [0.25, 0.251]}}  # one cell name twice
    assert "study_cell" not in study_grid.with_cells(bad)
    with pytest.raises(Exception, match=r"study\.sigmas"):
        study_grid.cell_tree(bad)


@pytest.mark.parametrize("env", ["base", *ENVS])
def test_every_environments_cells_are_valid(env):
    cells = _parameters(env).get("study_cell") or {}
    for name, blocks in cells.items():
        validate(blocks, {"study_cell"})
    if env in ("base", "certifier_curves"):
        assert cells  # the environments with a grid have cells


@pytest.mark.slow
def test_a_session_catalogues_every_cell_parameter_the_study_reads(project):
    (project.path / "conf" / "local" / "parameters_study.yml").write_text(
        "study:\n  attacks: [onepixel, abstain]\n  sigmas: [0.25, 0.5]\n"
    )
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project.path)
    with KedroSession.create(project_path=project.path, runtime_params={"study": {"quick": True}}) as s:
        catalog = s.load_context().catalog
        wanted = {i for i in pipelines["study"].inputs() if i.startswith("params:")}
        assert {i for i in wanted if i.startswith("params:study_cell.")}
        assert not {i for i in wanted if i not in catalog}  # kedro-viz: "Cannot find parameter" otherwise
        quick = catalog.load("params:study").quick_overrides  # the blocks are typed by Kedro's validation
        noise = catalog.load("params:study_cell.abstain_s050.noise")
        assert noise.num_models == quick["noise"]["num_models"] and noise.sigma == 0.5
    # the grid of the run is the grid the pipelines were registered with (from conf/, not runtime params)
    with pytest.raises(Exception, match=r"registered study pipeline has cells \['abstain_s025'"):
        project.run(["study"], params={"study": {"sigmas": [0.3, 0.5]}})
    assert project.versions("data/02_intermediate/raw_dataset.pt") == []


@pytest.mark.slow
def test_a_bad_cell_value_stops_the_run_with_one_line(tmp_path):
    """sigma_opt.max_decrease = 0.2 is fine for the run's sigma_0 = 0.25 but not for the grid's 0.12 cells."""
    proj = copy_project(tmp_path, data_folders=True)
    before = sorted(p for p in proj.rglob("*") if p.is_dir())
    env = {k: v for k, v in os.environ.items() if k not in ("CERTSSB_TRACEBACK", "MLFLOW_TRACKING_URI")}
    env.update(KEDRO_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [KEDRO, "run", "--pipelines=study", "--params=sigma_opt.max_decrease=0.2"],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(err) <= 3 and "Traceback" not in result.stderr, result.stderr
    text = "\n".join(err)
    assert "Error: parameter 'sigma_opt.max_decrease' = 0.2 is invalid" in text
    assert "noise.sigma = 0.12" in text and "in study cell 'abstain_s012'" in text
    assert sorted(p for p in proj.rglob("*") if p.is_dir() and ".viz" not in p.parts) == before
    if (proj / "mlflow.db").exists():  # no MLflow run left by the mistake
        import mlflow
        from mlflow.entities import ViewType

        client = mlflow.MlflowClient(f"sqlite:///{proj / 'mlflow.db'}")
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
        assert not (client.search_runs(ids, run_view_type=ViewType.ALL) if ids else [])
