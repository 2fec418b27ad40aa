"""Tests for certssb.core.poisoning: poisoning (dirty and clean label), joint norms and certifier attacks
(the triggers themselves: tests/core/test_triggers.py)."""

from __future__ import annotations

import math

import pytest
import torch

from certssb.core.poisoning import (
    ATTACKS,
    CERTIFIER_ATTACKS,
    CERTIFIER_LABELS,
    KEY_BUCKETS,
    LABEL_MODES,
    SPLIT_SHARE,
    PoisonResult,
    attack_trigger,
    class_mean_scores,
    make_triggered_test,
    poison,
    poison_count,
)
from certssb.core.triggers import (
    TRIGGER_FUNCTIONS,
    TRIGGERS,
    apply_trigger,
)
from certssb.core.validation import ConfigError

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)
_DEFAULTS = {"target": 0, "delta": 1.0, "num_classes": 10, "seed": 0}


def _data(n: int = 200, shape: tuple[int, int, int] = MNIST, num_classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g)
    y = torch.arange(n) % num_classes  # balanced, every class present
    y = y[torch.randperm(n, generator=g)]
    return x, y


def _poison(x: torch.Tensor, y: torch.Tensor, attack: str, poison_rate: float, **kw) -> PoisonResult:
    """``poison`` with the tests' usual target 0, delta 1, 10 classes and seed 0 (each may be overridden)."""
    return poison(x, y, attack=attack, poison_rate=poison_rate, **{**_DEFAULTS, **kw})


# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------


def test_name_tuples():
    assert TRIGGERS == ("onepixel", "fourpixel", "blending", "badnets", "blended_injection")
    assert tuple(TRIGGER_FUNCTIONS) == TRIGGERS and all(callable(f) for f in TRIGGER_FUNCTIONS.values())
    assert LABEL_MODES == ("dirty", "clean")
    assert CERTIFIER_ATTACKS == ("abstain", "radius_collapse")
    assert ATTACKS == ("none",) + TRIGGERS + CERTIFIER_ATTACKS


def test_attack_trigger():
    assert attack_trigger("none", "onepixel") is None
    for t in TRIGGERS:
        assert attack_trigger(t, "blending") == t
    assert attack_trigger("abstain", "fourpixel") == "fourpixel"
    assert attack_trigger("radius_collapse", "badnets") == "badnets"
    with pytest.raises(ConfigError, match="parameter 'attack' = 'nope'"):
        attack_trigger("nope", "onepixel")
    with pytest.raises(ConfigError, match="parameter 'trigger' = 'nope'"):
        attack_trigger("abstain", "nope")


# ---------------------------------------------------------------------------------------------
# backdoor poisoning
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_backdoor_poison_in_place(trigger):
    x, y = _data(200)
    x0, y0 = x.clone(), y.clone()
    res = _poison(x, y, trigger, 0.1, seed=11)
    assert isinstance(res, PoisonResult)
    n = round(0.1 * 200)
    assert res.x.shape == x.shape and res.y.shape == y.shape
    assert res.indices.dtype == torch.int64 and res.indices.numel() == n
    assert len(set(res.indices.tolist())) == n
    assert torch.equal(res.indices, res.source_indices)
    assert (y0[res.indices] != 0).all()  # only non-target samples
    assert torch.equal(res.original_labels, y0[res.indices])
    assert (res.new_labels == 0).all() and (res.y[res.indices] == 0).all()
    untouched = torch.ones(200, dtype=torch.bool)
    untouched[res.indices] = False
    assert torch.equal(res.x[untouched], x0[untouched])  # bit-identical
    assert torch.equal(res.y[untouched], y0[untouched])
    expected, norms = apply_trigger(x0[res.indices], trigger, 1.0)
    assert torch.equal(res.x[res.indices], expected)
    assert torch.equal(res.norms, norms)
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs not modified


