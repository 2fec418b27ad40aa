"""A bare copy of the project (conf/, pyproject.toml, an empty src/) in a temporary folder, with its own
MLflow store, for tests that run Kedro's CLI on it."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_FOLDERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def copy_project(tmp_path: Path, *, data_folders: bool = False) -> Path:
    """``tmp_path/proj`` with the project's conf (not conf/local), a conf/local/mlflow.yml pointing MLflow at
    ``proj/mlflow.db``, and, with ``data_folders``, the empty data/ layers a fresh clone has."""
    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "conf", proj / "conf", ignore=shutil.ignore_patterns("local"))
    (proj / "conf" / "local").mkdir()
    (proj / "conf" / "local" / "mlflow.yml").write_text(
        f"server:\n  mlflow_tracking_uri: sqlite:///{proj / 'mlflow.db'}\n"
    )
    (proj / "src").mkdir()
    shutil.copy(ROOT / "pyproject.toml", proj / "pyproject.toml")
    for sub in DATA_FOLDERS if data_folders else ():
        (proj / "data" / sub).mkdir(parents=True)
    return proj
