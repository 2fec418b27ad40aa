"""Typed views of the artifacts the pipelines pass to each other, and the one lineage check.

The catalog saves plain dicts (``certssb.io.torch_dataset.TorchDataset``: tensors, lists, str, int, float,
bool, None; no pickled objects), so an artifact on disk stays a dict. The dataclasses here are views of
those dicts: ``from_dict`` checks that the keys a consumer needs are there, ``to_dict`` gives back exactly
the dict saved today (same keys, the same tensor objects, so the same dtypes), and a key the class does not
name is kept in ``extra`` and written back, so nothing is dropped; the keys keep the order of the dict read
(a view built in code writes its fields in the class's order). An optional field that is ``None`` is an
absent key; an optional key saved with the value ``None`` is kept in ``extra`` so that the round trip is
exact. The dataclasses are frozen (their tensors and dicts are not copied and stay mutable) and compare by
identity (``==`` on tensors has no single truth value).

Length: over 350 lines once formatted by ruff (one argument per line): one view per artifact kind and the one
lineage check they all use, which must read the same for every artifact; split, the checks would drift apart.

Lineage: every artifact records the fingerprints of what it was made from (``SigmaArtifact.inputs``,
``ModelArtifact.poisoned_train`` / ``noise_plan`` / ``sigma``, ``NoisePlan.poisoned_train``, ...). A node
that combines artifacts compares them with :func:`require_same` / :func:`check_lineage`, which raise ONE
:class:`LineageError` wording::

    <artifact> was made from another <source> (fingerprints <recorded> vs <given>)

naming the artifact to rebuild (``LineageError.artifact``); how to rebuild it (which command) is the
caller's to say (``certssb.hooks.errors`` adds it for ``kedro run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import torch

from .splits import tensor_fingerprint
from .validation import ConfigError

A = TypeVar("A", bound="Artifact")
_BOOKKEEPING = ("extra", "_order")  # fields that are no key of the saved dict


class LineageError(ConfigError):
    """An artifact that does not fit the others (another run, a damaged file): ``artifact`` names the one
    to rebuild."""

    def __init__(self, message: str, artifact: str) -> None:
        super().__init__(message)
        self.artifact = artifact


# ---------------------------------------------------------------------------------------------------
# the one lineage check


def require_same(artifact: str, source: str, recorded: Any, given: Any, than: str | None = None) -> None:
    """Raise :class:`ConfigError` unless ``recorded`` (the fingerprint of ``source`` that ``artifact`` was
    made from) equals ``given`` (the fingerprint of the ``source`` at hand; with ``than``: the one recorded by
    the artifact ``than``)."""
    if recorded != given:
        other = f"another {source}" + (f" than {than}" if than else "")
        raise LineageError(f"{artifact} was made from {other} (fingerprints {recorded} vs {given})", artifact)


def check_lineage(*checks: tuple[Any, ...]) -> None:
    """:func:`require_same` on each ``(artifact, source, recorded, given[, than])`` in turn."""
    for check in checks:
        require_same(*check)


# ---------------------------------------------------------------------------------------------------
# the dataclasses


@dataclass(frozen=True, eq=False)
class Artifact:
    """Base of the artifact views: fields without a default are required keys, fields defaulting to ``None``
    optional keys, ``extra`` every other key. Subclasses set ``NAME`` (the catalog name in messages)."""

    NAME: ClassVar[str] = "artifact"

    @classmethod
    def _keys(cls) -> tuple[list[str], list[str]]:
        own = [f for f in fields(cls) if f.name not in _BOOKKEEPING]
        required = [f.name for f in own if f.default is MISSING and f.default_factory is MISSING]
        return required, [f.name for f in own if f.name not in required]

    @classmethod
    def from_dict(cls: type[A], d: Mapping[str, Any], name: str | None = None) -> A:
        """The view of the saved dict ``d``; ``name`` (default ``NAME``) is the artifact named in errors.

        Raises :class:`LineageError` naming the artifact and the key when a required key is missing."""
        name = name or cls.NAME
        if not isinstance(d, Mapping):
            raise LineageError(f"{name} is a {type(d).__name__}, not a {cls.__name__} dict", name)
        required, optional = cls._keys()
        for key in required:
            if key not in d:
                raise LineageError(
                    f"{name} has no key {key!r} (it was saved by another version of certssb or is "
                    f"not a {cls.__name__})",
                    name,
                )
        kw = {k: d[k] for k in required}
        kw.update({k: d[k] for k in optional if d.get(k) is not None})
        return cls(**kw, extra={k: v for k, v in d.items() if k not in kw}, _order=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        """The dict saved by the catalog: required keys, the optional keys that are set, then ``extra``; in
        the order of the dict it was read from, if any."""
        required, optional = self._keys()
        out = {k: getattr(self, k) for k in required}
        out.update({k: getattr(self, k) for k in optional if getattr(self, k) is not None})
        out.update(self.extra)
        return {**{k: out.pop(k) for k in self._order if k in out}, **out}


@dataclass(frozen=True, eq=False)
class SplitData(Artifact):
    """``poisoned_train``, ``clean_test`` or ``triggered_test`` (data_engineering ``poison``): float32 images
    ``x`` (N, C, H, W), int64 labels ``y``, the content ``fingerprint`` and the lineage of the raw dataset,
    attack and seed. ``poison_index`` (train), ``source_index`` (test sets: index into the test split or the
    clean test set), ``target_y`` / ``norms`` / ``trigger`` (triggered) are set where they apply."""

    NAME: ClassVar[str] = "split data"  # callers name it: poisoned_train, clean_test, triggered_test
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    fingerprint: str
    poison_index: torch.Tensor | None = None
    source_index: torch.Tensor | None = None
    target_y: torch.Tensor | None = None
    norms: torch.Tensor | None = None
    trigger: str | None = None
    class_names: list[str] | None = None
    raw_dataset: str | None = None
    attack: dict[str, Any] | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, eq=False)
class NoisePlan(Artifact):
    """The noise plan of ``certssb.core.noise.make_noise_plan`` (int64 seed tensors of length ``num_models``);
    ``poisoned_train``: the fingerprint of the training set it was made for (set by data_engineering)."""

    NAME: ClassVar[str] = "noise_plan"
    seed: int
    sigma0: float
    num_models: int
    num_draws: int
    n_train: int
    input_shape: list[int]
    train_seeds: torch.Tensor
    test_seeds: torch.Tensor
    model_seeds: torch.Tensor
    fingerprint: str
    poisoned_train: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, eq=False)
class SigmaArtifact(Artifact):
    """``{method}.sigma``: sigma per training, clean-test and triggered-test sample (float32), its
    ``fingerprint`` and the fingerprints of its ``inputs`` (poisoned_train, clean_test, triggered_test,
    noise_plan)."""

    NAME: ClassVar[str] = "sigma"
    method: str
    sigma0: float
    train: torch.Tensor
    clean: torch.Tensor
    triggered: torch.Tensor
    fingerprint: str
    inputs: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def build(
        cls, method: str, sigma0: float, sigmas: Mapping[str, torch.Tensor], inputs: dict[str, str]
    ) -> SigmaArtifact:
        """The artifact of ``sigmas`` (``train``, ``clean``, ``triggered``) with its fingerprint."""
        train, clean, triggered = sigmas["train"], sigmas["clean"], sigmas["triggered"]
        return cls(
            method=method,
            sigma0=sigma0,
            train=train,
            clean=clean,
            triggered=triggered,
            fingerprint=tensor_fingerprint(train, clean, triggered, extra=method),
            inputs=inputs,
        )


@dataclass(frozen=True, eq=False)
class ModelArtifact(Artifact):
    """A trained model artifact: the stacked parameters of its members (``params[name]`` has shape
    ``(M, ...)``), what rebuilds them (``architecture``, ``in_shape``, ``num_classes``), their indices in the
    noise plan and the training config. ``pilot_model`` / ``undefended_model`` add ``poisoned_train``,
    ``sigma0``, ``noisy`` and ``log``; ``{method}.ensemble`` adds ``method``, ``fingerprint``, ``backend`` and
    the fingerprints of the ``poisoned_train``, ``noise_plan`` and ``sigma`` it was trained on."""

    NAME: ClassVar[str] = "ensemble"
    architecture: str
    in_shape: list[int]
    num_classes: int
    params: dict[str, torch.Tensor]
    model_indices: torch.Tensor
    train_config: dict[str, Any] | None = None
    method: str | None = None
    fingerprint: str | None = None
    backend: str | None = None
    poisoned_train: str | None = None
    noise_plan: str | None = None
    sigma: str | None = None
    sigma0: float | None = None
    noisy: bool | None = None
    log: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False)

    @property
    def num_models(self) -> int:
        return len(self.model_indices)


@dataclass(frozen=True, eq=False)
class VotesArtifact(Artifact):
    """``{method}.votes``: per split (``clean``, ``triggered``) the ``votes`` and ``probs`` of
    ``certssb.core.votes.predict_votes``, and the fingerprints of the ``ensemble`` and ``sigma`` used (and
    of the ``noise_plan`` and ``poisoned_train`` behind them, which later consumers check)."""

    NAME: ClassVar[str] = "votes"
    method: str
    ensemble: str
    sigma: str
    clean: dict[str, torch.Tensor]
    triggered: dict[str, torch.Tensor]
    noise_plan: str | None = None
    poisoned_train: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False)


# ---------------------------------------------------------------------------------------------------
# the lineage of a trained ensemble


def check_ensemble_lineage(
    ensemble: ModelArtifact,
    sigma: SigmaArtifact,
    plan: NoisePlan,
    *,
    poisoned_train: SplitData | None = None,
    clean_test: SplitData | None = None,
    triggered_test: SplitData | None = None,
) -> None:
    """The ensemble, its sigma and its noise plan, and each of ``poisoned_train`` / ``clean_test`` /
    ``triggered_test`` given, come from one run (:func:`require_same` on each link)."""
    ens, sig = f"{ensemble.method}.ensemble", f"{ensemble.method}.sigma"
    checks: list[tuple[Any, ...]] = []
    if plan.poisoned_train is not None:  # the most telling mismatch first: another training set
        checks.append((ens, "poisoned_train", ensemble.poisoned_train, plan.poisoned_train, "noise_plan"))
    checks += [
        (ens, "noise_plan", ensemble.noise_plan, plan.fingerprint),
        (ens, sig, ensemble.sigma, sigma.fingerprint),
        (ens, "poisoned_train", ensemble.poisoned_train, sigma.inputs.get("poisoned_train"), sig),
        (sig, "noise_plan", sigma.inputs.get("noise_plan"), plan.fingerprint),
    ]
    if poisoned_train is not None:
        checks.append((ens, "poisoned_train", ensemble.poisoned_train, poisoned_train.fingerprint))
    checks += [
        (sig, name, sigma.inputs.get(name), data.fingerprint)
        for name, data in (("clean_test", clean_test), ("triggered_test", triggered_test))
        if data is not None
    ]
    check_lineage(*checks)


def check_plan_parameters(
    plan: NoisePlan, sigma: float, num_models: int, num_draws: int, prefix: str = ""
) -> None:
    """The noise plan was made with this run's ``sigma``, ``num_models`` and ``num_draws``: the run's labels
    (MLflow run names, plot titles) and its artifacts then say the same. ``prefix`` goes before each name in
    the message (the caller's name for where they come from)."""
    check_lineage(
        *[
            ("noise_plan", f"parameter {prefix}{key}", recorded, given)
            for key, recorded, given in (
                ("sigma", plan.sigma0, sigma),
                ("num_models", plan.num_models, num_models),
                ("num_draws", plan.num_draws, num_draws),
            )
        ]
    )


# ---------------------------------------------------------------------------------------------------
# the certificate table (CSV): lineage columns and a schema check on read

#: The columns a certificate table must have and their kind (``i`` integer, ``f`` number, ``b`` boolean,
#: ``s`` text): what ``certssb.core.certify.certify`` writes, plus ``method``, ``split`` and the lineage.
CERTIFICATE_COLUMNS: dict[str, str] = {
    "method": "s",
    "split": "s",
    "sample_id": "i",
    "label": "i",
    "prediction": "i",
    "p_lower_a": "f",
    "p_upper_b": "f",
    "r1": "f",
    "sigma": "f",
    "sigma_min": "f",
    "radius": "f",
    "radius_published": "f",
    "abstained": "b",
    "correct": "b",
    "n_estimation": "i",
    "ensemble_fingerprint": "s",
    "sigma_fingerprint": "s",
}


def _kind_ok(series: Any, kind: str) -> bool:
    import pandas.api.types as pt

    if kind == "s":
        return pt.is_object_dtype(series) or pt.is_string_dtype(series)
    if kind == "b":
        return pt.is_bool_dtype(series)
    if kind == "i":
        return pt.is_integer_dtype(series) and not pt.is_bool_dtype(series)
    return pt.is_numeric_dtype(series) and not pt.is_bool_dtype(series)


def check_certificates(
    certificates: Any,
    name: str,
    *,
    sigma: SigmaArtifact | None = None,
    ensemble: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> None:
    """Refuse a certificate table that is not the one of ``sigma`` and ``ensemble`` (fingerprints), or that
    is cut or damaged: every column of ``columns`` (default :data:`CERTIFICATE_COLUMNS`) present with its
    kind, one lineage value per column, and ``len(sigma.clean)`` clean + ``len(sigma.triggered)`` triggered
    rows. One :class:`ConfigError` naming ``name`` and what is wrong."""
    columns = CERTIFICATE_COLUMNS if columns is None else columns
    missing = [c for c in columns if c not in getattr(certificates, "columns", [])]
    if missing:
        raise LineageError(
            f"{name} lacks the column(s) {', '.join(missing)} "
            "(written by another version of certssb, or edited)",
            name,
        )
    kinds = {"i": "integers", "f": "numbers", "b": "booleans (True/False)", "s": "text"}
    for col, kind in columns.items():
        if not _kind_ok(certificates[col], kind):
            bad = certificates[col].iloc[0] if len(certificates) else None
            raise LineageError(
                f"{name} column {col!r} must hold {kinds[kind]}, not {certificates[col].dtype} "
                f"(e.g. {bad!r}): the file is damaged",
                name,
            )
    for col in ("ensemble_fingerprint", "sigma_fingerprint"):
        if col in columns and certificates[col].nunique() > 1:
            raise LineageError(
                f"{name} mixes rows of several runs "
                f"(column {col!r} has {certificates[col].nunique()} values)",
                name,
            )
    if len(certificates) and sigma is not None and "sigma_fingerprint" in columns:
        recorded = str(certificates["sigma_fingerprint"].iloc[0])
        require_same(name, f"{sigma.method}.sigma", recorded, sigma.fingerprint)
    if len(certificates) and ensemble is not None and "ensemble_fingerprint" in columns:
        require_same(name, "ensemble", str(certificates["ensemble_fingerprint"].iloc[0]), ensemble)
    if sigma is not None:
        counts = certificates["split"].value_counts().to_dict()
        want = {"clean": len(sigma.clean), "triggered": len(sigma.triggered)}
        got = {s: int(counts.get(s, 0)) for s in want}
        if got != want or sum(got.values()) != len(certificates):
            raise LineageError(
                f"{name} has {len(certificates)} rows ({got['clean']} clean + "
                f"{got['triggered']} triggered), but its test sets have {want['clean']} + "
                f"{want['triggered']}: the table is cut or extended",
                name,
            )
