"""Thin nodes of the evaluation pipeline: votes -> certificates -> storage update -> metrics, plots, MLflow.

Each node takes parameter blocks (``params:evaluation``, ``params:device``, ...) and artifacts, calls
``certssb.core`` (certify, storage, summary) or ``certssb.execution``, and returns artifacts. Before
certifying, ``compute_votes`` checks that the ensemble, its sigma, the noise plan and the test sets come from
one run and ``certify_samples`` that the votes were cast with this sigma (``certssb.core.artifacts``).

Length: over 350 lines once formatted by ruff: one pipeline's nodes (the two voters, poisoning ensemble and
``cohen``, the certificates, the storage update, metrics, plots, the comparison and the MLflow runs), each a
few lines, sharing the lineage and precision checks at the top.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from certssb.config import (
    METHODS,
    SIGMA_METHODS,
    EnsembleBlock,
    EvaluationBlock,
    NoiseBlock,
    core_errors,
    plain,
)
from certssb.core import certify, metrics, noise, smoothing, storage, summary
from certssb.core.artifacts import (
    ModelArtifact,
    NoisePlan,
    SigmaArtifact,
    SplitData,
    VotesArtifact,
    check_certificates,
    check_ensemble_lineage,
    check_plan_parameters,
    require_same,
)
from certssb.core.ensemble import load_member, resolve_device
from certssb.core.precision import autocast, model_precision, resolve_precision
from certssb.core.votes import predict_votes
from certssb.reporting import figures as reporting
from certssb.reporting.progress import progress_bar
from certssb.tracking import runs as tracking

log = logging.getLogger(__name__)
SPLITS = ("clean", "triggered")


def _voter(
    evaluation: EvaluationBlock, ensemble_params: EnsembleBlock | None, device: str
) -> Callable[..., dict[str, Any]]:
    """``predict_votes`` on this machine, or its Ray version with ``evaluation.backend: ray``."""
    if evaluation.backend == "ray":
        from certssb.execution.ray import predict_votes_ray

        return functools.partial(
            predict_votes_ray, options=ensemble_params.ray if ensemble_params is not None else None
        )
    return functools.partial(predict_votes, device=resolve_device(device))


def _checked_inputs(
    ensemble: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    sigma: dict[str, Any],
    noise_plan: dict[str, Any],
    noise_params: NoiseBlock | None,
) -> tuple[ModelArtifact, SigmaArtifact, NoisePlan, dict[str, SplitData]]:
    """The views of a certifier's inputs once their lineage is checked: the ensemble, its sigma, the noise
    plan (made with this run's ``noise`` parameters) and the test sets come from one run."""
    ens = ModelArtifact.from_dict(ensemble)
    sig = SigmaArtifact.from_dict(sigma, f"{ens.method}.sigma")
    plan = NoisePlan.from_dict(noise_plan)
    tests = {
        "clean": SplitData.from_dict(clean_test, "clean_test"),
        "triggered": SplitData.from_dict(triggered_test, "triggered_test"),
    }
    check_ensemble_lineage(ens, sig, plan, clean_test=tests["clean"], triggered_test=tests["triggered"])
    if noise_params is not None:
        n = noise_params
        check_plan_parameters(plan, n.sigma, n.num_models, n.num_draws, prefix="noise.")
    return ens, sig, plan, tests


def _precision(ens: ModelArtifact, precision: str | None, device: str) -> str:
    """The precision the ensemble was trained at, which must be the run's ``precision`` parameter (resolved on
    this device) when given: a model is evaluated at its own precision; runs at two precisions never mix."""
    at = model_precision(ens.train_config)
    if precision is not None:
        require_same(
            f"{ens.method}.ensemble", "parameter precision", at, resolve_precision(precision, device)
        )
    return at


@core_errors("evaluation", "ensemble")
def compute_votes(
    ensemble: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    sigma: dict[str, Any],
    noise_plan: dict[str, Any],
    evaluation: EvaluationBlock,
    ensemble_params: EnsembleBlock,
    device: str,
    noise: NoiseBlock,
    precision: str | None = None,
) -> dict[str, Any]:
    """Per-model vote fractions and mean probabilities on the clean and triggered test sets (each sample's
    own sigma); shards of models run as Ray tasks with ``evaluation.backend: ray`` (options ``ensemble.ray``).
    First the lineage (:func:`_checked_inputs`) and the precision (:func:`_precision`)."""
    ens, sig, plan, tests = _checked_inputs(ensemble, clean_test, triggered_test, sigma, noise_plan, noise)
    at = _precision(ens, precision, device)
    vote, out = _voter(evaluation, ensemble_params, device), {}
    with progress_bar(2 * ens.num_models, f"{ens.method}: votes (models x test sets)") as bar:
        for split, data in tests.items():
            out[split] = vote(
                ensemble,
                data.x,
                getattr(sig, split),
                noise_plan,
                split,
                model_chunk=evaluation.model_chunk,
                progress=bar.update,
            )
    return VotesArtifact(
        method=ens.method,
        ensemble=ens.fingerprint,
        sigma=sig.fingerprint,
        **out,
        noise_plan=plan.fingerprint,
        poisoned_train=ens.poisoned_train,
        extra={"precision": at},
    ).to_dict()


@core_errors("evaluation")
def certify_samples(
    votes: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    sigma: dict[str, Any],
    evaluation: EvaluationBlock,
) -> pd.DataFrame:
    """The certificate table of both test sets (one row per sample and split).

    ``sigma_min`` per sample is ``min(sigma_x, min over ALL training sigma_i)`` (the attacker may touch any
    training point; ``certssb.core.certify.sound_sigma_min``), so ``radius = sigma_min * r1`` is the sound l2
    radius and ``radius_published = sigma_x * r1`` is Cert-SSB as published (certssb.core.certify). The
    columns ``ensemble_fingerprint`` and ``sigma_fingerprint`` carry the table's lineage (checked on read:
    ``certssb.core.artifacts.check_certificates``).
    """
    method = votes["method"]
    require_same(f"{method}.votes", f"{method}.sigma", votes["sigma"], sigma["fingerprint"])
    e, frames = evaluation, []
    for split, data in (("clean", clean_test), ("triggered", triggered_test)):
        df = certify.certify(
            votes[split]["votes"].numpy(),
            votes[split]["probs"].numpy(),
            sigma[split].numpy(),
            labels=data["y"].numpy(),
            num_classes=data["num_classes"],
            bound=e.bound,
            aggregation=e.aggregation,
            alpha=e.alpha,
            selection=e.selection,
            n0=e.n0,
            alpha_split=e.alpha_split,
            sigma_train=sigma["train"].numpy(),
        )
        frames.append(df.assign(split=split)[["split", *df.columns]])
    table = pd.concat(frames, ignore_index=True).assign(method=method)[["method", "split", *df.columns]]
    return table.assign(
        ensemble_fingerprint=str(votes["ensemble"]),
        sigma_fingerprint=str(sigma["fingerprint"]),
        precision=votes.get("precision", "float32"),
    )


@core_errors(n0="cohen.n0", num_draws="cohen.num_draws")
def compute_cohen_votes(
    ensemble: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    sigma: dict[str, Any],
    noise_plan: dict[str, Any],
    n0: int,
    num_draws: int,
    device: str,
    noise_params: NoiseBlock,
    precision: str | None = None,
) -> dict[str, Any]:
    """``cohen``: class counts of its one base classifier over ``n0`` selection and ``num_draws`` estimation
    draws of input noise per test sample (certssb.core.smoothing), seeded from the noise plan. First the same
    lineage checks as :func:`compute_votes`."""
    ens, sig, plan, tests = _checked_inputs(
        ensemble, clean_test, triggered_test, sigma, noise_plan, noise_params
    )
    at = _precision(ens, precision, device)
    net = load_member(ens.architecture, ens.in_shape, ens.num_classes, ens.params, 0, resolve_device(device))
    seed = int(noise.auxiliary_plan(noise_plan, ens.method)["test_seeds"][0])
    out = {}
    total = sum(d.x.shape[0] for d in tests.values())
    with progress_bar(total, f"{ens.method}: {n0} + {num_draws} draws") as bar:
        for split, data in tests.items():
            out[split] = smoothing.certify_votes(
                net,
                data.x,
                getattr(sig, split),
                seed=seed,
                split=split,
                n0=n0,
                num_draws=num_draws,
                num_classes=ens.num_classes,
                progress=bar.update,
                precision=at,
            )
    extra = {"bound": "clopper_pearson", "threat_model": smoothing.THREAT_MODEL, "precision": at}
    return VotesArtifact(
        method=ens.method,
        ensemble=ens.fingerprint,
        sigma=sig.fingerprint,
        extra=extra,
        **out,
        noise_plan=plan.fingerprint,
        poisoned_train=ens.poisoned_train,
    ).to_dict()


@core_errors("evaluation")
def certify_cohen(
    votes: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    sigma: dict[str, Any],
    evaluation: EvaluationBlock,
) -> pd.DataFrame:
    """``cohen``'s certificate table (the poisoning certifiers' columns): Clopper-Pearson at
    ``evaluation.alpha`` over the i.i.d. estimation draws, ``radius = radius_published = sigma * R1``."""
    method = votes["method"]
    require_same(f"{method}.votes", f"{method}.sigma", votes["sigma"], sigma["fingerprint"])
    frames = []
    for split, data in (("clean", clean_test), ("triggered", triggered_test)):
        df = certify.certify_counts(
            votes[split]["selection"].numpy(),
            votes[split]["estimation"].numpy(),
            sigma[split].numpy(),
            labels=data["y"].numpy(),
            alpha=evaluation.alpha,
        )
        frames.append(df.assign(split=split)[["split", *df.columns]])
    table = pd.concat(frames, ignore_index=True).assign(method=method)[["method", "split", *df.columns]]
    return table.assign(
        ensemble_fingerprint=str(votes["ensemble"]),
        sigma_fingerprint=str(sigma["fingerprint"]),
        precision=votes.get("precision", "float32"),
    )


def skip_storage_update(certificates: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``cohen``: the storage update is not applicable (one fixed sigma: certificates never contradict each
    other), so the certificates pass through unchanged."""
    report = {
        "rule": "not applicable",
        "reason": "evasion certifier with one fixed sigma: certificates of "
        "one smoothed classifier cannot contradict each other",
        "trimmed": 0,
        "aligned": 0,
    }
    return certificates.copy(), report


@core_errors("evaluation")
def storage_update(
    certificates: pd.DataFrame,
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    evaluation: EvaluationBlock,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cert-SSB's storage update over ONE memory for the clean and triggered inputs, on the sound ``radius``
    (:func:`certssb.core.storage.update_certificates`)."""
    updated, report = storage.update_certificates(
        certificates,
        clean_test["x"],
        triggered_test["x"],
        rule=evaluation.storage_rule,
        seed=evaluation.storage_order_seed,
        radii=evaluation.radii,
    )
    log.info("%s: %s", certificates["method"].iloc[0] if len(certificates) else "?", storage_line(report))
    return updated, report


def storage_line(report: dict[str, Any]) -> str:
    """One line for the storage update: what it changed (or that it changed nothing), and the overlaps."""
    a = report.get("all", {})
    changed = {k: a.get(k, 0) for k in ("trim", "zeroed", "align") if a.get(k, 0)}
    what = (
        ", ".join(f"{n} {reporting.ACTION_STYLE[k][1]}" for k, n in changed.items())
        or "no certificate changed"
    )
    return (
        f"storage update ({report.get('rule', '?')} rule): {what}; overlapping pairs "
        f"{a.get('overlapping_pairs_before', 0)} -> {a.get('overlapping_pairs_after', 0)}"
    )


def evaluate_undefended(
    undefended_model: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    device: str,
    noise_plan: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Clean accuracy and attack success rate of the undefended model (no noise in training or test), which
    must have been trained on the training set of this run's ``noise_plan`` (recorded as
    ``poisoned_train``)."""
    undefended = ModelArtifact.from_dict(undefended_model, "undefended_model")
    plan = NoisePlan.from_dict(noise_plan) if noise_plan is not None else None
    if plan is not None and plan.poisoned_train is not None:
        require_same(
            "undefended_model", "poisoned_train", undefended.poisoned_train, plan.poisoned_train, "noise_plan"
        )
    dev = resolve_device(device)
    net = load_member(
        undefended_model["architecture"],
        undefended_model["in_shape"],
        undefended_model["num_classes"],
        undefended_model["params"],
        0,
        dev,
    )
    with torch.no_grad(), autocast(model_precision(undefended.train_config), dev):
        pc = net(clean_test["x"].to(dev)).argmax(1).cpu().numpy()
        pt = net(triggered_test["x"].to(dev)).argmax(1).cpu().numpy()
    out = {
        "clean_accuracy": metrics.clean_accuracy(pc, clean_test["y"].numpy()),
        "triggered_accuracy": metrics.clean_accuracy(pt, triggered_test["y"].numpy()),
        "attack_success_rate": summary.triggered_asr(pt, triggered_test),
    }
    log.info(
        "undefended model: clean accuracy %.3f, triggered accuracy %.3f, ASR %s",
        out["clean_accuracy"],
        out["triggered_accuracy"],
        "–" if out["attack_success_rate"] is None else f"{out['attack_success_rate']:.3f}",
    )
    if undefended.poisoned_train is not None:
        out["poisoned_train"] = undefended.poisoned_train  # lineage, checked by compute_metrics
    return out


@core_errors("evaluation")
def compute_metrics(
    certificates: pd.DataFrame,
    certificates_updated: pd.DataFrame,
    votes: dict[str, Any],
    clean_test: dict[str, Any],
    triggered_test: dict[str, Any],
    sigma: dict[str, Any],
    poison_summary: dict[str, Any],
    undefended_metrics: dict[str, Any],
    evaluation: EvaluationBlock,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Certified accuracy table and summary metrics on the sound radius
    (:func:`certssb.core.summary.run_summary`), after the lineage: the certificates are those of these votes
    and sigma (schema and row count), and the poison summary and the undefended model's metrics come from the
    training set the votes' ensemble saw."""
    method = votes["method"]
    sig = SigmaArtifact.from_dict(sigma, f"{method}.sigma")
    check_certificates(certificates, f"{method}.certificates", sigma=sig, ensemble=votes["ensemble"])
    trained_on = votes.get("poisoned_train")
    if trained_on is not None:
        for name, art in (("poison_summary", poison_summary), ("undefended_metrics", undefended_metrics)):
            if art.get("poisoned_train") is not None:
                require_same(f"{method}.ensemble", "poisoned_train", trained_on, art["poisoned_train"], name)
    table, m = summary.run_summary(
        certificates,
        certificates_updated,
        votes,
        clean_test,
        triggered_test,
        sigma,
        poison_summary,
        undefended_metrics,
        evaluation,
    )
    return table, {**m, "precision": votes.get("precision", "float32")}  # resolved; an MLflow param


def _attack_norm(metrics_: dict[str, Any]) -> float | None:
    """The attack's joint norm for the figures, only for an attack inside the certified threat model (a radius
    line beside a dirty-label or inserting attack's norm would read as a certificate against it)."""
    return metrics_.get("attack_joint_norm") if metrics_.get("attack_in_threat_model") else None


def _ceiling(metrics_: dict[str, Any]) -> float | None:
    c = metrics_.get("radius_ceiling_sigma_units")
    return None if c is None else float(c)


@core_errors("evaluation")
def make_plots(
    certificates: pd.DataFrame,
    certificates_updated: pd.DataFrame,
    sigma: dict[str, Any],
    metrics_: dict[str, Any],
    noise: NoiseBlock,
    evaluation: EvaluationBlock,
) -> tuple[Figure, Figure, Figure]:
    """Certified accuracy vs radius (exact step curves, clean | triggered), σ histogram, radius before/after
    the storage update (clean and triggered inputs share one memory)."""
    method, sigma0, parameters = (
        metrics_["method"],
        noise.sigma,
        {"noise": noise.model_dump(), "evaluation": evaluation.model_dump()},
    )
    name = reporting.method_label(method, sigma0)
    what, updated, norm = f"{name}: certified accuracy", certificates_updated, _attack_norm(metrics_)
    if (
        metrics_.get("certifies") == smoothing.THREAT_MODEL
    ):  # evasion: its draws, not the ensemble's M and n0;
        what += f"\n{smoothing.THREAT_MODEL}"  # no storage update, and the attack's norm is no radius of it
        parameters = {
            "noise": {"sigma": sigma0},
            "evaluation": {"alpha": evaluation.alpha, "bound": "clopper_pearson", "selection": "same"},
        }
        updated, norm = None, None
    ca = reporting.certified_accuracy_figure(
        certificates,
        updated=updated,
        sigma0=sigma0,
        ceiling=_ceiling(metrics_),
        attack_norm=norm,
        title=reporting.run_title(what, parameters),
    )
    hist = reporting.sigma_histogram(sigma, f"{name}: σ per sample")
    ba = reporting.radius_before_after(
        certificates, certificates_updated, f"{name}: storage update (clean and triggered test sets)"
    )
    return ca, hist, ba


def compare_methods(
    noise: NoiseBlock, evaluation: EvaluationBlock, *per_method: Any
) -> tuple[pd.DataFrame, Figure]:
    """The methods side by side: one table and one figure of the exact certified-accuracy curves; the title
    names what each certifies (``cohen``: test-time input perturbations only, nothing about poisoning).

    ``per_method`` is (certified_accuracy, certificates, metrics) for each method in turn.
    """
    tables, certs, metrics_ = per_method[0::3], per_method[1::3], per_method[2::3]
    table = pd.concat(tables, ignore_index=True)
    sigma0 = noise.sigma
    parameters = {"noise": noise.model_dump(), "evaluation": evaluation.model_dump()}
    fig = reporting.certified_accuracy_figure(
        pd.concat(certs, ignore_index=True),
        sigma0=sigma0,
        ceiling={m["method"]: _ceiling(m) for m in metrics_ if _ceiling(m) is not None},
        attack_norm=_attack_norm(metrics_[0]) if metrics_ else None,
        title=reporting.run_title(reporting.comparison_title([m["method"] for m in metrics_]), parameters),
    )
    return table, fig


CONFIG_BLOCKS = ("seed", "data", "attack", "noise", "model", "pilot", "sigma_opt", "ensemble", "evaluation")
"""The parameter blocks every method's MLflow run carries (each method's own block is added to its run)."""
METHOD_ONLY_BLOCKS = {
    "pilot",
    "sigma_opt",
}  # Cert-SSB's sigma optimisation: not part of the other methods' runs


def log_mlflow_runs(
    *inputs: Any, methods: tuple[str, ...] = METHODS, name_suffix: str = ""
) -> dict[str, Any]:
    """One nested MLflow run per method under the kedro-mlflow run (certssb.tracking.runs.log_method_run).

    ``inputs``: the blocks of :data:`CONFIG_BLOCKS`, then each of ``methods``' own block (``params:<method>``,
    in that order), then (metrics, certified_accuracy, sigma) for each method in turn.
    Each nested run logs the configuration that made it (the shared blocks, its own block, and ``pilot`` /
    ``sigma_opt`` for Cert-SSB only), the metrics with dot-free names and its sigma statistics.
    """
    import mlflow

    n = len(CONFIG_BLOCKS)
    shared = plain(dict(zip(CONFIG_BLOCKS, inputs[:n])))  # the blocks as logged: their configured keys
    own = plain(dict(zip(methods, inputs[n : n + len(methods)])))
    per_method = inputs[n + len(methods) :]
    noise, attack = shared["noise"], shared["attack"]
    runs = {}
    parent = mlflow.active_run()
    tags = {"certssb.attack": str(attack["name"]), "certssb.sigma0": f"{noise['sigma']:g}"}
    for metrics_, table, sigma in zip(per_method[0::3], per_method[1::3], per_method[2::3]):
        method = metrics_["method"]
        config = {k: v for k, v in shared.items() if k not in METHOD_ONLY_BLOCKS or method in SIGMA_METHODS}
        if own.get(method) is not None:
            config[method] = own[method]
        runs[method] = tracking.log_method_run(
            method,
            metrics_,
            table,
            sigma,
            sigma0=noise["sigma"],
            tags=tags,
            name_suffix=name_suffix,
            config=config,
        )
    return {
        "parent_run_id": parent.info.run_id if parent else None,
        "parent_run_name": parent.info.run_name if parent else None,
        "runs": runs,
    }
