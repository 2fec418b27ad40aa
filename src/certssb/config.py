"""Typed parameter blocks: the one place that checks ``conf/base/parameters*.yml`` (and ``--params``).

Each block is a pydantic model; the nodes' arguments are annotated with them, so Kedro's own parameter
validation (``kedro.validation.ParameterValidator``, when it builds the catalog) hands every node its typed
block. Just before that, :func:`validate` runs once on the raw parameters
(``certssb.hooks.context.ProjectContext``): unknown keys with a suggestion, the rules that span blocks, and
ONE :class:`~certssb.core.validation.ConfigError` in the project's form, so a bad parameter stops ``kedro
run`` before anything of that run is written. Every message is built by ``certssb.core.validation``::

    parameter 'noise.sigma' = -1 is invalid: must be a number in (0, inf)
    parameter 'noise.num_modles' is not known: did you mean 'noise.num_models'?

The allowed values are the tuples of ``certssb.core`` (``certify.BOUNDS``, ``models.ARCHITECTURES``, ...),
never copies. Each block is a pydantic model with ``extra="forbid"``; a field's check runs *before*
pydantic's type coercion (a ``BeforeValidator`` calling ``core.validation``), so the wording is the core's
and a string never silently becomes a number. Checks that span blocks (``n0 < M``, Clopper-Pearson needs
hard votes and one draw per model, ``sigma_0 - max_decrease > 0``, the attack target against the number
of classes, the bound's radius ceiling against the radius grid) run after the blocks, in :func:`validate`.

Only the blocks the selected pipelines use are validated here (:data:`PIPELINE_BLOCKS`; Kedro then builds
the blocks of every pipeline it validates for, all of them for the default run); unknown keys are
refused in every block, whatever the pipeline, because a typo silently ignored is the costlier error.

Length: longer than ~350 lines on purpose: it is one schema (fourteen small block classes, their checks and
the cross-block rules), read in one place; split it, and the allowed values and the rules drift apart again.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import logging
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from certssb.core import audit, poisoning, storage, triggers
from certssb.core import certify as _certify
from certssb.core import ensemble as _ensemble
from certssb.core import models as _models
from certssb.core import precision as _precision
from certssb.core import sigma as _sigma
from certssb.core.validation import ConfigError, choice, fail, number, positive, sorted_radii
from certssb.io import prepare as _prepare

log = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])

# -------------------------------------------------------------------------------------------- allowed values
#: The certifiers, in table order: the ONE list (pipelines, study, audit, hooks read it); ``methods:`` picks.
METHODS: tuple[str, ...] = ("uniform", "cert_ssb", "cohen")
#: Certifiers of a fixed model against test-time input perturbations (not poisoning): no audit, no storage
#: update.
EVASION_METHODS: tuple[str, ...] = ("cohen",)
#: Certifiers whose sigma is optimised per sample on a pilot model (runs carry ``pilot``, ``sigma_opt``).
SIGMA_METHODS: tuple[str, ...] = ("cert_ssb",)
EVALUATION_BACKENDS: tuple[str, ...] = ("local", "ray")


ATTACKS: tuple[str, ...] = tuple(poisoning.ATTACKS)
CERTIFIER_ATTACKS: tuple[str, ...] = tuple(poisoning.CERTIFIER_ATTACKS)
TRIGGERS: tuple[str, ...] = tuple(triggers.TRIGGERS)
LABEL_MODES: tuple[str, ...] = tuple(poisoning.LABEL_MODES)
CERTIFIER_LABELS: tuple[str, ...] = tuple(
    dict.fromkeys(v for vs in poisoning.CERTIFIER_LABELS.values() for v in vs)
)
STORAGE_RULES: tuple[str, ...] = tuple(storage.RULES)
AUDIT_STRATEGIES: tuple[str, ...] = tuple(audit.STRATEGIES)
AUDIT_COLUMNS: tuple[str, ...] = tuple(audit.COLUMNS)


def _ray_backend() -> Any:
    from certssb.execution import ray_options

    return ray_options


# ------------------------------------------------------------------------------------------- field checks
_NAME = "\x00"  # placeholder for the parameter's dotted path, filled in from pydantic's error location


def _check(fn: Callable[..., Any], *args: Any, optional: bool = False, **kwargs: Any) -> BeforeValidator:
    """A before-validator calling ``fn(name, value, *args, **kwargs)`` of ``core.validation``."""

    def run(value: Any) -> Any:
        if optional and value is None:
            return None
        fn(_NAME, value, *args, **kwargs)
        return value

    return BeforeValidator(run)


def _each(
    fn: Callable[..., Any], *args: Any, nonempty: bool = True, optional: bool = False, **kwargs: Any
) -> BeforeValidator:
    """A list whose every element passes ``fn`` (``optional``: or None)."""

    def run(value: Any) -> Any:
        if optional and value is None:
            return None
        if not isinstance(value, (list, tuple)) or (nonempty and not value):
            fail(_NAME, value, "must be a non-empty list")
        for v in value:
            fn(_NAME + "[]", v, *args, **kwargs)
        return list(value)

    return BeforeValidator(run)


def _flag(name: str, value: Any) -> Any:
    return choice(name, value, (True, False))


def _text(name: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        fail(name, value, "must be a non-empty string")
    return value


Int0 = Annotated[int, _check(number, low=0, integer=True)]
IntPos = Annotated[int, _check(positive, integer=True)]
IntPosOpt = Annotated[int | None, _check(positive, integer=True, optional=True)]
Pos = Annotated[float, _check(positive)]
NonNeg = Annotated[float, _check(number, low=0)]
Unit = Annotated[float, _check(number, low=0, high=1)]
OpenUnit = Annotated[float, _check(number, low=0, high=1, low_open=True, high_open=True)]
Flag = Annotated[bool, _check(_flag)]
Text = Annotated[str, _check(_text)]


def _one_of(allowed: tuple[Any, ...]) -> BeforeValidator:
    return _check(choice, allowed)


class Block(BaseModel):
    """A parameter block: unknown keys refused, values checked before coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------------------ blocks
