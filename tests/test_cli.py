"""Every mistake a user makes with ``kedro run`` is one line (issue 21): exit status 2, at most 3 lines on
stderr naming the fix, no MLflow run and no new folder. Each case runs ``kedro run`` as a subprocess in a
temporary copy of the project (its own MLflow database and artifact root). Also: certssb.cli's RunCommand
(``--env`` reaches ``KEDRO_ENV``) and a config error through Kedro's own CLI entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.project_copy import copy_project

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))


def _project(tmp_path: Path) -> Path:
    return copy_project(tmp_path, data_folders=True)


def _folders(proj: Path) -> set[str]:
    """Every folder of the project but kedro-viz's own run log (``.viz``, git-ignored: it records failed
    runs on purpose)."""
    return {
        str(p.relative_to(proj))
        for p in proj.rglob("*")
        if p.is_dir() and "__pycache__" not in p.parts and ".viz" not in p.relative_to(proj).parts
    }


def _runs(proj: Path) -> list:
    db = proj / "mlflow.db"
    if not db.exists():
        return []
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(ids, run_view_type=ViewType.ALL) if ids else []


def _kedro_run(proj: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("CERTSSB_TRACEBACK", "MLFLOW_TRACKING_URI")}
    full.update({"KEDRO_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run(
        [KEDRO, "run", *args], cwd=proj, env=full, capture_output=True, text=True, timeout=300
    )


def _assert_one_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    err = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(err) <= 3, result.stderr[-3000:]
    text = "\n".join(err)
    assert "Traceback" not in result.stderr and "Error:" in text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def _check(proj: Path, before: set[str], result: subprocess.CompletedProcess, *needles: str) -> str:
    text = _assert_one_line(result, *needles)
    assert _folders(proj) == before, sorted(_folders(proj) ^ before)
    assert _runs(proj) == []
    return text


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    return _project(tmp_path)


def test_unknown_environment_lists_the_environments(proj):
    before = _folders(proj)
    _check(
        proj,
        before,
        _kedro_run(proj, "--env=doesnotexist"),
        "doesnotexist",
        "does not exist",
        "paper_mnist",
        "certifier_curves",
    )


def test_unknown_pipeline_lists_the_pipelines(proj):
    before = _folders(proj)
    text = _check(proj, before, _kedro_run(proj, "--pipelines=nonexistent"), "'nonexistent' does not exist")
    for name in ("data_engineering", "modelling", "evaluation", "study", "audit", "attack_strength"):
        assert name in text


def test_evaluation_on_a_fresh_clone_names_the_pipeline_to_run_first(proj):
    before = _folders(proj)
    _check(
        proj,
        before,
        _kedro_run(proj, "--pipelines=evaluation"),
        "does not exist yet",
        "--pipelines=modelling",
    )


def test_offline_download_is_reported_once(proj):
    before = _folders(proj)
    offline = {
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = _kedro_run(proj, "--pipelines=data_engineering", "--params=data.dataset=cifar10", env=offline)
    text = _check(proj, before, result, "cifar10", "md5", "https://")
    assert text.count("md5") == 1  # once, not twice


def _fake_inputs(proj: Path, pipeline_name: str, content: bytes) -> list[str]:
    """A version folder with ``content`` for every dataset ``pipeline_name`` reads and does not write."""
    import yaml
    from kedro.io import DataCatalog

    from certssb.pipeline_registry import register_pipelines

    pipe = register_pipelines()[pipeline_name]
    cat = DataCatalog.from_config(yaml.safe_load((ROOT / "conf" / "base" / "catalog.yml").read_text()))
    names = sorted(n for n in pipe.inputs() if not n.startswith("params:") and n != "parameters")
    for name in names:
        path = Path(str(cat.get(name)._filepath))
        rel = path.relative_to(Path.cwd()) if path.is_absolute() else path
        target = proj / rel / "2026-01-01T00.00.00.000Z" / path.name
        target.parent.mkdir(parents=True)
        target.write_bytes(content)
    return names


def test_corrupt_artifact_is_named_with_how_to_rebuild_it(proj):
    names = _fake_inputs(proj, "modelling", b"not a torch file")
    before = _folders(proj)
    text = _check(
        proj,
        before,
        _kedro_run(proj, "--pipelines=modelling"),
        "cannot be read",
        "--pipelines=data_engineering",
    )
    assert any(f"'{n}'" in text for n in names)


def test_load_versions_naming_a_missing_version(proj):
    _fake_inputs(proj, "modelling", b"x")
    before = _folders(proj)
    _check(
        proj,
        before,
        _kedro_run(proj, "--pipelines=modelling", "--load-versions=poisoned_train:2020-01-01T00.00.00.000Z"),
        "no such version",
        "2026-01-01T00.00.00.000Z",
    )


def test_verbose_keeps_the_traceback(proj):
    result = _kedro_run(proj, "--pipelines=evaluation", env={"CERTSSB_TRACEBACK": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr + result.stdout


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
