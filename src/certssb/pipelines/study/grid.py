"""The study grid: its cells (attack x sigma_0), their names and their parameters.

The grid is read when the pipelines are registered (``pipeline_registry``), so that every cell is its own
namespaced instance of the three pipelines -- catalogued, versioned, visible in ``kedro viz`` and logged by
the same hooks as a default run. Because of that the grid itself (``study.attacks``, ``study.sigmas``) comes
from the configuration files (``conf/base`` and ``conf/local``, or the environment in ``KEDRO_ENV``), not
from ``--params``; every other study parameter (``study.quick``, the certifier-attack rate, ...) may still be
overridden at run time, because a cell's parameters are computed when the run starts
(:class:`StudyCellParameters`).

A cell's parameters are the run's parameters, then ``study.quick_overrides`` if ``study.quick``, then the
cell's attack and sigma_0 (and, for a certifier attack, ``study.certifier_attack_rate`` and
``study.certifier_trigger``), then the cell's poison rate when the grid has a rate axis (``study.rates``) and
its seed when it has a seed axis (``study.seeds``). Pipelines read them as
``params:study_cell.<cell>.<block>``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from pydantic import BaseModel

from certssb.config import BLOCKS, block, deep_update, plain
from certssb.core import poisoning
from certssb.core.validation import ConfigError

CELL_PARAMS = "study_cell"
CERTIFIER_ATTACKS = poisoning.CERTIFIER_ATTACKS


@dataclass(frozen=True)
class Cell:
    """One (attack, sigma_0[, poison rate]) cell of the grid; ``name`` is its namespace below ``study``:
    ``<attack>_s<100 sigma>``, with ``_p<rate in basis points>`` when the grid has a rate axis
    (``abstain_s025_p0050`` is abstain at sigma_0 = 0.25 and 0.5 % poison)."""

    attack: str
    sigma: float
    rate: float | None = None
    seed: int | None = None

    @property
    def name(self) -> str:
        base = f"{self.attack}_s{round(self.sigma * 100):03d}"
        base = base if self.rate is None else f"{base}_p{round(self.rate * 10000):04d}"
        return base if self.seed is None else f"{base}_r{self.seed}"

    @property
    def panel(self) -> str:
        """The label of the cell's attack in figures: the attack, with its rate when the grid sweeps rates."""
        return self.attack if self.rate is None else f"{self.attack} @ {100 * self.rate:g} %"


def cells(study: dict[str, Any]) -> list[Cell]:
    """The cells of ``study.attacks`` x ``study.sigmas`` [x ``study.rates`` when given], attacks outermost."""
    attacks, sigmas, rates = study.get("attacks"), study.get("sigmas"), study.get("rates")
    if not isinstance(attacks, list) or not attacks or not all(isinstance(a, str) for a in attacks):
        raise ConfigError(
            f"parameter 'study.attacks' = {attacks!r} is invalid: a non-empty list of attack names"
        )
    if (
        not isinstance(sigmas, list)
        or not sigmas
        or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in sigmas)
    ):
        raise ConfigError(f"parameter 'study.sigmas' = {sigmas!r} is invalid: a non-empty list of sigmas > 0")
    if rates is not None and (
        not isinstance(rates, list)
        or not rates
        or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1 for r in rates)
    ):
        raise ConfigError(
            f"parameter 'study.rates' = {rates!r} is invalid: null or a non-empty list of poison "
            "rates in (0, 1]"
        )
    seeds = study.get("seeds")
    if seeds is not None and (
        not isinstance(seeds, list)
        or not seeds
        or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(
            f"parameter 'study.seeds' = {seeds!r} is invalid: null or a non-empty list of distinct "
            "integers >= 0"
        )
    out = [
        Cell(a, float(s), None if rates is None else float(r), seed)
        for a in attacks
        for s in sigmas
        for r in (rates if rates is not None else [None])
        for seed in (seeds if seeds is not None else [None])
    ]
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"parameter 'study.sigmas' = {sigmas!r} / 'study.rates' = {rates!r} is invalid: two "
            "values round to the same cell name (sigma x 100 and rate x 10,000 must differ)"
        )
    return out


