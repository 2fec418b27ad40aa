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


SIGMA = 0.1


def _poisoned(attack: str, **kw) -> poisoning.PoisonResult:
    x, y = _task(300, 0)
    return poisoning.poison(
        x, y, attack=attack, poison_rate=0.3, target=0, delta=1.0, num_classes=3, seed=0, trigger="badnets",
        badnets_size=2, **kw,
    )  # fmt: skip


def _ensemble(res: poisoning.PoisonResult, num_models: int, tag: str) -> tuple[dict, dict]:
    """``num_models`` MLPs trained on the poisoned set (sigma 0.1): the model artifact and its noise plan."""
    n = res.x.shape[0]
    plan = noise.make_noise_plan(
        seed=0, num_models=num_models, sigma=SIGMA, num_draws=1, n_train=n, input_shape=(1, 8, 8)
    )
    cfg = ensemble.TrainConfig(architecture="mlp", epochs=8, batch_size=32, lr=3e-3)
    trained, _ = training.train_ensemble(
        res.x, res.y, torch.full((n,), SIGMA), plan, cfg, num_classes=3, data_fingerprint=tag, device="cpu"
    )
    model = {"architecture": "mlp", "in_shape": [1, 8, 8], "num_classes": 3, "params": trained.params,
             "model_indices": torch.tensor(trained.indices)}  # fmt: skip
    return model, plan


def _certify(model: dict, plan: dict, x: torch.Tensor, y: torch.Tensor, split: str, n0: int):
    v = votes.predict_votes(model, x, torch.full((len(y),), SIGMA), plan, split, device=torch.device("cpu"))
    return certify.certify(
        v["votes"].numpy(), v["probs"].numpy(), SIGMA, labels=y.numpy(), num_classes=3, n0=n0
    )


def _triggered_abstain_rate(attack: str, rule: str = "split") -> float:
    xt, yt = _task(90, 1)
    key = {"key_size": 1} if rule == "keyed" else {}
    res = _poisoned(attack, certifier_labels=rule, **key)
    if attack != "none":  # appended, relabelled copies: outside the certified threat model
        # split: half of the copies keep their label; keyed: buckets 0 and 3 of 4 keep it with 3 classes
        relabelled = 90 if rule == "random" else 45
        assert res.inserted == 90 and res.label_changes == relabelled and not res.in_threat_model
    model, plan = _ensemble(res, 12, attack)
    trig = poisoning.make_triggered_test(
        xt, yt, trigger="badnets", delta=1.0, target=None, badnets_size=2, key_size=key.get("key_size")
    )
    return float(_certify(model, plan, trig["x"], trig["y"], "triggered", n0=2)["abstained"].mean())


@pytest.mark.parametrize("rule", ["split", "random", "keyed"])
def test_abstain_attack_raises_the_abstain_rate_on_triggered_inputs(rule):
    clean_rate = _triggered_abstain_rate("none")
    attacked_rate = _triggered_abstain_rate("abstain", rule)
    assert clean_rate < 0.2
    assert attacked_rate > clean_rate + 0.3


def test_radius_collapse_certifies_a_small_radius_at_the_default_number_of_models():
    """M = 50, n0 = 5: 45 estimation votes. The share for them (8/45) keeps the triggered prediction and
    certifies it (a share of 1/3 made Clopper-Pearson abstain), with a radius below the clean one."""
    xt, yt = _task(90, 1)
    share = certify.collapse_share(45, 0.001)
    assert share == pytest.approx(8 / 45)
    model, plan = _ensemble(_poisoned("radius_collapse", split_share=share), 50, "collapse")
    xtrig = poisoning.make_triggered_test(xt, yt, trigger="badnets", delta=1.0, target=None, badnets_size=2)[
        "x"
    ]
    clean = _certify(model, plan, xt, yt, "clean", n0=5)
    trig = _certify(model, plan, xtrig, yt, "triggered", n0=5)
    assert trig["abstained"].mean() < 0.5  # it certifies rather than abstains
    assert (trig["prediction"] == yt.numpy()).mean() > 0.8  # the prediction survives the trigger
    held = trig[~trig["abstained"]]
    ceiling = clean["radius"].max()
    assert (clean["radius"] >= ceiling - 1e-9).mean() > 0.95  # clean: unanimous votes, the ceiling
    # triggered: the radius falls below it for most inputs (the ensemble follows the label mix in part)
    assert (held["radius"] >= ceiling - 1e-9).mean() < 0.6 and held["radius"].mean() < 0.85 * ceiling
