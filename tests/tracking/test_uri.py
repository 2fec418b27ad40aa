"""A relative sqlite tracking URI is anchored at the project root, whatever the working directory."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from certssb.tracking.uri import ResolveTrackingUriHook, resolve


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///mlflow.db", "sqlite:///{root}/mlflow.db"),
        ("sqlite:///data/runs.db?timeout=5", "sqlite:///{root}/data/runs.db?timeout=5"),
        ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
        ("sqlite://", "sqlite://"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("databricks", "databricks"),
        (None, None),
    ],
)
def test_resolve(tmp_path, uri, expected):
    root = tmp_path.resolve().as_posix()
    assert resolve(tmp_path, uri) == (expected.format(root=root) if expected else None)


def test_hook_rewrites_the_mlflow_config(tmp_path, monkeypatch):
    class Loader(dict):
        config_patterns: dict = {}

        def __getitem__(self, key):
            return (
                super().__getitem__(key)
                if key in self
                else {"server": {"mlflow_tracking_uri": "sqlite:///mlflow.db"}}
            )

    loader = Loader()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # as in a notebook
    ResolveTrackingUriHook().after_context_created(
        SimpleNamespace(config_loader=loader, project_path=tmp_path)
    )
    uri = loader["mlflow"]["server"]["mlflow_tracking_uri"]
    assert Path(uri[len("sqlite:///") :]) == tmp_path.resolve() / "mlflow.db"