class DataBlock(Block):
    dataset: Annotated[str, _one_of(_prepare.DATASETS)]
    root: Text
    local_path: str | None = None
    download: Flag
    classes: Annotated[list[int] | None, BeforeValidator(lambda v: _classes(v))] = None
    test_fraction: OpenUnit
    max_train: IntPosOpt = None
    max_test: IntPosOpt = None
    certify_size: IntPosOpt = None


def _classes(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) < 2 or len(set(value)) != len(value):
        fail(_NAME, value, "must be null or a list of at least 2 distinct class indices, e.g. [1, 0]")
    for c in value:
        number(_NAME + "[]", c, low=0, integer=True)
    return list(value)


class AttackBlock(Block):
    name: Annotated[str, _one_of(ATTACKS)]
    trigger: Annotated[str, _one_of(TRIGGERS)]
    poison_rate: Unit
    target: Int0
    delta: NonNeg
    label_mode: Annotated[str, _one_of(LABEL_MODES)] = "dirty"
    certifier_labels: Annotated[str, _one_of(CERTIFIER_LABELS)] = "split"
    pattern_seed: Int0
    badnets_size: IntPos
    blend_alpha: Unit
    collapse_share: Annotated[
        float | None, _check(number, low=0, high=0.5, low_open=True, high_open=True, optional=True)
    ] = None
    key_size: IntPos = poisoning.KEY_DEFAULTS["key_size"]
    key_amplitude: Annotated[float, _check(number, low=0, high=0.5, low_open=True)] = poisoning.KEY_DEFAULTS[
        "key_amplitude"
    ]


class NoiseBlock(Block):
    sigma: Pos
    num_models: IntPos
    num_draws: IntPos
    materialise: Int0


class ModelBlock(Block):
    architecture: Annotated[str, _one_of(_models.ARCHITECTURES)]
    epochs: IntPos
    batch_size: IntPos
    lr: Pos
    weight_decay: NonNeg = 0.0


class PilotBlock(Block):
    epochs: IntPos


def _psi_clamp(name: str, value: Any) -> Any:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        fail(name, value, "must be a pair [low, high] with 0 < low < high < 1")
    for v in value:
        number(name + "[]", v, low=0, high=1, low_open=True, high_open=True)
    if not value[0] < value[1]:
        fail(name, list(value), "must be a pair [low, high] with 0 < low < high < 1")
    return value


class SigmaOptBlock(Block):
    steps: Int0
    draws: IntPos
    lr: Pos
    gradient: Annotated[str, _one_of(_sigma.GRADIENTS)]
    max_increase: NonNeg
    max_decrease: NonNeg
    psi_clamp: Annotated[tuple[float, float], _check(_psi_clamp)]
    batch_size: IntPos
    rule: Annotated[str, _one_of(_sigma.RULES)] = "anchored"


