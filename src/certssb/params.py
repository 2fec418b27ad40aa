"""The project's parameter schema: one place that checks ``conf/base/parameters*.yml``.

``certssb.hooks.ValidateParametersHook`` calls :func:`validate_parameters` before any node runs, so a bad
parameter stops ``kedro run`` with one clear error and no artifact of that run is written (earlier versions
are never touched). The nodes call the same checks again through ``certssb.core`` (defence in depth).
"""
from __future__ import annotations

from typing import Any

from certssb.core import certify, data, ensemble, models, poisoning, sigma, storage, triggers
from certssb.core.validation import ConfigError, choice, number, positive, sorted_radii

METHODS = ("uniform", "cert_ssb")


def _get(params: dict[str, Any], path: str) -> Any:
    cur: Any = params
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise ConfigError(f"parameter '{path}' is missing from conf/base/parameters*.yml")
        cur = cur[key]
    return cur


def validate_data_engineering(p: dict[str, Any]) -> None:
    number("seed", _get(p, "seed"), low=0, integer=True)
    d = _get(p, "data")
    choice("data.dataset", d["dataset"], data.DATASETS)
    number("data.test_fraction", d["test_fraction"], low=0, high=1, low_open=True, high_open=True)
    if d.get("certify_size") is not None:
        positive("data.certify_size", d["certify_size"], integer=True)
    if d["dataset"] == "local" and not d.get("local_path"):
        raise ConfigError("parameter 'data.local_path' = None is invalid: dataset 'local' needs the path of an .npz")
    a = _get(p, "attack")
    choice("attack.name", a["name"], poisoning.ATTACKS)
    choice("attack.trigger", a["trigger"], triggers.TRIGGERS)
    choice("attack.label_mode", a.get("label_mode", "dirty"), poisoning.LABEL_MODES)
    if a.get("label_mode", "dirty") != "dirty" and a["name"] in poisoning.CERTIFIER_ATTACKS:
        raise ConfigError(
            f"parameter 'attack.label_mode' = {a['label_mode']!r} is invalid with attack.name {a['name']!r}: "
            "the certifier attacks append relabelled copies; only label_mode 'dirty' applies"
        )
    number("attack.poison_rate", a["poison_rate"], low=0, high=1)
    num_classes = len(d["classes"]) if d.get("classes") else (None if d["dataset"] == "local" else 10)
    if num_classes is not None and a["name"] != "none":
        number("attack.target", a["target"], low=0, high=num_classes - 1, integer=True)
    else:
        number("attack.target", a["target"], low=0, integer=True)
    number("attack.delta", a["delta"], low=0)
    n = _get(p, "noise")
    positive("noise.sigma", n["sigma"])
    positive("noise.num_models", n["num_models"], integer=True)
    positive("noise.num_draws", n["num_draws"], integer=True)
    number("noise.materialise", n["materialise"], low=0, integer=True)


def sigma_config(p: dict[str, Any]) -> sigma.SigmaConfig:
    s = _get(p, "sigma_opt")
    sigma0 = _get(p, "noise.sigma")
    positive("noise.sigma", sigma0)
    number("sigma_opt.max_decrease", s["max_decrease"], low=0)
    number("sigma_opt.max_increase", s["max_increase"], low=0)
    lo = sigma0 - s["max_decrease"]
    if lo <= 0:
        raise ConfigError(
            f"parameter 'sigma_opt.max_decrease' = {s['max_decrease']} is invalid: sigma_0 - max_decrease "
            f"= {lo:.4g} must stay > 0"
        )
    return sigma.SigmaConfig(
        steps=s["steps"], draws=s["draws"], lr=s["lr"], gradient=s["gradient"], sigma_min=lo,
        sigma_max=sigma0 + s["max_increase"], psi_clamp=tuple(s["psi_clamp"]), batch_size=s["batch_size"],
    )


def train_config(p: dict[str, Any], epochs: int | None = None) -> ensemble.TrainConfig:
    m = _get(p, "model")
    return ensemble.TrainConfig(
        architecture=m["architecture"], epochs=m["epochs"] if epochs is None else epochs,
        batch_size=m["batch_size"], lr=m["lr"], weight_decay=m.get("weight_decay", 0.0),
    )


