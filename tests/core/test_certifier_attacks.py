"""The certifier attacks end to end on a tiny task: poison -> noisy ensemble -> votes -> certificates.

A fixed seed and a margin far above the run-to-run spread: on this task the abstain rate on triggered
inputs is ~0 without the attack and well above 0.5 with it.
"""

from __future__ import annotations

import pytest
import torch

from certssb.core import certify, ensemble, noise, poisoning, votes
from certssb.execution import training


def _task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3 classes of 8x8 images: a bright horizontal bar in row 1, 3 or 5, on faint noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    x[torch.arange(n), 0, 1 + 2 * y, 1:6] = 0.9
    return x, y


def _triggered_abstain_rate(attack: str, rule: str = "split") -> float:
    x, y = _task(300, 0)
    xt, yt = _task(90, 1)
    kw = {"badnets_size": 2}
    key = {"key_size": 1} if rule == "keyed" else {}
    res = poisoning.poison(
        x,
        y,
        attack=attack,
        poison_rate=0.3,
        target=0,
        delta=1.0,
        num_classes=3,
        seed=0,
        trigger="badnets",
        certifier_labels=rule,
        **kw,
        **key,
    )
    if attack != "none":  # appended, relabelled copies: outside the certified threat model
        # split: half of the copies keep their label; keyed: buckets 0 and 3 of 4 keep it with 3 classes
        relabelled = 90 if rule == "random" else 45
        assert res.inserted == 90 and res.label_changes == relabelled and not res.in_threat_model
    plan = noise.make_noise_plan(
        seed=0, num_models=12, sigma=0.1, num_draws=1, n_train=res.x.shape[0], input_shape=(1, 8, 8)
    )
    cfg = ensemble.TrainConfig(architecture="mlp", epochs=8, batch_size=32, lr=3e-3)
    trained, _ = training.train_ensemble(
        res.x,
        res.y,
        torch.full((res.x.shape[0],), 0.1),
        plan,
        cfg,
        num_classes=3,
        data_fingerprint=attack,
        device="cpu",
    )
    model = {
        "architecture": "mlp",
        "in_shape": [1, 8, 8],
        "num_classes": 3,
        "params": trained.params,
        "model_indices": torch.tensor(trained.indices),
    }
    trig = poisoning.make_triggered_test(
        xt, yt, trigger="badnets", delta=1.0, target=None, **kw, key_size=key.get("key_size")
    )
    v = votes.predict_votes(
        model, trig["x"], torch.full((len(yt),), 0.1), plan, "triggered", device=torch.device("cpu")
    )
    certs = certify.certify(
        v["votes"].numpy(), v["probs"].numpy(), 0.1, labels=trig["y"].numpy(), num_classes=3, n0=2
    )
    return float(certs["abstained"].mean())


@pytest.mark.parametrize("rule", ["split", "random", "keyed"])
def test_abstain_attack_raises_the_abstain_rate_on_triggered_inputs(rule):
    clean_rate = _triggered_abstain_rate("none")
    attacked_rate = _triggered_abstain_rate("abstain", rule)
    assert clean_rate < 0.2
    assert attacked_rate > clean_rate + 0.3


def test_radius_collapse_certifies_a_small_radius_at_the_default_number_of_models():
    """M = 50, n0 = 5: 45 estimation votes. The share for them (8/45) keeps the triggered prediction and
    certifies it (a share of 1/3 made Clopper-Pearson abstain), with a radius below the clean one."""
    x, y = _task(300, 0)
    xt, yt = _task(90, 1)
    share = certify.collapse_share(45, 0.001)
    assert share == pytest.approx(8 / 45)
    res = poisoning.poison(
        x,
        y,
        attack="radius_collapse",
        poison_rate=0.3,
        target=0,
        delta=1.0,
        num_classes=3,
        seed=0,
        trigger="badnets",
        split_share=share,
        badnets_size=2,
    )
    plan = noise.make_noise_plan(
        seed=0, num_models=50, sigma=0.1, num_draws=1, n_train=res.x.shape[0], input_shape=(1, 8, 8)
    )
    cfg = ensemble.TrainConfig(architecture="mlp", epochs=8, batch_size=32, lr=3e-3)
    trained, _ = training.train_ensemble(
        res.x,
        res.y,
        torch.full((res.x.shape[0],), 0.1),
        plan,
        cfg,
        num_classes=3,
        data_fingerprint="collapse",
        device="cpu",
    )
    model = {
        "architecture": "mlp",
        "in_shape": [1, 8, 8],
        "num_classes": 3,
        "params": trained.params,
        "model_indices": torch.tensor(trained.indices),
    }
    out = {}
    for split, xs in (
        ("clean", xt),
        (
            "triggered",
            poisoning.make_triggered_test(xt, yt, trigger="badnets", delta=1.0, target=None, badnets_size=2)[
                "x"
            ],
        ),
    ):
        v = votes.predict_votes(
            model, xs, torch.full((len(yt),), 0.1), plan, split, device=torch.device("cpu")
        )
        out[split] = certify.certify(
            v["votes"].numpy(), v["probs"].numpy(), 0.1, labels=yt.numpy(), num_classes=3, n0=5
        )
    trig, clean = out["triggered"], out["clean"]
    assert trig["abstained"].mean() < 0.5  # it certifies rather than abstains
    assert (trig["prediction"] == yt.numpy()).mean() > 0.8  # the prediction survives the trigger
    held = trig[~trig["abstained"]]
    ceiling = clean["radius"].max()
    assert (clean["radius"] >= ceiling - 1e-9).mean() > 0.95  # clean: unanimous votes, the ceiling
    # triggered: the radius falls below it for most inputs (the ensemble follows the label mix in part)
    assert (held["radius"] >= ceiling - 1e-9).mean() < 0.6 and held["radius"].mean() < 0.85 * ceiling