def _ray_keys(name: str, value: Any) -> Any:
    if value is None:
        return None
    rb = _ray_backend()
    if not isinstance(value, dict):
        fail(name, value, "must be a mapping of " + ", ".join(rb.DEFAULTS))
    for key in value:
        if key not in rb.DEFAULTS:
            raise ConfigError(unknown_key_message(f"{name}.{key}", list(rb.DEFAULTS)))
    return value


class EnsembleBlock(Block):
    backend: Annotated[str, _one_of(_ensemble.BACKENDS)]
    chunk_size: IntPos
    checkpoint_dir: Annotated[str | None, _check(_text, optional=True)]  # null: no checkpoints
    ray: Annotated[dict[str, Any] | None, _check(_ray_keys)] = None  # values: ray_backend.check_options


class EvaluationBlock(Block):
    bound: Annotated[str, _one_of(_certify.BOUNDS)]
    aggregation: Annotated[str, _one_of(_certify.AGGREGATIONS)]
    alpha: OpenUnit
    alpha_split: Annotated[str, _one_of(_certify.ALPHA_SPLITS)]
    selection: Annotated[str, _one_of(_certify.SELECTIONS)]
    n0: Int0
    radii: Annotated[list[float], _check(sorted_radii)]
    storage_order_seed: Int0
    storage_rule: Annotated[str, _one_of(STORAGE_RULES)] = "trim"
    model_chunk: IntPos
    backend: Annotated[str, _one_of(EVALUATION_BACKENDS)] = "local"
    degenerate_margin: Unit
    allow_tiny: Flag = False


def _distinct(name: str, value: Any) -> Any:
    if isinstance(value, list) and len(set(value)) != len(value):
        fail(name, value, "must hold distinct values")
    return value


class StudyGrid(Block):
    """The study's axes: the one home of their rules (``certssb.pipelines.study.grid.cells`` reads them
    through :func:`study_grid`)."""

    attacks: Annotated[list[str], _each(choice, ATTACKS)]
    sigmas: Annotated[list[float], _each(positive)]
    rates: Annotated[list[float] | None, _each(number, low=0, high=1, low_open=True, optional=True)] = None
    seeds: Annotated[
        list[int] | None,
        _each(number, low=0, integer=True, optional=True),
        _check(_distinct, optional=True),
    ] = None


class StudyBlock(StudyGrid):
    """The grid attack x sigma_0 [x rate x seed]; every cell runs the default pipelines
    (certssb.pipelines.study)."""

    certifier_attack_rate: Unit
    certifier_trigger: Annotated[str, _one_of(TRIGGERS)]
    quick: Flag = False
    quick_overrides: dict[str, Any] = {}


class StrengthBlock(Block):
    """The attack-strength sweep on the undefended model (certssb.pipelines.attack_strength)."""

    triggers: Annotated[list[str], _each(choice, TRIGGERS)]
    label_modes: Annotated[list[str], _each(choice, poisoning.LABEL_MODES)]
    poison_rates: Annotated[list[float], _each(number, low=0, high=1, low_open=True)]
    deltas: Annotated[list[float], _each(positive)]
    epochs: Annotated[list[int], _each(positive, integer=True)]
    thresholds: Annotated[list[float], _each(number, low=0, high=1)]
    max_clean_drop: NonNeg
    quick: Flag = False
    quick_grid: dict[str, Any] = {}


class AuditBlock(Block):
    points: IntPos
    factors: Annotated[list[float], _check(audit.check_factors)]
    strategies: Annotated[list[str], _each(choice, AUDIT_STRATEGIES)]
    columns: Annotated[list[str], _each(choice, AUDIT_COLUMNS)]
    selection: Annotated[str, _one_of(("band", "stratified"))] = "band"
    resigma: Flag = False
    stop_rate: Annotated[float, _check(number, low=0, high=1, low_open=True)] = 0.1
    min_share: Annotated[float, _check(number, low=0, high=1, low_open=True)] = 0.9
    k: IntPos
    surrogate_members: IntPos = 2
    pgd_steps: IntPos = 10
    pgd_draws: IntPos = 8
    brew_steps: IntPos = 30
    seed: Int0
    quick: Flag = False
    quick_points: IntPos = 4
    quick_factors: Annotated[list[float], _check(audit.check_factors)] = [0.95, 32.0]
    quick_strategies: Annotated[list[str], _each(choice, AUDIT_STRATEGIES)] = ["pgd", "brew"]
    quick_num_models: IntPos = 20
    checkpoint_dir: str | None = None


