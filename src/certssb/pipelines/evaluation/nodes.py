"""Thin nodes of the evaluation pipeline: votes -> certificates -> storage update -> metrics, plots, MLflow."""
from __future__ import annotations

import logging
from typing import Any

from matplotlib.figure import Figure
import numpy as np
import pandas as pd
import torch

from certssb import reporting
from certssb.core import certify, metrics, storage
from certssb.core.ensemble import load_member, resolve_device
from certssb.core.validation import ConfigError
from certssb.core.votes import predict_votes
from certssb.progress import progress_bar

log = logging.getLogger(__name__)
SPLITS = ("clean", "triggered")


def _same(what: str, a: Any, b: Any) -> None:
    if a != b:
        raise ConfigError(
            f"{what}: mismatched config hashes {a} vs {b} -- the certificates would mix models and data from "
            "different runs; rerun the upstream pipelines (or pass matching --load-versions)"
        )


def _check_lineage(ensemble: dict, sigma: dict, clean_test: dict, triggered_test: dict, plan: dict) -> None:
    _same("ensemble vs noise_plan", ensemble["noise_plan"], plan["fingerprint"])
    _same("ensemble vs sigma", ensemble["sigma"], sigma["fingerprint"])
    _same("sigma vs clean_test", sigma["inputs"]["clean_test"], clean_test["fingerprint"])
    _same("sigma vs triggered_test", sigma["inputs"]["triggered_test"], triggered_test["fingerprint"])
    _same("ensemble vs poisoned_train", ensemble["poisoned_train"], sigma["inputs"]["poisoned_train"])


def compute_votes(
    ensemble: dict[str, Any], clean_test: dict[str, Any], triggered_test: dict[str, Any], sigma: dict[str, Any],
    noise_plan: dict[str, Any], parameters: dict[str, Any],
) -> dict[str, Any]:
    """Per-model votes and mean probabilities on the clean and triggered test sets (each sample's own sigma)."""
    _check_lineage(ensemble, sigma, clean_test, triggered_test, noise_plan)
    dev = resolve_device(parameters["device"])
    chunk = parameters["evaluation"]["model_chunk"]
    m = len(ensemble["model_indices"])
    out: dict[str, Any] = {"method": ensemble["method"], "ensemble": ensemble["fingerprint"], "sigma": sigma["fingerprint"]}
    on_ray = parameters["evaluation"].get("backend", "local") == "ray"
    with progress_bar(2 * m, f"{ensemble['method']}: votes (models x test sets)") as bar:
        for split, data in (("clean", clean_test), ("triggered", triggered_test)):
            if on_ray:  # shards of models as Ray tasks, with the ensemble.ray options
                from certssb.core.ray_backend import predict_votes_ray

                out[split] = predict_votes_ray(ensemble, data["x"], sigma[split], noise_plan, split,
                                               options=parameters["ensemble"].get("ray"), model_chunk=chunk,
                                               progress=bar.update)
            else:
                out[split] = predict_votes(ensemble, data["x"], sigma[split], noise_plan, split, device=dev,
                                           model_chunk=chunk, progress=bar.update)
    return out


def certify_samples(
    votes: dict[str, Any], clean_test: dict[str, Any], triggered_test: dict[str, Any], sigma: dict[str, Any],
    parameters: dict[str, Any],
) -> pd.DataFrame:
    """The certificate table of both test sets (one row per sample and split).

    ``sigma_min`` per sample is ``min(sigma_x, min over ALL training sigma_i)`` (the attacker may touch any
    training point), so ``radius = sigma_min * r1`` is the sound l2 radius and ``radius_published =
    sigma_x * r1`` is Cert-SSB as published (certssb.core.certify).
    """
    _same("votes vs sigma", votes["sigma"], sigma["fingerprint"])
    e = parameters["evaluation"]
    min_train = float(sigma["train"].min())
    frames = []
    for split, data in (("clean", clean_test), ("triggered", triggered_test)):
        s = sigma[split].numpy()
        df = certify.certify(
            votes[split]["votes"].numpy(), votes[split]["probs"].numpy(), s, labels=data["y"].numpy(),
            num_classes=data["num_classes"], bound=e["bound"], aggregation=e["aggregation"], alpha=e["alpha"],
            selection=e["selection"], n0=e["n0"], alpha_split=e["alpha_split"], sigma_min=np.minimum(s, min_train),
        )
        df.insert(0, "split", split)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "method", votes["method"])
    return out


