"""MLflow: run names, the parameters a run used (once), filterable metric names, per-method runs.

Conventions (README "MLflow"):

* the parent run (kedro-mlflow's, one per ``kedro run``) is named for what ran: the configuration
  ``<dataset> · <attack> <rate>% · σ₀=<σ>`` for the default run, preceded by the pipeline otherwise
  (:func:`run_name`); each method gets a nested run ``<dataset> · <attack> <rate>% · σ₀=<σ> · <method>``
  that carries its whole configuration and its results (:func:`log_method_run`), so the runs table compares
  methods and runs on one screen;
* parameters: the blocks, flattened once with ``.`` (``noise.sigma``), the same names kedro-mlflow gives a
  node input ``params:noise`` (:func:`flatten_blocks`); MLflow accepts dots in parameter names;
* metric names carry no dot (``cert_acc_r050`` for r = 0.50), so ``metrics.cert_acc_r050 > 0`` works in an
  MLflow filter without backticks (:func:`metric_values` drops any dot left);
* the experiment carries ``mlflow.experimentKind = custom_model_development``: MLflow 3's UI then opens it
  on the runs table instead of the GenAI traces page (:func:`ensure_runs_table`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
RUNS_TABLE_KIND = "custom_model_development"  # MLflow 3 UI: "genai_development" opens on traces


SWEEPS = ("study", "attack_strength")  # their parent run covers many attacks and sigmas


def describe(params: Mapping[str, Any]) -> str:
    """What a run computed, for run names: ``<dataset> · <attack> <rate>% · σ₀=<σ>``, e.g.
    ``mnist_embedded · badnets 2% · σ₀=0.25``; parts not set are left out."""
    parts = []
    dataset = (params.get("data") or {}).get("dataset")
    if dataset is not None:
        parts.append(str(dataset))
    attack = params.get("attack") or {}
    if attack.get("name") is not None:
        rate = attack.get("poison_rate")
        none = attack["name"] == "none" or rate is None
        parts.append(str(attack["name"]) + ("" if none else f" {100 * float(rate):.3g}%"))
    sigma = (params.get("noise") or {}).get("sigma")
    if sigma is not None:
        parts.append(f"σ₀={float(sigma):g}")
    return " · ".join(parts)


def run_name(pipelines: Iterable[str], params: Mapping[str, Any]) -> str:
    """The parent run's name: what ran. The default run is its configuration (:func:`describe`); another
    pipeline is named first (``evaluation · mnist_embedded · badnets 2% · σ₀=0.25``); the sweeps
    (``study``, ``attack_strength``) by their names only, as they cover many attacks and sigmas."""
    names = sorted(n for n in pipelines if n != "__default__")
    if set(names) & set(SWEEPS):
        return "+".join(names)
    what = describe(params)
    return " · ".join(p for p in ("+".join(names), what) if p) or "default run"


def typed_command(run_params: Mapping[str, Any]) -> str:
    """The ``kedro run`` command a session's run parameters stand for (when it was not typed: API,
    notebook)."""
    bits = ["kedro run"]
    names = run_params.get("pipeline_names") or []
    if names:
        bits.append("--pipelines=" + ",".join(names))
    if run_params.get("env"):
        bits.append(f"--env={run_params['env']}")
    rt = run_params.get("runtime_params") or {}
    if rt:
        flat = flatten_blocks(rt, rt.keys()) if isinstance(rt, Mapping) else {}
        bits.append("--params=" + ",".join(f"{k}={v}" for k, v in flat.items()))
    return " ".join(bits)


def used_blocks(pipeline: Any, fallback: set[str]) -> set[str]:
    """Top-level parameter blocks that the nodes of ``pipeline`` read (``params:noise`` -> ``noise``).

    A node that takes the whole ``parameters`` reads every block: ``fallback`` (the blocks the pipeline is
    declared to use, ``certssb.config.blocks_for``) is added then.
    """
    out: set[str] = set()
    for name in pipeline.inputs() if hasattr(pipeline, "inputs") else ():
        if name.startswith("params:"):
            out.add(name[len("params:") :].split(".")[0])
        elif name == "parameters":
            out |= fallback
    return out


def flatten_blocks(params: Mapping[str, Any], blocks: Iterable[str], sep: str = ".") -> dict[str, Any]:
    """``{"noise": {"sigma": 0.25}}`` -> ``{"noise.sigma": 0.25}`` for the named blocks only (lists kept
    whole)."""

    def walk(prefix: str, value: Any, out: dict[str, Any]) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(f"{prefix}{sep}{k}", v, out)
        else:
            out[prefix] = value

    out: dict[str, Any] = {}
    for b in sorted(blocks):
        if b in params:
            walk(b, params[b], out)
    return out


def metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics dict, with names free of dots (``cert_acc_r0.50`` ->
    ``cert_acc_r050``)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and v == v:
            out[str(k).replace(".", "")] = float(v)
    return out


def sigma_stats(sigma: Mapping[str, Any]) -> dict[str, float]:
    """Mean, min, max of the training sigmas and of the test sigmas (clean + triggered inputs together)."""

    def arr(v: Any) -> np.ndarray:
        return np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float64).ravel()

    out: dict[str, float] = {}
    test = [arr(sigma[k]) for k in ("clean", "triggered") if k in sigma]
    for name, values in (
        ("train", arr(sigma["train"]) if "train" in sigma else None),
        ("test", np.concatenate(test) if test else None),
    ):
        if values is None or values.size == 0:
            continue
        out[f"sigma_{name}_mean"] = float(values.mean())
        out[f"sigma_{name}_min"] = float(values.min())
        out[f"sigma_{name}_max"] = float(values.max())
    return out


def ensure_runs_table(experiment_id: str | None = None) -> None:
    """Tag the experiment so that MLflow 3's UI opens on the runs table (no-op when already tagged)."""
    import mlflow

    client = mlflow.MlflowClient()
    if experiment_id is None:
        run = mlflow.active_run()
        if run is None:
            return
        experiment_id = run.info.experiment_id
    exp = client.get_experiment(experiment_id)
    if exp.tags.get(EXPERIMENT_KIND_TAG) != RUNS_TABLE_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, RUNS_TABLE_KIND)


