"""Shared fixtures: a throw-away copy of the Kedro project in a temporary data root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from certssb.config import deep_update

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")


@pytest.fixture(autouse=True, scope="session")
def _mlflow_outside_the_project(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """No test writes into the project's mlflow.db or ./mlruns: a temporary tracking database and artifact
    root for every MLflow client the tests create (MLflow's default artifact root is ./mlruns of the working
    directory; ``_MLFLOW_SERVER_ARTIFACT_ROOT`` is what it reads instead)."""
    root = tmp_path_factory.mktemp("mlflow")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "_MLFLOW_SERVER_ARTIFACT_ROOT")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = str(root / "mlruns")
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# Tiny parameters: every pipeline end to end in seconds on 2 CPU cores.
TINY: dict[str, Any] = {
    "data": {"max_train": 300, "max_test": 100, "certify_size": 40},
    "noise": {"num_models": 4},
    "model": {"epochs": 1, "architecture": "small_cnn"},
    "pilot": {"epochs": 1},
    "sigma_opt": {"steps": 2, "draws": 2, "batch_size": 512},
    "ensemble": {"chunk_size": 2},
    "cohen": {"epochs": 1, "n0": 8, "num_draws": 40},
    # M - n0 = 3 models cannot certify r = 0.25 at alpha = 0.001: the pre-run check would stop the run
    "evaluation": {"n0": 1, "model_chunk": 2, "allow_tiny": True},
    "device": "cpu",
    # conf/base says auto (bf16 where the CPU has it): tests pin float32 so that they compute the same on
    # every machine; tests/pipelines/test_precision.py runs bf16 explicitly
    "precision": "float32",
}


class Project:
    """A copy of conf/ and pyproject.toml in ``path``; ``run`` runs pipelines through a KedroSession."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def run(
        self, pipelines: list[str] | None = None, params: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        import mlflow
        from kedro.framework.session import KedroSession
        from kedro.framework.startup import bootstrap_project

        bootstrap_project(self.path)
        runtime = deep_update(TINY, params or {})
        try:
            with KedroSession.create(project_path=self.path, runtime_params=runtime) as session:
                return session.run(pipeline_names=pipelines, **kwargs)
        finally:  # one `kedro run` is one process in real use: never leak an active MLflow run
            while mlflow.active_run() is not None:
                mlflow.end_run()

    def versions(self, relpath: str) -> list[str]:
        p = self.path / relpath
        return sorted(d.name for d in p.iterdir()) if p.exists() else []

    def latest(self, relpath: str) -> Path:
        name = Path(relpath).name
        return self.path / relpath / self.versions(relpath)[-1] / name


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    dest = tmp_path / "proj"
    dest.mkdir()
    shutil.copytree(ROOT / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir()
    (dest / "src").mkdir()  # bootstrap_project wants the source dir; the package is installed
    # an absolute tracking URI per project: MLflow caches its store per URI string, so the relative
    # sqlite:///mlflow.db of conf/base would keep pointing at the first test's database
    (dest / "conf" / "local" / "mlflow.yml").write_text(
        f"server:\n  mlflow_tracking_uri: sqlite:///{dest / 'mlflow.db'}\n  mlflow_registry_uri: null\n"
        "  credentials: null\n"
    )
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    for sub in (
        "01_raw",
        "02_intermediate",
        "03_primary",
        "05_model_input",
        "06_models",
        "07_model_output",
        "08_reporting",
    ):
        (dest / "data" / sub).mkdir(parents=True)
    monkeypatch.chdir(dest)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{dest / 'mlflow.db'}")
    yield Project(dest)
    while mlflow.active_run() is not None:
        mlflow.end_run()
