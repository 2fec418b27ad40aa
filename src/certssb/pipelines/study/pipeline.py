"""study: one namespaced instance of data_engineering (poison -> noise), modelling and evaluation per cell of
the grid attack x sigma_0 (``study.<attack>_s<100 sigma>``), sharing ``raw_dataset``; then ``summarise`` joins
the cells into ``study_summary``, ``study_curves``, ``study_figure`` and ``study_rate_figure``.

Each cell reads its parameters as ``params:study_cell.<cell>.<block>`` (see :mod:`.grid`), so its artifacts,
MLflow runs and kedro-viz nodes are those of an ordinary run, under the cell's namespace.
"""

from __future__ import annotations

import functools
import warnings

from kedro.pipeline import Pipeline, node, pipeline

from certssb.pipelines import data_engineering, evaluation, modelling
from certssb.pipelines.registered import configured_methods

from .grid import CELL_PARAMS, Cell, cells, configured_study
from .nodes import summarise

PER_METHOD = ("metrics", "certified_accuracy", "certificates")


def cell_body(methods: tuple[str, ...] | None = None) -> Pipeline:
    """What one cell runs: everything of the default run but the download (shared by all cells)."""
    de = data_engineering.create_pipeline()
    return (
        (de - de.only_nodes("download"))
        + modelling.create_pipeline(methods)
        + evaluation.create_pipeline(methods)
    )


def cell_pipeline(cell: Cell, body: Pipeline | None = None) -> Pipeline:
    body = body or cell_body()
    params = {
        p: f"params:{CELL_PARAMS}.{cell.name}.{p[len('params:') :]}"
        for p in body.inputs()
        if p.startswith("params:")
    }
    return pipeline(body, namespace=f"study.{cell.name}", inputs={"raw_dataset"}, parameters=params)


def summary_inputs(grid: list[Cell], methods: tuple[str, ...]) -> list[str]:
    return [f"study.{c.name}.{m}.{what}" for c in grid for m in methods for what in PER_METHOD]


def create_pipeline(
    grid: list[Cell] | None = None, methods: tuple[str, ...] | None = None, **kwargs
) -> Pipeline:
    if grid is None:
        study = configured_study()
        if not study:
            return Pipeline([])
        grid = cells(study)
    methods = configured_methods() if methods is None else methods
    body = cell_body(methods)
    summary = functools.update_wrapper(functools.partial(summarise, grid=grid, methods=methods), summarise)
    with warnings.catch_warnings():  # the join reads the cells' namespaced names (with dots) on purpose
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        join = node(
            summary,
            ["params:study", *summary_inputs(grid, methods)],
            ["study_summary", "study_curves", "study_figure", "study_rate_figure"],
            name="summarise_study",
        )
    return sum((cell_pipeline(c, body) for c in grid), Pipeline([])) + Pipeline([join])