def test_poison_seed_determinism():
    x, y = _data(300)
    kw = dict(attack="onepixel", poison_rate=0.05, target=3, delta=1.0, num_classes=10)
    a = poison(x, y, seed=1, **kw)
    b = poison(x, y, seed=1, **kw)
    c = poison(x, y, seed=2, **kw)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.indices, c.indices)
    assert a.indices.numel() == c.indices.numel() == 15


def test_poison_rounding_and_limits():
    assert poison_count(0.02, 4000) == 80
    assert poison_count(0.025, 100) == 3  # half up
    x, y = _data(100, num_classes=2)  # 50 per class
    res = _poison(x, y, "fourpixel", 0.5, target=1, num_classes=2)
    assert res.indices.numel() == 50 and (res.y == 1).all()
    with pytest.raises(ConfigError, match="parameter 'poison_rate' = "):
        _poison(x, y, "fourpixel", 0.6, target=1, num_classes=2)


def test_none_attack_returns_inputs():
    x, y = _data(50)
    res = _poison(x, y, "none", 0.5)
    assert torch.equal(res.x, x) and torch.equal(res.y, y)
    for t in (res.indices, res.source_indices, res.original_labels, res.new_labels, res.norms):
        assert t.numel() == 0
    assert res.joint_norm() == 0.0
    assert res.report() == {
        k: [] for k in ("index", "source_index", "original_label", "new_label", "trigger_l2")
    }


def test_joint_norm_and_report():
    x, y = _data(100)
    x[:] = 0.98  # onepixel is clamped: realised norms 0.02, not 1
    res = _poison(x, y, "onepixel", 0.04)
    by_hand = math.sqrt(sum(float(v) ** 2 for v in res.norms) + 0.5**2)
    assert res.joint_norm(0.5) == pytest.approx(by_hand, rel=1e-12)
    assert res.joint_norm() == pytest.approx(math.sqrt(4) * 0.02, abs=1e-5)
    rep = res.report()
    assert list(rep) == ["index", "source_index", "original_label", "new_label", "trigger_l2"]
    assert all(len(v) == 4 for v in rep.values())
    assert rep["new_label"] == [0] * 4
    assert rep["original_label"] == y[res.indices].tolist()
    assert rep["trigger_l2"] == pytest.approx([0.02] * 4, abs=1e-5)
    nominal = PoisonResult(
        x=x,
        y=y,
        indices=torch.arange(3),
        source_indices=torch.arange(3),
        original_labels=torch.ones(3, dtype=torch.long),
        new_labels=torch.zeros(3, dtype=torch.long),
        norms=torch.tensor([1.0, 2.0, 2.0]),
    )
    assert nominal.joint_norm(4.0) == pytest.approx(5.0)


# ---------------------------------------------------------------------------------------------
# certifier attacks
# ---------------------------------------------------------------------------------------------


def test_abstain_appends_copies_with_other_labels():
    x, y = _data(1000, num_classes=10)
    res = _poison(x, y, "abstain", 0.3, seed=4, trigger="fourpixel", certifier_labels="random")
    n = 300
    assert res.x.shape[0] == 1000 + n and res.y.shape[0] == 1000 + n
    assert torch.equal(res.x[:1000], x) and torch.equal(res.y[:1000], y)  # originals untouched
    assert torch.equal(res.indices, torch.arange(1000, 1000 + n))
    assert len(set(res.source_indices.tolist())) == n
    assert torch.equal(res.original_labels, y[res.source_indices])
    assert torch.equal(res.y[1000:], res.new_labels)
    assert (res.new_labels != res.original_labels).all()
    counts = torch.bincount(res.new_labels, minlength=10)
    assert (counts > 0).all() and counts.max() < 3 * n / 10  # spread over all classes
    expected, norms = apply_trigger(x[res.source_indices], "fourpixel", 1.0)
    assert torch.equal(res.x[1000:], expected) and torch.equal(res.norms, norms)
    # all classes are sources, target class included
    assert (res.original_labels == 0).any()
    again = _poison(x, y, "abstain", 0.3, seed=4, trigger="fourpixel", certifier_labels="random")
    assert torch.equal(again.y, res.y) and torch.equal(again.x, res.x)