class UniformBlock(Block):
    method: Annotated[Literal["uniform"], _one_of(("uniform",))]


class CertSsbBlock(Block):
    method: Annotated[Literal["cert_ssb"], _one_of(("cert_ssb",))]


class CohenBlock(Block):
    """Cohen et al.'s inference-time smoothing (certssb.core.smoothing): its own training and draws."""

    method: Annotated[Literal["cohen"], _one_of(("cohen",))]
    epochs: IntPos = 20  # the base classifier trains with fresh Gaussian augmentation to convergence
    n0: IntPos = 100  # selection draws
    num_draws: IntPos = 1000  # N estimation draws: ceiling sigma * Phi^-1(alpha^(1/N))


def _methods(name: str, value: Any) -> Any:
    if not isinstance(value, (list, tuple)) or not value:
        fail(name, value, "must be a non-empty list of certifiers: " + ", ".join(METHODS))
    for v in value:
        choice(name + "[]", v, METHODS)
    if len(set(value)) != len(value):
        fail(name, list(value), "must not repeat a certifier")
    return list(value)


def methods_from(params: dict[str, Any] | None) -> tuple[str, ...]:
    """The certifiers ``params["methods"]`` selects, in :data:`METHODS` order (all when absent)."""
    value = (params or {}).get("methods")
    if value is None:
        return METHODS
    _methods("methods", value)
    return tuple(m for m in METHODS if m in value)


class Config(Block):
    """All parameters; a block is None when the selected pipelines do not use it."""

    seed: Annotated[int | None, _check(number, low=0, integer=True, optional=True)] = None
    methods: Annotated[list[str] | None, _check(_methods, optional=True)] = None
    device: Annotated[str | None, _check(choice, _ensemble.DEVICES, optional=True)] = None
    num_threads: IntPosOpt = None  # null: $OMP_NUM_THREADS, else all cores (certssb.execution.threads)
    # float32 | bfloat16 | auto (bf16 where the device runs it natively); null: float32 (core.precision)
    precision: Annotated[str | None, _check(choice, _precision.PRECISIONS, optional=True)] = None
    data: DataBlock | None = None
    attack: AttackBlock | None = None
    noise: NoiseBlock | None = None
    model: ModelBlock | None = None
    pilot: PilotBlock | None = None
    sigma_opt: SigmaOptBlock | None = None
    ensemble: EnsembleBlock | None = None
    evaluation: EvaluationBlock | None = None
    study: StudyBlock | None = None
    audit: AuditBlock | None = None
    strength: StrengthBlock | None = None
    uniform: UniformBlock | None = None
    cert_ssb: CertSsbBlock | None = None
    cohen: CohenBlock | None = None


BLOCKS: tuple[str, ...] = tuple(Config.model_fields)
_DE = {"seed", "num_threads", "data", "attack", "noise", "evaluation"}
_RUN = {"seed", "methods", "device", "num_threads", "precision"}
_MO = {*_RUN, "noise", "model", "pilot", "sigma_opt", "ensemble", *METHODS}
_EV = {*_RUN, "attack", "noise", "ensemble", "evaluation", *METHODS}
#: The blocks each registered pipeline reads. A pipeline not listed (a new one) gets every block present.
PIPELINE_BLOCKS: dict[str, set[str]] = {
    "data_engineering": _DE,
    "modelling": _MO,
    "evaluation": _EV,
    "__default__": _DE | _MO | _EV,
    "study": set(BLOCKS) - {"audit", "strength"},
    "audit": set(BLOCKS) - {"study", "strength"},
    "attack_strength": {"seed", "device", "num_threads", "data", "attack", "model", "strength"},
}


def blocks_for(pipelines: set[str] | None) -> set[str]:
    """The blocks the pipelines ``pipelines`` (None: the default run) read."""
    out: set[str] = set()
    for name in pipelines or {"__default__"}:
        out |= PIPELINE_BLOCKS.get(name, set(BLOCKS))
    return out


