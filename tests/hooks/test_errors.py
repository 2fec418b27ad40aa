"""certssb.hooks.errors: which pipeline writes an artifact, the inputs and ``--load-versions`` checked before
anything runs, a corrupt artifact named with how to rebuild it. Fake pipelines and catalogs; the same errors
through a real ``kedro run``: tests/test_cli.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kedro.io.core import DatasetError

from certssb.cli import UserError
from certssb.hooks import errors


class _Pipe:
    def __init__(self, outputs=(), inputs=(), size: int = 1) -> None:
        self._outputs, self._inputs, self.nodes = set(outputs), set(inputs), [None] * size

    def all_outputs(self):
        return self._outputs

    def inputs(self):
        return self._inputs


class _Catalog:
    def __init__(self, present=(), absent=(), folders=None) -> None:
        self.present, self.absent, self.folders = set(present), set(absent), folders or {}

    def __contains__(self, name):
        return name in self.present | self.absent

    def keys(self):
        return sorted(self.present | self.absent)

    def exists(self, name):
        return name in self.present

    def get(self, name):
        return SimpleNamespace(_filepath=self.folders.get(name, f"/nowhere/{name}"))


PIPELINES = {
    "__default__": _Pipe({"raw", "model", "metrics", "study_table"}, size=99),
    "study": _Pipe({"raw", "model", "study_table"}, size=50),
    "attack_strength": _Pipe({"raw", "strength"}, size=5),
    "audit": _Pipe({"audit_report", "strength"}, size=3),
    "evaluation": _Pipe({"metrics"}, inputs={"model"}),
    "modelling": _Pipe({"model"}, inputs={"raw"}),
    "data_engineering": _Pipe({"raw"}),
}


def test_the_producer_is_a_default_pipeline_first_then_the_smallest_other():
    assert errors.producer("raw", PIPELINES) == "data_engineering"  # also in study and attack_strength
    assert errors.producer("model", PIPELINES) == "modelling"
    assert errors.producer("strength", PIPELINES) == "audit"  # 3 nodes, not attack_strength's 5
    assert errors.producer("study_table", PIPELINES) == "study"  # __default__ is never named
    assert errors.producer("nobody_writes_it", PIPELINES) is None
    assert errors.producer("raw", object()) is None  # pipelines that cannot be listed


@pytest.fixture
def registered(monkeypatch):
    import kedro.framework.project

    monkeypatch.setattr(kedro.framework.project, "pipelines", PIPELINES)


def _before(catalog, pipeline, load_versions=None):
    errors.InputsExistHook().before_pipeline_run({"load_versions": load_versions or {}}, pipeline, catalog)


def test_a_missing_input_names_the_pipeline_that_writes_it(registered):
    pipeline = _Pipe(inputs={"model", "params:evaluation", "parameters", "not_in_catalog"})
    with pytest.raises(UserError) as err:
        _before(_Catalog(absent={"model"}), pipeline)
    assert str(err.value) == (
        "artifact 'model' does not exist yet: run `kedro run --pipelines=modelling` (or the default "
        "`kedro run`) first"
    )
    _before(_Catalog(present={"model"}), pipeline)  # present: the run goes on
    with pytest.raises(UserError, match="'orphan' does not exist yet: run the pipeline that writes it first"):
        _before(_Catalog(absent={"orphan"}), _Pipe(inputs={"orphan"}))


def test_load_versions_must_name_a_dataset_and_a_saved_version(registered, tmp_path):
    folder = tmp_path / "model.pt"
    for v in ("2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"):
        (folder / v).mkdir(parents=True)
    catalog = _Catalog(present={"raw"}, absent={"model"}, folders={"model": str(folder)})
    with pytest.raises(UserError, match="--load-versions names dataset 'modle', which is not in the catalog"):
        _before(catalog, _Pipe(), {"modle": "x"})
    with pytest.raises(UserError) as err:
        _before(catalog, _Pipe(), {"model": "2020-01-01T00.00.00.000Z"})
    assert str(err.value) == (
        "--load-versions model:2020-01-01T00.00.00.000Z: no such version of 'model'; "
        "versions: 2026-01-01T00.00.00.000Z, 2026-01-02T00.00.00.000Z"
    )
    empty = _Catalog(absent={"model"}, folders={"model": str(tmp_path / "none")})
    with pytest.raises(UserError, match="of 'model'; it has no saved version yet"):
        _before(empty, _Pipe(), {"model": "v"})


def test_a_corrupt_artifact_is_named_with_the_pipeline_that_rebuilds_it(registered):
    catalog = _Catalog(present={"model", "raw"})
    try:
        try:
            raise DatasetError("model: Failed while loading data from dataset TorchDataset(...)")
        except DatasetError as exc:
            raise RuntimeError("node failed") from exc
    except RuntimeError as chained:
        msg = errors._corrupt_artifact(chained, catalog)
    assert msg == (
        "artifact 'model' cannot be read (corrupt or incomplete file); rebuild it with "
        "`kedro run --pipelines=modelling` (`kedro run --verbose` shows why)"
    )
    by_path = DatasetError("Failed while loading data from /nowhere/raw: truncated")  # older message form
    assert "artifact 'raw' cannot be read" in errors._corrupt_artifact(by_path, catalog)
    assert errors._corrupt_artifact(RuntimeError("a bug"), catalog) is None  # not an artifact: no message
    assert errors._corrupt_artifact(DatasetError("model: failed while saving"), catalog) is None


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