def log_params_once(params: Mapping[str, Any]) -> None:
    """Log ``params`` to the active run, skipping names it already holds (MLflow refuses a changed value)."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return
    have = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    todo = {k: v for k, v in params.items() if k not in have}
    items = list(todo.items())
    for i in range(0, len(items), 100):  # MLflow's batch limit
        mlflow.log_params(dict(items[i : i + 100]))


def log_method_run(
    method: str,
    metrics: Mapping[str, Any],
    table: Any = None,
    sigma: Mapping[str, Any] | None = None,
    *,
    sigma0: float | None = None,
    tags: Mapping[str, str] | None = None,
    name_suffix: str = "",
    figure: Any = None,
    config: Mapping[str, Any] | None = None,
) -> str:
    """One nested run per method under the active run, comparable on its own in the runs table: named
    ``<describe(config)> · <method>`` (``mnist_embedded · badnets 2% · σ₀=0.25 · cert_ssb``); params: the
    configuration blocks that made it, flattened with ``.`` (``attack.poison_rate``; :func:`flatten_blocks`),
    ``method``, ``sigma0`` and ``attack_in_threat_model``; metrics with dot-free names and the sigma
    statistics; tags: the method, the parent's ``kedro_run_id`` and ``kedro_command``, and
    ``certssb.attack_in_threat_model``; the certified-accuracy table, metrics.json, a figure.

    Returns the nested run's id.
    """
    import mlflow

    parent = mlflow.active_run()
    label = describe(config or {})
    with mlflow.start_run(
        run_name=" · ".join(p for p in (label, method) if p) + name_suffix, nested=parent is not None
    ) as run:
        inherited = {}
        if parent is not None:
            have = mlflow.MlflowClient().get_run(parent.info.run_id).data.tags
            inherited = {k: have[k] for k in ("kedro_run_id", "kedro_command") if k in have}
        inside = metrics.get("attack_in_threat_model")
        mlflow.set_tags(
            {
                "certssb.method": method,
                **inherited,
                **(tags or {}),
                **({} if inside is None else {"certssb.attack_in_threat_model": str(bool(inside))}),
            }
        )
        params: dict[str, Any] = flatten_blocks(config or {}, (config or {}).keys())
        params["method"] = method
        if sigma0 is not None:
            params["sigma0"] = sigma0
        if inside is not None:
            params["attack_in_threat_model"] = bool(inside)
        if metrics.get("precision"):  # the resolved precision (the config holds the parameter, e.g. auto)
            params["precision_resolved"] = metrics["precision"]
        items = list(params.items())
        for i in range(0, len(items), 100):  # MLflow's batch limit
            mlflow.log_params(dict(items[i : i + 100]))
        values = metric_values(metrics)
        if sigma is not None:
            values.update(sigma_stats(sigma))
        mlflow.log_metrics(values)
        if table is not None:
            mlflow.log_text(table.to_csv(index=False), "certified_accuracy.csv")
        mlflow.log_dict(dict(metrics), "metrics.json")
        if figure is not None:
            mlflow.log_figure(figure, "certified_accuracy.png")
        return run.info.run_id


__all__ = [
    "EXPERIMENT_KIND_TAG",
    "RUNS_TABLE_KIND",
    "describe",
    "ensure_runs_table",
    "flatten_blocks",
    "log_method_run",
    "log_params_once",
    "metric_values",
    "run_name",
    "sigma_stats",
    "used_blocks",
]