def _acc_by_radius(certs: pd.DataFrame, radii: list[float]) -> dict[str, float]:
    ca = metrics.certified_accuracy(certs, radii)["certified_accuracy"].round(4).tolist()
    return {metrics.radius_key(r): v for r, v in zip(radii, ca)}


def storage_update(
    certificates: pd.DataFrame, clean_test: dict[str, Any], triggered_test: dict[str, Any], parameters: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cert-SSB's storage update over ONE memory for the clean and triggered inputs, on the sound ``radius``.

    The two test sets are concatenated (clean first), processed in one seeded order
    (``evaluation.storage_order_seed``) with ``evaluation.storage_rule`` (trim | paper), and split back.
    The report records the rule, the order and, per split and overall, what changed. The updated table
    drops ``radius_published`` (the update did not run on it); ``r1`` stays the certificate's own R1.
    """
    e = parameters["evaluation"]
    seed, rule, radii = e["storage_order_seed"], e.get("storage_rule", "trim"), e["radii"]
    before = certificates.reset_index(drop=True)
    parts = {split: np.flatnonzero(before["split"].to_numpy() == split) for split in SPLITS}
    order_rows = np.concatenate([parts[s] for s in SPLITS])  # clean rows, then triggered rows
    before = before.iloc[order_rows].reset_index(drop=True)
    x_all = torch.cat([clean_test["x"], triggered_test["x"]]).flatten(1)
    if x_all.shape[0] != len(before):
        raise ConfigError(f"the certificate table has {len(before)} rows but the test sets have {x_all.shape[0]} "
                          "inputs: they come from different runs")
    res = storage.storage_update(x_all, before["prediction"].to_numpy(), before["radius"].to_numpy(), rule=rule,
                                 seed=seed)
    after = before.copy()
    after["prediction"], after["radius"], after["action"] = res.prediction, res.radius, res.action
    after["abstained"] = after["prediction"] == certify.ABSTAIN
    after["correct"] = after["prediction"] == after["label"]
    # the update ran on the sound radius; the published radius of the input table says nothing after it
    after = after.drop(columns=["radius_published"])
    report: dict[str, Any] = {"order_seed": seed, "rule": rule, "memory": "one memory over clean + triggered inputs",
                              "radius": "radius (sound)", "abstained": "skipped, never stored",
                              "order": res.order.tolist()}
    n_clean = len(parts["clean"])
    for split, rows in (("clean", slice(0, n_clean)), ("triggered", slice(n_clean, None)), ("all", slice(None))):
        b, a = before.iloc[rows], after.iloc[rows]
        xs = x_all[rows]
        report[split] = {
            **{k: int(np.sum(a["action"].to_numpy() == k)) for k in storage.ACTIONS},
            "overlapping_pairs_before": int(storage.overlapping_pairs(xs, b["prediction"].to_numpy(),
                                                                      b["radius"].to_numpy())),
            "overlapping_pairs_after": int(storage.overlapping_pairs(xs, a["prediction"].to_numpy(),
                                                                     a["radius"].to_numpy())),
            "certified_accuracy_before": _acc_by_radius(b, radii),
            "certified_accuracy_after": _acc_by_radius(a, radii),
        }
    log.info("storage update (rule %s, one memory): %s; overlapping pairs %d -> %d", rule, res.summary(),
             report["all"]["overlapping_pairs_before"], report["all"]["overlapping_pairs_after"])
    return after, report


def evaluate_undefended(undefended_model: dict[str, Any], clean_test: dict[str, Any], triggered_test: dict[str, Any],
                        parameters: dict[str, Any]) -> dict[str, Any]:
    """Clean accuracy and attack success rate of the undefended model (no noise in training or test)."""
    dev = resolve_device(parameters["device"])
    net = load_member(undefended_model["architecture"], undefended_model["in_shape"], undefended_model["num_classes"],
                      undefended_model["params"], 0, dev)
    with torch.no_grad():
        pc = net(clean_test["x"].to(dev)).argmax(1).cpu().numpy()
        pt = net(triggered_test["x"].to(dev)).argmax(1).cpu().numpy()
    out = {"clean_accuracy": metrics.clean_accuracy(pc, clean_test["y"].numpy()),
           "triggered_accuracy": metrics.clean_accuracy(pt, triggered_test["y"].numpy())}
    out["attack_success_rate"] = _attack_success_rate(pt, triggered_test)
    log.info("undefended model: %s", out)
    return out


def _attack_success_rate(pred: np.ndarray, triggered_test: dict[str, Any]) -> float | None:
    """ASR on the triggered set; None for attacks without a target class (the certifier attacks)."""
    tgt = triggered_test["target_y"].numpy()
    return metrics.attack_success_rate(pred, tgt) if len(tgt) and (tgt >= 0).all() else None


def _curve(table: pd.DataFrame, split: str, region: str) -> np.ndarray:
    """Certified accuracy at each radius of one (split, region) of the table, in radius order."""
    return table[(table.split == split) & (table.region == region)]["certified_accuracy"].to_numpy()


def _member_accuracy(votes: dict[str, Any], data: dict[str, Any]) -> np.ndarray:
    """Per model, the mean over samples of the fraction of its draws that predict the true label."""
    f = certify.vote_fractions(votes["votes"].numpy(), data["num_classes"])
    y = data["y"].numpy()
    return f[:, np.arange(len(y)), y].mean(1)


PUBLISHED = "Cert-SSB as published (not a poisoning certificate)"
OUTSIDE = "outside the certified threat model"


def _attack_metrics(certificates: pd.DataFrame, triggered_test: dict[str, Any], sigma: dict[str, Any],
                    poison_summary: dict[str, Any], radii: list[float]) -> dict[str, Any]:
    """What the certificates say about the realised attack (ALGORITHMS.md §0).

    Label-preserving feature attacks: the fraction of clean test samples with a triggered version whose
    certificate covers the attack, ``r1_j > ||Delta||_Sigma,j``. Dirty-label or inserting attacks: their
    feature norm, label changes and insertions, marked outside the threat model, and no fraction.
    """
    out: dict[str, Any] = {"attack_joint_norm": float(poison_summary["joint_norm"])}
    if "train_poisoned_index" not in poison_summary:
        raise ConfigError("poison_summary lacks 'train_poisoned_index' (written before the threat-model fields "
                          "existed); rerun the data_engineering pipeline")
    out["attack_feature_norm"] = float(poison_summary["feature_norm"])
    out["attack_label_changes"] = int(poison_summary["label_changes"])
    out["attack_inserted"] = int(poison_summary["inserted"])
    inside = bool(poison_summary["in_threat_model"])
    out["attack_in_threat_model"] = inside
    if not inside:
        out["attack_threat_model"] = OUTSIDE
        return out
    out["attack_threat_model"] = "inside the certified threat model (label-preserving feature perturbation)"
    idx = torch.as_tensor(poison_summary["train_poisoned_index"], dtype=torch.long)
    src = triggered_test["source_index"].numpy()
    clean = certificates[certificates["split"] == "clean"].reset_index(drop=True)
    if len(src) == 0:
        return out
    weighted = metrics.weighted_attack_norm(
        poison_summary["train_poisoned_norms"], sigma["train"][idx].numpy(), triggered_test["norms"].numpy(),
        sigma["clean"].numpy()[src])
    out["attack_weighted_norm_max"] = float(weighted.max())
    out["attack_weighted_norm_mean"] = float(weighted.mean())
    out["attack_smallest_radius_covering"] = metrics.smallest_radius_covering(out["attack_joint_norm"], radii)
    out["fraction_certified_against_attack"] = metrics.fraction_certified_against(clean.iloc[src], weighted)
    return out


def compute_metrics(
    certificates: pd.DataFrame, certificates_updated: pd.DataFrame, votes: dict[str, Any],
    clean_test: dict[str, Any], triggered_test: dict[str, Any], sigma: dict[str, Any], poison_summary: dict[str, Any],
    undefended_metrics: dict[str, Any], parameters: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Certified accuracy table (split x region x radius, on the sound ``radius``) and the run's summary
    metrics; the published-radius metrics (``*_published*``) sit beside them, labelled as such."""
    e = parameters["evaluation"]
    radii = e["radii"]
    method = votes["method"]
    rows = []
    for region, certs in (("certified", certificates), ("storage_updated", certificates_updated)):
        for split in SPLITS:
            t = metrics.certified_accuracy(certs[certs["split"] == split], radii)
            t.insert(0, "region", region)
            t.insert(0, "split", split)
            t.insert(0, "method", method)
            rows.append(t)
    table = pd.concat(rows, ignore_index=True)
    c = clean_test["num_classes"]
    m: dict[str, Any] = {"method": method, "radius": "sound: sigma_min * r1 (certssb.core.certify)",
                         "radius_published": PUBLISHED}
    for split, data in (("clean", clean_test), ("triggered", triggered_test)):
        certs = certificates[certificates["split"] == split]
        pred = certify.smoothed_prediction(votes[split]["votes"].numpy(), c)
        pre = "" if split == "clean" else "triggered_"
        m[f"{split}_accuracy"] = metrics.clean_accuracy(pred, data["y"].numpy())
        m[f"{pre}abstain_rate"] = metrics.abstain_rate(certs)
        m[f"{pre}mean_radius"] = metrics.mean_radius(certs)
        m[f"{pre}mean_radius_published"] = metrics.mean_radius(certs, radius_column="radius_published")
        key = "cert_acc" if split == "clean" else "cert_acc_trig"
        for r, v in zip(radii, _curve(table, split, "certified")):
            m[f"{key}_{metrics.radius_key(r)}"] = float(v)
        pub = metrics.certified_accuracy(certs, radii, radius_column="radius_published")["certified_accuracy"]
        for r, v in zip(radii, pub):
            m[f"{key}_published_{metrics.radius_key(r)}"] = float(v)
        acc = _member_accuracy(votes[split], data)
        m[f"{pre}member_accuracy_min"] = float(acc.min())
        m[f"{pre}member_accuracy_mean"] = float(acc.mean())
        if split == "clean":
            prior = np.bincount(data["y"].numpy(), minlength=c) / len(data["y"])
            flags = metrics.degenerate_members(acc, prior, e["degenerate_margin"])
            m["degenerate_members"] = [int(k) for k in np.flatnonzero(flags)]
            if flags.any():
                log.warning("%s: %d degenerate ensemble members (accuracy near the class prior): %s", method,
                            int(flags.sum()), m["degenerate_members"])
        else:
            m["attack_success_rate"] = _attack_success_rate(pred, data)
    for r, d in zip(radii, _curve(table, "clean", "certified") - _curve(table, "triggered", "certified")):
        m[f"cert_acc_drop_pp_{metrics.radius_key(r)}"] = float(100 * d)
    m.update(_attack_metrics(certificates, triggered_test, sigma, poison_summary, radii))
    n_est = int(certificates["n_estimation"].iloc[0])
    m["radius_ceiling_sigma_units"] = certify.radius_ceiling(n_est, e["alpha"], e["bound"], e["alpha_split"])
    m["sigma_train_mean"] = float(sigma["train"].mean())
    m["sigma_train_min"] = float(sigma["train"].min())
    m["sigma_clean_mean"] = float(sigma["clean"].mean())
    m["undefended_clean_accuracy"] = undefended_metrics["clean_accuracy"]
    m["undefended_attack_success_rate"] = undefended_metrics["attack_success_rate"]
    for split in SPLITS:
        pre = "" if split == "clean" else "trig_"
        for r, v in zip(radii, _curve(table, split, "storage_updated")):
            m[f"cert_acc_{pre}updated_{metrics.radius_key(r)}"] = float(v)
    k050 = metrics.radius_key(0.5)
    log.info("%s: clean accuracy %.3f, ASR %s, cert acc @0.5 %.3f (triggered %.3f; published %.3f), abstain %.3f; "
             "attack %s", method, m["clean_accuracy"], m["attack_success_rate"], m.get(f"cert_acc_{k050}", float("nan")),
             m.get(f"cert_acc_trig_{k050}", float("nan")), m.get(f"cert_acc_published_{k050}", float("nan")),
             m["abstain_rate"], m["attack_threat_model"])
    return table, m


def _ceiling(metrics_: dict[str, Any]) -> float | None:
    c = metrics_.get("radius_ceiling_sigma_units")
    return None if c is None else float(c)


def make_plots(certificates: pd.DataFrame, certificates_updated: pd.DataFrame, sigma: dict[str, Any],
               metrics_: dict[str, Any], parameters: dict[str, Any]) -> tuple[Figure, Figure, Figure]:
    """Certified accuracy vs radius (exact step curves, clean | triggered), σ histogram, radius before/after
    the storage update (clean and triggered inputs share one memory)."""
    method = metrics_["method"]
    sigma0 = parameters["noise"]["sigma"]
    name = reporting.method_label(method, sigma0)
    ca = reporting.certified_accuracy_figure(
        certificates, updated=certificates_updated, sigma0=sigma0, ceiling=_ceiling(metrics_),
        attack_norm=metrics_.get("attack_joint_norm"),
        title=reporting.run_title(f"{name}: certified accuracy", parameters))
    hist = reporting.sigma_histogram(sigma, f"{name}: σ per sample")
    ba = reporting.radius_before_after(certificates, certificates_updated,
                                       f"{name}: storage update (clean and triggered test sets)")
    return ca, hist, ba


def compare_methods(parameters: dict[str, Any], *per_method: Any) -> tuple[pd.DataFrame, Figure]:
    """Both methods side by side: one table and one figure of the exact certified-accuracy curves.

    ``per_method`` is (certified_accuracy, certificates, metrics) for each method in turn.
    """
    tables, certs, metrics_ = per_method[0::3], per_method[1::3], per_method[2::3]
    table = pd.concat(tables, ignore_index=True)
    sigma0 = parameters["noise"]["sigma"]
    fig = reporting.certified_accuracy_figure(
        pd.concat(certs, ignore_index=True), sigma0=sigma0,
        ceiling={m["method"]: _ceiling(m) for m in metrics_ if _ceiling(m) is not None},
        attack_norm=metrics_[0].get("attack_joint_norm") if metrics_ else None,
        title=reporting.run_title("certified accuracy: uniform σ vs Cert-SSB", parameters))
    return table, fig


RUN_PARAMS = {
    "dataset": ("data", "dataset"), "classes": ("data", "classes"), "attack": ("attack", "name"),
    "trigger": ("attack", "trigger"), "delta": ("attack", "delta"), "poison_rate": ("attack", "poison_rate"),
    "sigma": ("noise", "sigma"), "M": ("noise", "num_models"), "K": ("noise", "num_draws"),
    "architecture": ("model", "architecture"), "epochs": ("model", "epochs"), "bound": ("evaluation", "bound"),
    "alpha": ("evaluation", "alpha"), "aggregation": ("evaluation", "aggregation"),
    "selection": ("evaluation", "selection"), "n0": ("evaluation", "n0"), "sigma_gradient": ("sigma_opt", "gradient"),
    "sigma_steps": ("sigma_opt", "steps"), "sigma_draws": ("sigma_opt", "draws"), "seed": ("seed",),
}


def run_params(parameters: dict[str, Any], method: str) -> dict[str, Any]:
    out: dict[str, Any] = {"method": method}
    for name, path in RUN_PARAMS.items():
        cur: Any = parameters
        for k in path:
            cur = cur.get(k) if isinstance(cur, dict) else None
        out[name] = cur
    return out


def log_mlflow_runs(parameters: dict[str, Any], *per_method: Any, name_suffix: str = "") -> dict[str, Any]:
    """One nested MLflow run per method (params, metrics, tables, plots) under the kedro-mlflow run.

    ``per_method`` is (metrics, certified_accuracy) for each method in turn.
    """
    import mlflow

    runs = {}
    parent = mlflow.active_run()
    for metrics_, table in zip(per_method[0::2], per_method[1::2]):
        method = metrics_["method"]
        with mlflow.start_run(run_name=method + name_suffix, nested=parent is not None) as run:
            mlflow.set_tags({"certssb.method": method, "certssb.attack": parameters["attack"]["name"],
                             "certssb.sigma": str(parameters["noise"]["sigma"])})
            mlflow.log_params(run_params(parameters, method))
            mlflow.log_metrics({k: float(v) for k, v in metrics_.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None})
            mlflow.log_text(table.to_csv(index=False), "certified_accuracy.csv")
            mlflow.log_dict(metrics_, "metrics.json")
            # the figures (exact step curves from the certificates) reach MLflow via MlflowArtifactsHook
            runs[method] = run.info.run_id
    return {"parent_run_id": parent.info.run_id if parent else None, "runs": runs}
