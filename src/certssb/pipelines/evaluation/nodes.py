"""Thin nodes of the evaluation pipeline: votes -> certificates -> storage update -> metrics, plots, MLflow."""
from __future__ import annotations

import logging
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from certssb import reporting, tracking
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
    """The certificate table of both test sets (one row per sample and split)."""
    _same("votes vs sigma", votes["sigma"], sigma["fingerprint"])
    e = parameters["evaluation"]
    floor_train = float(sigma["train"].min())
    frames = []
    for split, data in (("clean", clean_test), ("triggered", triggered_test)):
        s = sigma[split].numpy()
        df = certify.certify(
            votes[split]["votes"].numpy(), votes[split]["probs"].numpy(), s, labels=data["y"].numpy(),
            num_classes=data["num_classes"], bound=e["bound"], aggregation=e["aggregation"], alpha=e["alpha"],
            selection=e["selection"], n0=e["n0"], alpha_split=e["alpha_split"], sigma_floor=np.minimum(s, floor_train),
        )
        df.insert(0, "split", split)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "method", votes["method"])
    return out


def storage_update(
    certificates: pd.DataFrame, clean_test: dict[str, Any], triggered_test: dict[str, Any], parameters: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cert-SSB's storage update per test set; the report records the order used and what changed."""
    seed = parameters["evaluation"]["storage_order_seed"]
    radii = parameters["evaluation"]["radii"]
    frames, report = [], {"order_seed": seed, "rule": "memory-based (ALGORITHMS.md §5)"}
    for split, data in (("clean", clean_test), ("triggered", triggered_test)):
        before = certificates[certificates["split"] == split].reset_index(drop=True)
        res = storage.storage_update(data["x"], before["prediction"].to_numpy(), before["radius"].to_numpy(), seed=seed)
        after = before.copy()
        after["prediction"], after["radius"], after["action"] = res.prediction, res.radius, res.action
        after["abstained"] = after["prediction"] == certify.ABSTAIN
        after["correct"] = after["prediction"] == after["label"]
        after["conservative_radius"] = np.minimum(after["conservative_radius"], after["radius"])
        frames.append(after)
        ca_b = metrics.certified_accuracy(before, radii)
        ca_a = metrics.certified_accuracy(after, radii)
        report[split] = {
            **{k: int(v) for k, v in res.summary().items() if k != "order_seed"},
            "overlapping_pairs_before": int(storage.overlapping_pairs(data["x"], before["prediction"].to_numpy(),
                                                                      before["radius"].to_numpy())),
            "overlapping_pairs_after": int(storage.overlapping_pairs(data["x"], res.prediction, res.radius)),
            "certified_accuracy_before": dict(zip(map(str, radii), ca_b["certified_accuracy"].round(4).tolist())),
            "certified_accuracy_after": dict(zip(map(str, radii), ca_a["certified_accuracy"].round(4).tolist())),
            "order": res.order.tolist(),
        }
        log.info("storage update (%s): %s; overlapping pairs %d -> %d", split, res.summary(),
                 report[split]["overlapping_pairs_before"], report[split]["overlapping_pairs_after"])
    return pd.concat(frames, ignore_index=True), report


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
    return (votes["votes"].numpy() == data["y"].numpy()[None, :]).mean(1)


def compute_metrics(
    certificates: pd.DataFrame, certificates_updated: pd.DataFrame, votes: dict[str, Any],
    clean_test: dict[str, Any], triggered_test: dict[str, Any], sigma: dict[str, Any], poison_summary: dict[str, Any],
    undefended_metrics: dict[str, Any], parameters: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Certified accuracy table (split x region x radius) and the run's summary metrics."""
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
    m: dict[str, Any] = {"method": method}
    for split, data in (("clean", clean_test), ("triggered", triggered_test)):
        certs = certificates[certificates["split"] == split]
        pred = certify.smoothed_prediction(votes[split]["votes"].numpy(), c)
        pre = "" if split == "clean" else "triggered_"
        m[f"{pre}accuracy"] = metrics.clean_accuracy(pred, data["y"].numpy())
        m[f"{pre}abstain_rate"] = metrics.abstain_rate(certs)
        m[f"{pre}mean_radius"] = metrics.mean_radius(certs)
        m[f"{pre}mean_conservative_radius"] = metrics.mean_radius(certs, radius_column="conservative_radius")
        for r, v in zip(radii, _curve(table, split, "certified")):
            m[f"{'cert_acc' if split == 'clean' else 'cert_acc_trig'}_r{r:.2f}"] = float(v)
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
            m["clean_accuracy"] = m["accuracy"]
        else:
            m["attack_success_rate"] = _attack_success_rate(pred, data)
    for r, d in zip(radii, _curve(table, "clean", "certified") - _curve(table, "triggered", "certified")):
        m[f"cert_acc_drop_pp_r{r:.2f}"] = float(100 * d)
    norm = float(poison_summary["joint_norm"])
    m["attack_joint_norm"] = norm
    m["attack_smallest_radius_covering"] = metrics.smallest_radius_covering(norm, radii)
    m["fraction_certified_against_attack"] = metrics.fraction_certified_against(
        certificates[certificates["split"] == "clean"], norm)
    n_est = int(certificates["n_estimation"].iloc[0])
    m["radius_ceiling_sigma_units"] = certify.radius_ceiling(n_est, e["alpha"], e["bound"], e["alpha_split"])
    m["sigma_train_mean"] = float(sigma["train"].mean())
    m["sigma_clean_mean"] = float(sigma["clean"].mean())
    m["undefended_clean_accuracy"] = undefended_metrics["clean_accuracy"]
    m["undefended_attack_success_rate"] = undefended_metrics["attack_success_rate"]
    for split in SPLITS:
        pre = "" if split == "clean" else "trig_"
        for r, v in zip(radii, _curve(table, split, "storage_updated")):
            m[f"cert_acc_{pre}updated_r{r:.2f}"] = float(v)
    log.info("%s: clean accuracy %.3f, ASR %s, cert acc @0.5 %.3f (triggered %.3f), abstain %.3f", method,
             m["clean_accuracy"], m["attack_success_rate"], m.get("cert_acc_r0.50", float("nan")),
             m.get("cert_acc_trig_r0.50", float("nan")), m["abstain_rate"])
    return table, m


def make_plots(certified_accuracy: pd.DataFrame, certificates: pd.DataFrame, certificates_updated: pd.DataFrame,
               sigma: dict[str, Any], metrics_: dict[str, Any]) -> tuple[plt.Figure, plt.Figure, plt.Figure]:
    """Certified accuracy vs radius (clean and triggered), sigma histogram, radius before/after the update."""
    method = metrics_["method"]
    ca = reporting.certified_accuracy_figure(certified_accuracy, f"{method}: certified accuracy",
                                             metrics_["attack_joint_norm"])
    hist = reporting.sigma_histogram(sigma, f"{method}: σ per sample")
    clean = certificates["split"] == "clean"
    ba = reporting.radius_before_after(certificates[clean], certificates_updated[clean],
                                       f"{method}: storage update (clean test set)")
    return ca, hist, ba


def compare_methods(*tables: pd.DataFrame) -> tuple[pd.DataFrame, plt.Figure]:
    """Both methods side by side: one table and one figure."""
    table = pd.concat(tables, ignore_index=True)
    fig = reporting.certified_accuracy_figure(table[table.region == "certified"], "certified accuracy: uniform σ vs Cert-SSB")
    return table, fig


def log_mlflow_runs(noise: dict[str, Any], attack: dict[str, Any], *per_method: Any, name_suffix: str = "") -> dict[str, Any]:
    """One nested MLflow run per method, named ``<method>``, under the kedro-mlflow run (certssb.tracking).

    ``per_method`` is (metrics, certified_accuracy, sigma) for each method in turn. The nested run logs the
    params ``method`` and ``sigma0`` (the parent holds every parameter block, once), the metrics with
    dot-free names and the method's sigma statistics (``sigma_{train,test}_{mean,min,max}``).
    """
    import mlflow

    runs = {}
    parent = mlflow.active_run()
    tags = {"certssb.attack": str(attack["name"]), "certssb.sigma0": f"{noise['sigma']:g}"}
    for metrics_, table, sigma in zip(per_method[0::3], per_method[1::3], per_method[2::3]):
        method = metrics_["method"]
        runs[method] = tracking.log_method_run(method, metrics_, table, sigma, sigma0=noise["sigma"], tags=tags,
                                               name_suffix=name_suffix)
    return {"parent_run_id": parent.info.run_id if parent else None,
            "parent_run_name": parent.info.run_name if parent else None, "runs": runs}
