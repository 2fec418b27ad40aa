"""notebooks/explore_data.ipynb executes against a tiny project and shows its figures inline."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_data.ipynb"


def test_notebook_shows_figures(project, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    project.run(["data_engineering"])
    nb_dir = project.path / "notebooks"
    nb_dir.mkdir()
    shutil.copy(NOTEBOOK, nb_dir / NOTEBOOK.name)
    nb = nbformat.read(nb_dir / NOTEBOOK.name, as_version=4)
    # the kernel runs this interpreter (ipykernel's own spec) with this process's PYTHONPATH
    monkeypatch.setenv(
        "PYTHONPATH", os.environ.get("PYTHONPATH") or os.pathsep.join(p for p in sys.path if p)
    )
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(nb_dir)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the clean/triggered grid and the poisoned samples
    # no stray database next to the notebook (the fixture's conf/local/mlflow.yml gives an absolute URI;
    # with conf/base's relative one, certssb.tracking.uri.ResolveTrackingUriHook anchors it at the root)
    assert not (nb_dir / "mlflow.db").exists()