# ---------------------------------------------------------------------------------------------- errors
def unknown_key_message(path: str, known: list[str]) -> str:
    """``parameter 'noise.num_modles' is not known: did you mean 'noise.num_models'?`` (difflib)."""
    prefix, _, key = path.rpartition(".")
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)

    def full(k: str) -> str:
        return f"{prefix}.{k}" if prefix else k

    if match:
        return f"parameter '{path}' is not known: did you mean '{full(match[0])}'?"
    where = f"block '{prefix}'" if prefix else "the top level"
    return f"parameter '{path}' is not known: the keys of {where} are " + ", ".join(sorted(known))


def _path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int) and not str(p).startswith("function-")]
    return ".".join(parts)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    cls: Any = Config
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return None
        cls = next(
            (
                a
                for a in getattr(field.annotation, "__args__", (field.annotation,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if cls is None:
            return None
    return cls


def _to_config_error(err: ValidationError) -> ConfigError:
    """The first error of ``err`` in the project's form (unknown keys first: a typo explains the rest)."""
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    e = errors[0]
    path = _path(e["loc"])
    if e["type"] == "extra_forbidden":
        cls = _model_at(e["loc"])
        return ConfigError(unknown_key_message(path, list(cls.model_fields) if cls else []))
    if e["type"] == "missing":
        return ConfigError(f"parameter '{path}' is missing: set it in conf/base/parameters*.yml")
    inner = (e.get("ctx") or {}).get("error")
    if isinstance(inner, ConfigError):
        return ConfigError(str(inner).replace(_NAME, path))
    return ConfigError(f"parameter '{path}' = {e.get('input')!r} is invalid: {e['msg']}")


# ------------------------------------------------------------------------------------ cross-block checks
def estimation_models(noise: NoiseBlock, evaluation: EvaluationBlock) -> int:
    """Models left for the estimation step: ``M - n0`` under selection ``split``, else ``M``."""
    return noise.num_models - (evaluation.n0 if evaluation.selection == "split" else 0)


def models_needed(
    radius: float, sigma0: float, evaluation: EvaluationBlock, limit: int = 10**7
) -> int | None:
    """Smallest ``M`` whose ceiling ``radius_ceiling(M - n0, alpha) * sigma0`` reaches ``radius``.

    The ceiling grows with the number of estimation models (more unanimous votes -> a tighter lower bound
    on ``p_A``), so a doubling search then a bisection finds it; None when no ``M <= limit`` does.
    """
    n0 = evaluation.n0 if evaluation.selection == "split" else 0

    def ok(m: int) -> bool:
        return (
            m - n0 >= 1
            and sigma0
            * _certify.radius_ceiling(m - n0, evaluation.alpha, evaluation.bound, evaluation.alpha_split)
            >= radius
        )

    hi = max(n0 + 1, 2)
    while not ok(hi):
        if hi >= limit:
            return None
        hi = min(2 * hi, limit)
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def check_certifiable(noise: NoiseBlock, evaluation: EvaluationBlock) -> None:
    """Stop a run that can certify no radius of its grid, before it trains anything.

    With ``n = M - n0`` estimation models no sample's radius exceeds ``sigma_0 * radius_ceiling(n, alpha)``
    (all ``n`` votes unanimous; ``certify.radius_ceiling``). When that is below the smallest non-zero radius
    of ``evaluation.radii`` every certified accuracy but r = 0 is zero by construction. The check uses
    sigma_0, the uniform baseline's sigma (Cert-SSB's sample-specific sigma may reach
    ``sigma_0 + sigma_opt.max_increase``). ``evaluation.allow_tiny: true`` lets such runs through (tests).
    """
    if evaluation.allow_tiny:
        return
    nonzero = [r for r in evaluation.radii if r > 0]
    if not nonzero:
        return
    r_min = min(nonzero)
    n = estimation_models(noise, evaluation)
    ceiling = (
        _certify.radius_ceiling(n, evaluation.alpha, evaluation.bound, evaluation.alpha_split)
        if n >= 1
        else 0.0
    )
    top = noise.sigma * ceiling
    if top >= r_min:
        return
    need = models_needed(r_min, noise.sigma, evaluation)
    hint = (
        f"noise.num_models >= {need} would reach it"
        if need is not None
        else "no noise.num_models up to 10^7 reaches it; raise noise.sigma or alpha"
    )
    fail(
        "noise.num_models",
        noise.num_models,
        f"with n0 = {evaluation.n0} and alpha = {evaluation.alpha:g} ({evaluation.bound}) the largest radius "
        f"any sample can get is sigma_0 * ceiling = {noise.sigma:g} * {ceiling:.3f} = {top:.3f}, below the "
        f"smallest non-zero radius {r_min:g} of evaluation.radii, so every certified accuracy at r > 0 "
        f"would be 0; {hint} (or set evaluation.allow_tiny: true)",
    )


def check_cohen_certifiable(noise: NoiseBlock, evaluation: EvaluationBlock, cohen: CohenBlock) -> None:
    """Stop a run whose ``cohen`` certifier cannot reach the smallest non-zero radius of ``evaluation.radii``:
    its ceiling is ``sigma_0 * Phi^-1(alpha^(1/N))`` with N = ``cohen.num_draws`` (all draws agree)."""
    nonzero = [r for r in evaluation.radii if r > 0]
    if evaluation.allow_tiny or not nonzero:
        return
    top = noise.sigma * _certify.radius_ceiling(cohen.num_draws, evaluation.alpha, "clopper_pearson")
    if top < min(nonzero):
        fail(
            "cohen.num_draws",
            cohen.num_draws,
            f"its radius ceiling sigma_0 * Phi^-1(alpha^(1/N)) = {top:.3f} is below the smallest non-zero "
            f"radius {min(nonzero):g} of evaluation.radii; raise cohen.num_draws (or set "
            "evaluation.allow_tiny: true)",
        )


#: core's argument names that differ from the field of the block they come from (block -> {argument: field})
CORE_ARGS: dict[str, dict[str, str]] = {
    "attack": {"attack": "name"},  # core.poisoning.poison(attack=...) is attack.name
    "noise": {"sigma0": "sigma"},  # core.sigma.optimise_sigma(sigma0=...) is noise.sigma
    "evaluation": {"rule": "storage_rule"},  # core.storage.storage_update(rule=...)
}


def block_keys(*blocks: str, **keys: str) -> dict[str, str]:
    """core's argument names -> the parameter keys they come from, for a call on the blocks ``blocks``.

    ``keys`` first (the call site decides: ``epochs="pilot.epochs"``), then every field ``f`` of each block
    ``b`` as ``b.f`` and core's own names for them (:data:`CORE_ARGS`); a field that several blocks share
    goes to the first block named. A top-level parameter (``seed``) maps to itself."""
    out = dict(keys)
    for b in blocks:
        if b not in Config.model_fields:
            raise KeyError(f"no parameter block {b!r}; the blocks are {', '.join(BLOCKS)}")
        cls = _model_at((b, ""))
        fields = {f: f for f in (cls.model_fields if cls is not None else {b: None})}
        for arg, field in {**fields, **CORE_ARGS.get(b, {})}.items():
            out.setdefault(arg, f"{b}.{field}" if cls is not None else field)
    return out


#: core.certify's argument names -> the parameter keys they come from (core's errors on the run's parameters)
EVALUATION_KEYS: dict[str, str] = block_keys("evaluation", "noise")

_NAMED = re.compile(r"parameter '([A-Za-z_]\w*)((?:\[\])?)'")


@contextlib.contextmanager
def core_names(keys: dict[str, str]) -> Iterator[None]:
    """Re-raise a core :class:`ConfigError` about argument ``a`` (or ``a[]``) as one about the parameter
    ``keys[a]``; names not in ``keys`` (and errors already naming a key) pass unchanged. Nested uses compose:
    the innermost, nearest the core call, names first."""
    try:
        yield
    except ConfigError as exc:
        msg = _NAMED.sub(lambda m: f"parameter '{keys.get(m[1], m[1])}{m[2]}'", str(exc))
        if msg == str(exc):
            raise
        if type(exc) is ConfigError:
            raise ConfigError(msg).with_traceback(exc.__traceback__) from None
        exc.args = (msg, *exc.args[1:])  # a subclass (certssb.cli.UserError, ...) keeps its type
        raise


def core_errors(*blocks: str, **keys: str) -> Callable[[_F], _F]:
    """Decorator of a node (or an execution step) that calls ``certssb.core`` on the run's parameters: core's
    errors, which name core's arguments, name the parameter keys of ``blocks`` instead (:func:`block_keys`;
    ``keys``: where an argument name is ambiguous across the blocks, the key it means here). Kedro still sees
    the node's signature and annotations (``functools.wraps``)."""
    names = block_keys(*blocks, **keys)

    def decorate(fn: _F) -> _F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with core_names(names):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def _cross_checks(cfg: Config, params: dict[str, Any], pipelines: set[str]) -> None:
    d, a, n, e, s = cfg.data, cfg.attack, cfg.noise, cfg.evaluation, cfg.sigma_opt
    if cfg.strength is not None and cfg.strength.quick and cfg.strength.quick_grid:
        try:  # the grid a quick sweep will use, checked now rather than after the download
            block(
                "strength",
                {**params["strength"], **cfg.strength.quick_grid, "quick": False, "quick_grid": {}},
            )
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} (in strength.quick_grid, used because strength.quick is true)"
            ) from None
    if d is not None and d.dataset == "local" and not d.local_path:
        fail("data.local_path", d.local_path, "dataset 'local' needs the path of an .npz")
    if a is not None:
        if a.label_mode != "dirty" and a.name in CERTIFIER_ATTACKS:
            fail(
                "attack.label_mode",
                a.label_mode,
                f"with attack.name {a.name!r} only 'dirty' applies: the "
                "certifier attacks append relabelled copies",
            )
        if a.name in CERTIFIER_ATTACKS:  # each certifier attack takes its own label rules
            choice("attack.certifier_labels", a.certifier_labels, poisoning.CERTIFIER_LABELS[a.name])
        if d is not None and a.name != "none":
            num_classes = len(d.classes) if d.classes else (None if d.dataset == "local" else 10)
            if num_classes is not None:
                number("attack.target", a.target, low=0, high=num_classes - 1, integer=True)
    if s is not None and n is not None and n.sigma - s.max_decrease <= 0:
        fail(
            "sigma_opt.max_decrease",
            s.max_decrease,
            f"sigma_0 - max_decrease = {n.sigma - s.max_decrease:.4g} must stay > 0 "
            f"(noise.sigma = {n.sigma:g})",
        )
    if e is not None:  # the certifier's own rules, stated once in core.certify, named here by their keys
        with core_names(EVALUATION_KEYS):
            _certify.check_selection(e.selection, e.n0, n.num_models if n is not None else None)
            _certify.check_bound(e.bound, e.aggregation, n.num_draws if n is not None else 1)
    ray_used = (cfg.ensemble is not None and cfg.ensemble.backend == "ray") or (
        e is not None and e.backend == "ray"
    )
    if ray_used and n is not None:
        _ray_backend().check_options((params.get("ensemble") or {}).get("ray") or {}, n.num_models)
    quick = None
    if cfg.study is not None and cfg.study.quick:
        # the cells' own blocks (no ``study`` block: the radius-ceiling check stays a warning there)
        quick = validate(
            deep_update({k: v for k, v in params.items() if k != "study"}, cfg.study.quick_overrides),
            {"study"},
        )
    if e is not None and n is not None and pipelines & {"evaluation", "__default__"}:
        check_certifiable(n, e)
        if cfg.cohen is not None and "cohen" in methods_from(params):
            check_cohen_certifiable(n, e, cfg.cohen)
    elif cfg.study is not None and e is not None and n is not None:
        if quick is not None:  # the cells run with the quick overrides: warn about those blocks
            n, e = quick.noise, quick.evaluation
        for s0 in [] if e.allow_tiny else cfg.study.sigmas:  # a warning: the grid has small sigmas on purpose
            try:
                check_certifiable(n.model_copy(update={"sigma": s0}), e)
            except ConfigError as exc:
                log.warning("study cells with sigma_0 = %g: %s", s0, exc)


def deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``extra`` merged in, nested dicts key by key (how overrides apply to
    parameters)."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def plain(value: Any) -> Any:
    """``value`` with every block instance (what Kedro's parameter validation put in ``parameters``) turned
    back into the mapping it was made from (the keys the configuration set, ``exclude_unset``)."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _key_check(params: Any, prefix: str, cls: type[BaseModel]) -> None:
    """Refuse unknown keys at any depth of ``params`` against the blocks' fields (no value checks)."""
    if not isinstance(params, dict):
        return
    for key, value in params.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        field = cls.model_fields.get(key)
        if field is None:
            raise ConfigError(unknown_key_message(path, list(cls.model_fields)))
        sub = next(
            (
                a
                for a in getattr(field.annotation, "__args__", (field.annotation,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if sub is not None:
            _key_check(value, path, sub)
        elif cls is EnsembleBlock and key == "ray":
            _ray_keys(path, value)
        elif cls is StudyBlock and key == "quick_overrides":
            _key_check(value, path, Config)
        elif cls is StrengthBlock and key == "quick_grid":
            _key_check(value, path, StrengthBlock)


# ----------------------------------------------------------------------------------------------- entry
def validate(params: dict[str, Any], pipelines: set[str] | None = None) -> Config:
    """Check ``params`` (the Kedro ``parameters`` dict) for the pipelines ``pipelines``; return the typed
    blocks.

    Unknown keys are refused in every block; values are checked in the blocks the pipelines read
    (:func:`blocks_for`), then the cross-block rules. Raises one :class:`ConfigError` in the project's form.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"parameters must be a mapping of blocks, got {type(params).__name__}")
    params = plain(params)
    pipelines = set(pipelines or {"__default__"})
    _key_check(params, "", Config)
    want = blocks_for(pipelines)
    unused = set(METHODS) - set(methods_from(params))  # a certifier not run needs no block
    for name in sorted(want & set(BLOCKS) - unused):
        optional = ("study", "audit", "strength", "methods", "num_threads", "precision")
        if params.get(name) is None and name not in optional:
            raise ConfigError(f"parameter '{name}' is missing: set it in conf/base/parameters*.yml")
    try:
        cfg = Config.model_validate({k: v for k, v in params.items() if k in want})
    except ValidationError as err:
        raise _to_config_error(err) from None
    _cross_checks(cfg, params, pipelines)
    return cfg


# ----------------------------------------------------------------------- core configs built from the blocks
def block(name: str, value: Any) -> Any:
    """One block checked on its own (no cross-block rules): ``block("model", {...}) -> ModelBlock``."""
    _key_check({name: value}, "", Config)
    try:
        return getattr(Config.model_validate({name: value}), name)
    except ValidationError as err:
        raise _to_config_error(err) from None


class _GridOnly(Block):
    study: StudyGrid


def study_grid(study: Any) -> StudyGrid:
    """The axes of a ``study`` block (its other keys ignored), checked by :class:`StudyGrid`; a bad axis
    raises one :class:`ConfigError` naming ``study.<axis>``."""
    axes = {k: v for k, v in (plain(study) or {}).items() if k in StudyGrid.model_fields}
    try:
        return _GridOnly.model_validate({"study": axes}).study
    except ValidationError as err:
        raise _to_config_error(err) from None


def sigma_config(sigma_opt: SigmaOptBlock, sigma0: float) -> _sigma.SigmaConfig:
    """``sigma_opt`` and sigma_0 (``noise.sigma``, or a plan's) -> :class:`certssb.core.sigma.SigmaConfig`:
    sigma in ``[sigma0 - max_decrease, sigma0 + max_increase]`` (``sigma0 - max_decrease > 0`` is checked
    once, with the other cross-block rules, by :func:`validate`)."""
    s = sigma_opt
    with core_names(block_keys("sigma_opt")):
        return _sigma.SigmaConfig(
            steps=s.steps,
            draws=s.draws,
            lr=s.lr,
            gradient=s.gradient,
            sigma_min=sigma0 - s.max_decrease,
            sigma_max=sigma0 + s.max_increase,
            psi_clamp=tuple(s.psi_clamp),
            batch_size=s.batch_size,
            rule=s.rule,
        )


def train_config(
    model: ModelBlock, epochs: int | None = None, precision: str = "float32"
) -> _ensemble.TrainConfig:
    """``model`` -> :class:`certssb.core.ensemble.TrainConfig` (``epochs`` overrides, e.g. the pilot's;
    ``precision``: the resolved one, ``certssb.core.precision.resolve_precision``). An ``epochs`` given is
    named in errors by the caller's key (:func:`core_errors`)."""
    keys = block_keys("model")
    if epochs is not None:
        del keys["epochs"]
    with core_names(keys):
        return _ensemble.TrainConfig(
            architecture=model.architecture,
            epochs=model.epochs if epochs is None else epochs,
            batch_size=model.batch_size,
            lr=model.lr,
            weight_decay=model.weight_decay,
            precision=precision,
        )


__all__ = [
    "BLOCKS",
    "EVASION_METHODS",
    "METHODS",
    "PIPELINE_BLOCKS",
    "SIGMA_METHODS",
    "Config",
    "block",
    "block_keys",
    "blocks_for",
    "check_certifiable",
    "core_errors",
    "core_names",
    "deep_update",
    "estimation_models",
    "methods_from",
    "models_needed",
    "plain",
    "sigma_config",
    "train_config",
    "unknown_key_message",
    "validate",
]