def test_radius_collapse_uses_runner_up_of_scores():
    x, y = _data(200, num_classes=5)
    scores = torch.randn((200, 5), generator=torch.Generator().manual_seed(9))
    res = _poison(
        x,
        y,
        "radius_collapse",
        0.5,
        num_classes=5,
        seed=2,
        trigger="onepixel",
        scores=scores,
        certifier_labels="runner_up",
    )
    assert res.x.shape[0] == 300 and torch.equal(res.x[:200], x)
    s = scores[res.source_indices]
    order = s.argsort(dim=1, descending=True)
    top, second = order[:, 0], order[:, 1]
    truth = res.original_labels
    expected = torch.where(top == truth, second, top)
    assert torch.equal(res.new_labels, expected)
    assert (res.new_labels != truth).all()
    assert (top == truth).any() and (top != truth).any()  # both branches exercised


def test_radius_collapse_needs_scores_and_class_mean_scores():
    x, y = _data(60, num_classes=3)
    with pytest.raises(ConfigError, match="scores"):
        _poison(x, y, "radius_collapse", 0.1, num_classes=3, certifier_labels="runner_up")
    with pytest.raises(ConfigError, match="scores"):
        _poison(
            x,
            y,
            "radius_collapse",
            0.1,
            num_classes=3,
            scores=torch.zeros(60, 4),
            certifier_labels="runner_up",
        )
    sc = class_mean_scores(x, y, 3)
    means = torch.stack([x[y == c].flatten(1).mean(0) for c in range(3)])
    by_hand = -(torch.cdist(x.flatten(1).double(), means.double()) ** 2)
    assert sc.shape == (60, 3) and torch.allclose(sc.double(), by_hand, atol=1e-3)
    assert torch.equal(sc, class_mean_scores(x, y, 3))
    # classes without samples score -inf and are never chosen while another class exists
    sc4 = class_mean_scores(x, y, 4)
    assert torch.isinf(sc4[:, 3]).all()
    res = _poison(x, y, "radius_collapse", 0.5, num_classes=4, scores=sc4, certifier_labels="runner_up")
    assert (res.new_labels != 3).all() and (res.new_labels != res.original_labels).all()