def cell_poison_rate(study: dict[str, Any], cell: Cell) -> float | None:
    """The poison rate the grid sets for ``cell``: its rate-axis value, else ``study.certifier_attack_rate``
    for a certifier attack; ``None`` where the cell keeps ``attack.poison_rate``."""
    if cell.rate is not None:
        return cell.rate
    return float(study["certifier_attack_rate"]) if cell.attack in CERTIFIER_ATTACKS else None


def cell_parameters(parameters: dict[str, Any], cell: Cell) -> dict[str, Any]:
    """The whole parameter tree of one cell (see the module docstring)."""
    s = parameters["study"]
    p = (
        deep_update(parameters, s.get("quick_overrides") or {})
        if s.get("quick")
        else copy.deepcopy(parameters)
    )
    p["attack"]["name"] = cell.attack
    if cell.attack in CERTIFIER_ATTACKS:
        p["attack"]["trigger"] = s["certifier_trigger"]
    rate = cell_poison_rate(s, cell)
    if rate is not None:
        p["attack"]["poison_rate"] = rate
    p["noise"]["sigma"] = cell.sigma
    if cell.seed is not None:
        p["seed"] = cell.seed
    return p


def flat_params(prefix: str, tree: dict[str, Any]) -> dict[str, Any]:
    """``{"params:<prefix>.<path>": value}`` for every block and nested key, as Kedro feeds parameters."""
    out: dict[str, Any] = {f"params:{prefix}": tree}

    def walk(path: str, value: Any) -> None:
        out[f"params:{path}"] = value
        fields = dict(value) if isinstance(value, BaseModel) else value  # a typed block: its fields
        if isinstance(fields, dict):
            for k, v in fields.items():
                walk(f"{path}.{k}", v)

    for key, value in tree.items():
        walk(f"{prefix}.{key}", value)
    return out


def typed_blocks(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with each parameter block as its typed block (``certssb.config``), as Kedro's parameter
    validation gives the blocks to the nodes of a default run."""
    return {k: block(k, v) if k in BLOCKS and isinstance(v, dict) else v for k, v in tree.items()}


def configured_study(project_path: str | Path | None = None) -> dict[str, Any]:
    """The ``study`` block as the configuration files give it (base, then local or ``KEDRO_ENV``)."""
    from certssb.pipelines.registered import configured_parameters

    return dict(configured_parameters(project_path).get("study") or {})


class StudyCellParameters:
    """Kedro hook: before a run that contains study cells, feed each cell's parameters into the catalog as
    ``params:study_cell.<cell>.<path>`` (computed from the run's parameters, so ``--params study.quick=true``
    applies; each block typed, :func:`typed_blocks`), and validate every cell before the first node runs."""

    def __init__(self, validate: Any = None) -> None:
        self._validate = validate  # callable(params, pipelines) raising ConfigError; None: no check

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        prefix = f"params:{CELL_PARAMS}."
        wanted = {i[len(prefix) :].split(".", 1)[0] for i in pipeline.inputs() if i.startswith(prefix)}
        if not wanted:
            return
        parameters = plain(catalog.load("parameters"))  # Kedro's validation may have typed some blocks
        grid = {c.name: c for c in cells(parameters["study"])}
        missing = sorted(wanted - set(grid))
        if missing:
            raise ConfigError(
                f"parameter 'study.attacks'/'study.sigmas' give cells {sorted(grid)}, "
                f"but the registered study pipeline has cells {missing}: "
                "the grid is read from conf/ when pipelines are registered, "
                "so set it in a configuration environment rather than with --params"
            )
        for name in sorted(wanted):
            p = cell_parameters(parameters, grid[name])
            if (
                self._validate is not None
            ):  # the cell's own blocks; the grid (and its warnings) is checked once
                self._validate({k: v for k, v in p.items() if k != "study"}, {"study_cell"})
            for key, value in flat_params(f"{CELL_PARAMS}.{name}", typed_blocks(p)).items():
                catalog[key] = value