def validate_modelling(p: dict[str, Any]) -> None:
    choice("device", _get(p, "device"), ensemble.DEVICES)
    ensemble.resolve_device(p["device"])
    train_config(p)
    positive("pilot.epochs", _get(p, "pilot.epochs"), integer=True)
    sigma_config(p)
    e = _get(p, "ensemble")
    choice("ensemble.backend", e["backend"], ensemble.BACKENDS)
    positive("ensemble.chunk_size", e["chunk_size"], integer=True)
    if e["backend"] == "ray":
        from certssb.core import ray_backend

        ray_backend.check_options(e.get("ray", {}), _get(p, "noise.num_models"))
    for method in METHODS:
        if method in p:
            choice(f"{method}.method", _get(p, f"{method}.method"), METHODS)


def validate_evaluation(p: dict[str, Any]) -> None:
    e = _get(p, "evaluation")
    choice("evaluation.bound", e["bound"], certify.BOUNDS)
    choice("evaluation.aggregation", e["aggregation"], certify.AGGREGATIONS)
    number("evaluation.alpha", e["alpha"], low=0, high=1, low_open=True, high_open=True)
    choice("evaluation.selection", e["selection"], certify.SELECTIONS)
    choice("evaluation.alpha_split", e["alpha_split"], certify.ALPHA_SPLITS)
    number("evaluation.n0", e["n0"], low=0, integer=True)
    if e["selection"] == "split" and e["n0"] < 1:
        raise ConfigError("parameter 'evaluation.n0' = 0 is invalid: selection 'split' needs n0 >= 1 selection models")
    if e["selection"] == "split" and e["n0"] >= _get(p, "noise.num_models"):
        raise ConfigError(
            f"parameter 'evaluation.n0' = {e['n0']} is invalid: it must leave at least one of the "
            f"noise.num_models = {p['noise']['num_models']} models for estimation"
        )
    if e["bound"] == "clopper_pearson" and e["aggregation"] != "hard":
        raise ConfigError(
            "parameter 'evaluation.aggregation' = 'soft' is invalid with bound 'clopper_pearson': the "
            "Clopper-Pearson bound needs hard votes; use aggregation 'hard' or bound 'hoeffding'"
        )
    if e["bound"] == "clopper_pearson" and _get(p, "noise.num_draws") > 1:
        raise ConfigError(
            f"parameter 'noise.num_draws' = {p['noise']['num_draws']} is invalid with evaluation.bound "
            "'clopper_pearson': K > 1 input draws per model give vote fractions, not one vote per model, "
            "so the Clopper-Pearson bound does not apply; use noise.num_draws = 1 or evaluation.bound 'hoeffding'"
        )
    sorted_radii("evaluation.radii", e["radii"])
    positive("evaluation.model_chunk", e["model_chunk"], integer=True)
    choice("evaluation.backend", e.get("backend", "local"), ("local", "ray"))
    if e.get("backend") == "ray":
        from certssb.core import ray_backend

        ray_backend.check_options(_get(p, "ensemble").get("ray", {}), _get(p, "noise.num_models"))
    number("evaluation.storage_order_seed", e["storage_order_seed"], low=0, integer=True)
    choice("evaluation.storage_rule", e.get("storage_rule", "trim"), storage.RULES)
    number("evaluation.degenerate_margin", e["degenerate_margin"], low=0, high=1)


def validate_parameters(params: dict[str, Any], pipelines: set[str] | None = None) -> None:
    """Validate the sections the selected pipelines use (all of them when ``pipelines`` is None)."""
    want = pipelines or {"data_engineering", "modelling", "evaluation"}
    validate_data_engineering(params)
    if want & {"modelling", "evaluation", "study", "__default__"}:
        validate_modelling(params)
    if want & {"evaluation", "study", "__default__"}:
        validate_evaluation(params)


__all__ = ["METHODS", "validate_parameters", "sigma_config", "train_config", "models"]