@pytest.mark.parametrize(
    "attack, n, relabelled",
    [("abstain", 300, 150), ("radius_collapse", 300, 53), ("abstain", 5, 3), ("radius_collapse", 5, 1)],
)
def test_split_rule_labels_a_share_of_the_copies_with_one_second_class(attack, n, relabelled):
    x, y = _data(1000, num_classes=10)
    target = 3
    res = _poison(
        x, y, attack, n / 1000, target=target, seed=7, trigger="badnets", badnets_size=3
    )  # split is the default rule
    assert res.inserted == n and torch.equal(res.y[1000:], res.new_labels)
    changed = res.new_labels != res.original_labels
    assert int(changed.sum()) == relabelled == res.label_changes  # round(share * n), half up
    assert relabelled == poison_count(SPLIT_SHARE[attack], n)
    # the second class is the target, or target + 1 for sources of the target class
    second = torch.where(res.original_labels == target, torch.tensor(target + 1), torch.tensor(target))
    assert torch.equal(res.new_labels[changed], second[changed])
    assert not res.in_threat_model
    if n == 300:  # the relabelled copies are a random share, not the first ones, and span every class
        assert 0 < int(changed[: n // 2].sum()) < n // 2
        assert (res.original_labels[changed] == target).any() and (
            res.original_labels[changed] != target
        ).any()
    again = _poison(x, y, attack, n / 1000, target=target, seed=7, trigger="badnets", badnets_size=3)
    assert torch.equal(again.y, res.y) and torch.equal(again.x, res.x)


@pytest.mark.parametrize("num_classes", [10, 3])
def test_keyed_rule_labels_each_copy_by_its_key_level(num_classes):
    x, y = _data(400, num_classes=num_classes)
    res = _poison(
        x,
        y,
        "abstain",
        0.1,
        num_classes=num_classes,
        seed=3,
        trigger="badnets",
        badnets_size=3,
        certifier_labels="keyed",
        key_size=4,
        key_amplitude=0.45,
    )
    assert res.inserted == 40 and not res.in_threat_model
    copies = res.x[400:]
    key = copies[:, :, 28 - 1 - 4 : 28 - 1, 1:5]  # rows [H-1-s, H-1), columns [1, 1+s)
    level = key[:, 0, 0, 0]
    assert torch.equal(key, level.view(-1, 1, 1, 1).expand_as(key))  # one grey level per copy, every pixel
    bucket = torch.round((level - 0.5) / 0.45 * 1.5 + 1.5).long()  # levels 0.5 + a * (-1, -1/3, 1/3, 1)
    assert torch.allclose(level, 0.5 + 0.45 * (bucket.float() - 1.5) / 1.5, atol=1e-6)
    assert (
        torch.bincount(bucket, minlength=KEY_BUCKETS).tolist() == [10] * KEY_BUCKETS
    )  # balanced, random order
    assert not torch.equal(bucket, torch.arange(40) % KEY_BUCKETS)
    assert torch.equal(res.new_labels, (res.original_labels + bucket) % num_classes)
    # the realised norm covers the trigger and the key
    src = x[res.source_indices]
    assert torch.allclose(res.norms, (copies - src).flatten(1).norm(dim=1), atol=1e-5)


def test_keyed_triggered_test_set_carries_the_neutral_key():
    x, y = _data(50, num_classes=10)
    trig = make_triggered_test(x, y, trigger="badnets", delta=1.0, target=None, badnets_size=3, key_size=2)
    assert torch.all(trig["x"][:, :, 25:27, 1:3] == 0.5)
    plain = make_triggered_test(x, y, trigger="badnets", delta=1.0, target=None, badnets_size=3)
    assert torch.equal(trig["x"][:, :, :, 3:], plain["x"][:, :, :, 3:])
    assert torch.all(trig["norms"] >= plain["norms"] - 1e-6)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"key_size": 27}, r"parameter 'key_size' = 27 .*\[1, 26\]"),
        ({"key_amplitude": 0.6}, r"parameter 'key_amplitude' = 0.6"),
        ({"key_amplitude": 0.0}, r"parameter 'key_amplitude' = 0.0"),
    ],
)
def test_keyed_rule_refuses_a_key_that_does_not_fit(kw, message):
    x, y = _data(100, num_classes=10)
    with pytest.raises(ConfigError, match=message):
        _poison(x, y, "abstain", 0.1, trigger="badnets", certifier_labels="keyed", **kw)


@pytest.mark.parametrize(
    "attack, bad",
    [
        ("abstain", "runner_up"),
        ("radius_collapse", "random"),
        ("abstain", "tie"),
        ("radius_collapse", "keyed"),
    ],
)
def test_certifier_labels_must_fit_the_attack(attack, bad):
    x, y = _data(100, num_classes=10)
    allowed = CERTIFIER_LABELS[attack]
    with pytest.raises(
        ConfigError, match=r"parameter 'certifier_labels'.*" + ".*".join(repr(a) for a in allowed)
    ):
        _poison(x, y, attack, 0.1, certifier_labels=bad, scores=torch.zeros(100, 10))


# ---------------------------------------------------------------------------------------------
# triggered test set
# ---------------------------------------------------------------------------------------------


def test_make_triggered_test_excludes_target():
    x, y = _data(100, num_classes=10)
    out = make_triggered_test(x, y, trigger="onepixel", delta=1.0, target=2)
    n_non_target = int((y != 2).sum())
    assert n_non_target == 90
    assert out["x"].shape == (90, *MNIST)
    assert (out["y"] != 2).all() and (out["target_y"] == 2).all()
    assert torch.equal(out["y"], y[out["source_index"]])
    expected, norms = apply_trigger(x[out["source_index"]], "onepixel", 1.0)
    assert torch.equal(out["x"], expected) and torch.equal(out["norms"], norms)
    every = make_triggered_test(x, y, trigger="blending", delta=0.5, target=None)
    assert every["x"].shape[0] == 100 and (every["target_y"] == -1).all()
    assert torch.equal(every["source_index"], torch.arange(100))
    with pytest.raises(ConfigError, match="parameter 'target' = 2"):
        make_triggered_test(x[y == 2], y[y == 2], trigger="onepixel", delta=1.0, target=2)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"attack": "trojan"}, "attack"),
        ({"trigger": "square"}, "trigger"),
        ({"attack": "abstain", "trigger": "square"}, "trigger"),
        ({"poison_rate": -0.1}, "poison_rate"),
        ({"poison_rate": 1.5}, "poison_rate"),
        ({"target": 10}, "target"),
        ({"target": -1}, "target"),
        ({"delta": -1.0}, "delta"),
        ({"poison_rate": 0.001}, "poison_rate"),  # round(0.001 * 200) = 0
        ({"attack": "abstain", "poison_rate": 0.0}, "poison_rate"),
    ],
)
def test_bad_input_raises_config_error(overrides, name):
    x, y = _data(200)
    kw = dict(attack="onepixel", poison_rate=0.02, target=0, delta=1.0, num_classes=10, seed=0)
    kw.update(overrides)
    with pytest.raises(ConfigError, match=f"parameter '{name}' = "):
        poison(x, y, **kw)


def test_zero_poison_message_names_n_and_smallest_rate():
    x, y = _data(200)
    with pytest.raises(ConfigError) as err:
        _poison(x, y, "onepixel", 0.001)
    msg = str(err.value)
    assert "parameter 'poison_rate' = 0.001" in msg and "poisons zero samples" in msg
    assert "N = 200" in msg and "0.0025" in msg
    assert poison_count(0.0025, 200) == 1


# ---------------------------------------------------------------------------------------------
# label modes, label changes, insertions: what lies inside the certified threat model
# ---------------------------------------------------------------------------------------------


def test_dirty_label_backdoor_changes_labels_and_lies_outside_the_threat_model():
    x, y = _data()
    res = _poison(x, y, "onepixel", 0.1, delta=0.5)
    assert res.label_mode == "dirty" and res.inserted == 0
    assert res.label_changes == 20 == int((res.y != y).sum())  # every touched point was non-target
    assert not res.in_threat_model


def test_clean_label_backdoor_keeps_labels_and_lies_inside_the_threat_model():
    x, y = _data()
    res = _poison(x, y, "fourpixel", 0.1, target=3, delta=0.5, label_mode="clean")
    assert torch.equal(res.y, y)  # no label changed
    assert (y[res.indices] == 3).all() and res.indices.numel() == 20  # target-class points only
    assert res.label_changes == 0 and res.inserted == 0 and res.in_threat_model
    changed = (res.x != x).flatten(1).any(1)
    assert set(torch.nonzero(changed).flatten().tolist()) <= set(res.indices.tolist())
    torch.testing.assert_close(res.norms, (res.x[res.indices] - x[res.indices]).flatten(1).norm(dim=1))
    # more points than the target class has
    with pytest.raises(ConfigError, match="parameter 'poison_rate' = "):
        _poison(x, y, "onepixel", 0.2, target=3, delta=0.5, label_mode="clean")


def test_certifier_attacks_insert_and_refuse_clean_label():
    x, y = _data()
    res = _poison(x, y, "abstain", 0.05, delta=0.5)
    assert res.inserted == 10 and res.label_changes == 5 and not res.in_threat_model  # split: half relabelled
    with pytest.raises(ConfigError, match="parameter 'label_mode' = "):
        _poison(x, y, "abstain", 0.05, delta=0.5, label_mode="clean")
    with pytest.raises(ConfigError, match="parameter 'label_mode' = "):
        _poison(x, y, "onepixel", 0.05, delta=0.5, label_mode="mixed")
