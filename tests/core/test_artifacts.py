"""certssb.core.artifacts: the dataclass views round-trip the saved dicts exactly; one lineage wording."""

from __future__ import annotations

import re
from dataclasses import FrozenInstanceError

import pytest
import torch

from certssb.core.artifacts import (
    LineageError,
    ModelArtifact,
    NoisePlan,
    SigmaArtifact,
    SplitData,
    VotesArtifact,
    check_ensemble_lineage,
    check_lineage,
    require_same,
)
from certssb.core.noise import make_noise_plan
from certssb.core.splits import tensor_fingerprint
from certssb.core.validation import ConfigError

G = torch.Generator().manual_seed(0)
X = torch.rand(6, 1, 4, 4, generator=G)
Y = torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.int64)
LINEAGE = {"raw_dataset": "r" * 16, "attack": {"name": "badnets", "poison_rate": 0.1}, "seed": 0}


def poisoned_train() -> dict:  # the keys and order of data_engineering.poison
    return {
        "x": X,
        "y": Y,
        "poison_index": torch.tensor([1, 4]),
        "num_classes": 3,
        "class_names": ["a", "b", "c"],
        "fingerprint": tensor_fingerprint(X, Y),
        **LINEAGE,
    }


def clean_test() -> dict:
    return {
        "x": X,
        "y": Y,
        "source_index": torch.arange(6),
        "num_classes": 3,
        "fingerprint": "c" * 16,
        **LINEAGE,
    }


def triggered_test() -> dict:
    return {
        "x": X[:4],
        "y": Y[:4],
        "target_y": torch.zeros(4, dtype=torch.int64),
        "source_index": torch.arange(4),
        "norms": torch.ones(4),
        "num_classes": 3,
        "trigger": "badnets",
        "fingerprint": "t" * 16,
        **LINEAGE,
    }


def noise_plan() -> dict:
    plan = make_noise_plan(seed=3, num_models=4, sigma=0.25, num_draws=2, n_train=6, input_shape=(1, 4, 4))
    plan["poisoned_train"] = tensor_fingerprint(X, Y)
    return plan


def sigma() -> dict:  # the keys and order of modelling._sigma_artifact before the dataclasses
    s = {"train": torch.full((6,), 0.25), "clean": torch.full((6,), 0.3), "triggered": torch.full((4,), 0.2)}
    return {
        "method": "cert_ssb",
        "sigma0": 0.25,
        **s,
        "fingerprint": tensor_fingerprint(s["train"], s["clean"], s["triggered"], extra="cert_ssb"),
        "inputs": {
            "poisoned_train": tensor_fingerprint(X, Y),
            "clean_test": "c" * 16,
            "triggered_test": "t" * 16,
            "noise_plan": noise_plan()["fingerprint"],
        },
    }


def _model(**extra) -> dict:
    return {
        "architecture": "mlp",
        "in_shape": [1, 4, 4],
        "num_classes": 3,
        "params": {"w": torch.rand(4, 3, 16, generator=G), "b": torch.zeros(4, 3, dtype=torch.float64)},
        "model_indices": torch.arange(4),
        "train_config": {"architecture": "mlp", "epochs": 1},
        **extra,
    }


def pilot() -> dict:
    return _model(
        poisoned_train=tensor_fingerprint(X, Y),
        sigma0=0.25,
        noisy=True,
        log=[{"model": 0, "epoch": 0, "loss": 1.0, "noisy_train_accuracy": 0.5}],
    )


def ensemble() -> dict:
    s = sigma()
    return _model(
        method="cert_ssb",
        fingerprint="e" * 16,
        backend="sequential",
        poisoned_train=tensor_fingerprint(X, Y),
        noise_plan=noise_plan()["fingerprint"],
        sigma=s["fingerprint"],
    )


def votes() -> dict:
    return {
        "method": "cert_ssb",
        "ensemble": "e" * 16,
        "sigma": sigma()["fingerprint"],
        "clean": {"votes": torch.zeros(4, 6, 3), "probs": torch.rand(4, 6, 3, generator=G)},
        "triggered": {"votes": torch.zeros(4, 4, 3), "probs": torch.rand(4, 4, 3, generator=G)},
    }


CASES = {
    "poisoned_train": (SplitData, poisoned_train),
    "clean_test": (SplitData, clean_test),
    "triggered_test": (SplitData, triggered_test),
    "noise_plan": (NoisePlan, noise_plan),
    "cert_ssb.sigma": (SigmaArtifact, sigma),
    "pilot_model": (ModelArtifact, pilot),
    "cert_ssb.ensemble": (ModelArtifact, ensemble),
    "cert_ssb.votes": (VotesArtifact, votes),
}


def assert_same(a, b, path="") -> None:
    """Equal keys (in the same order), values, tensor dtypes and shapes, recursively."""
    assert type(a) is type(b), path
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_is_exact(name):
    cls, make = CASES[name]
    d = make()
    art = cls.from_dict(d, name)
    assert art.extra == {}  # every saved key is a named field
    assert_same(art.to_dict(), d)
    for k, v in d.items():  # a view: the very same tensors, nothing copied or cast
        if isinstance(v, torch.Tensor):
            assert art.to_dict()[k] is v


def test_fields_are_readable_and_frozen():
    e = ModelArtifact.from_dict(ensemble())
    assert e.method == "cert_ssb" and e.num_models == 4 and e.sigma0 is None and e.log is None
    p = ModelArtifact.from_dict(pilot(), "pilot_model")
    assert p.noisy is True and p.method is None and "method" not in p.to_dict()
    with pytest.raises(FrozenInstanceError):
        e.method = "uniform"


@pytest.mark.parametrize(
    ("name", "key", "pipeline"),
    [
        ("clean_test", "y", "data_engineering"),
        ("noise_plan", "train_seeds", "data_engineering"),
        ("cert_ssb.sigma", "inputs", "modelling"),
        ("cert_ssb.ensemble", "params", "modelling"),
        ("cert_ssb.votes", "sigma", "evaluation"),
    ],
)
def test_a_missing_key_is_refused_naming_it(name, key, pipeline):
    """The artifact to rebuild is named (``LineageError.artifact``); how (``kedro run --pipelines=...``) is
    the hooks' to say (tests/test_hooks.py), core names no command."""
    cls, make = CASES[name]
    d = make()
    del d[key]
    with pytest.raises(LineageError, match=rf"^{re.escape(name)} has no key '{key}'") as err:
        cls.from_dict(d, name)
    assert err.value.artifact == name and "kedro" not in str(err.value)


def test_a_non_dict_is_refused():
    with pytest.raises(ConfigError, match=r"noise_plan is a list, not a NoisePlan dict"):
        NoisePlan.from_dict([1, 2])


def test_extra_keys_and_none_values_are_kept():
    d = {**clean_test(), "new_key": torch.ones(2, dtype=torch.float16), "trigger": None}
    art = SplitData.from_dict(d, "clean_test")
    assert set(art.extra) == {"new_key", "trigger"} and art.trigger is None
    out = art.to_dict()
    assert set(out) == set(d) and out["trigger"] is None and out["new_key"].dtype == torch.float16


def test_built_artifacts_have_todays_format():
    s = sigma()
    built = SigmaArtifact.build(
        "cert_ssb", 0.25, {k: s[k] for k in ("train", "clean", "triggered")}, s["inputs"]
    )
    assert_same(built.to_dict(), s)
    for d in (ensemble(), pilot()):  # built in code: the class's field order is today's order
        assert_same(ModelArtifact(**d).to_dict(), d)


def test_require_same_has_one_wording():
    require_same("noise_plan", "poisoned_train", "a" * 16, "a" * 16)  # equal: nothing happens
    with pytest.raises(
        ConfigError,
        match=re.escape("cert_ssb.ensemble was made from another noise_plan (fingerprints aaaa vs bbbb)"),
    ):
        require_same("cert_ssb.ensemble", "noise_plan", "aaaa", "bbbb")
    with pytest.raises(
        ConfigError,
        match=r"^noise_plan was made from another poisoned_train \(fingerprints x vs y\)$",
    ):
        check_lineage(("noise_plan", "noise_plan", "x", "x"), ("noise_plan", "poisoned_train", "x", "y"))
    with pytest.raises(
        ConfigError,
        match=r"^uniform\.votes was made from another uniform\.sigma \(fingerprints None vs s\)$",
    ):
        require_same("uniform.votes", "uniform.sigma", None, "s")
    with pytest.raises(
        ConfigError, match=r"from another poisoned_train than cert_ssb\.sigma \(fingerprints a vs b\)"
    ):
        require_same("cert_ssb.ensemble", "poisoned_train", "a", "b", "cert_ssb.sigma")


def test_check_ensemble_lineage_checks_every_link():
    views = {n: CASES[n][0].from_dict(CASES[n][1](), n) for n in CASES}
    args = (views["cert_ssb.ensemble"], views["cert_ssb.sigma"], views["noise_plan"])
    data = {n: views[n] for n in ("poisoned_train", "clean_test", "triggered_test")}
    check_ensemble_lineage(*args, **data)  # one run: passes
    broken = {
        "noise_plan": r"cert_ssb\.ensemble was made from another noise_plan",
        "triggered_test": r"cert_ssb\.sigma was made from another triggered_test",
        "poisoned_train": r"cert_ssb\.ensemble was made from another poisoned_train \(",
    }
    for name, message in broken.items():
        other = CASES[name][0].from_dict({**CASES[name][1](), "fingerprint": "0" * 16}, name)
        kw = {**data, name: other} if name in data else data
        a = (args[0], args[1], other) if name == "noise_plan" else args
        with pytest.raises(ConfigError, match=message):
            check_ensemble_lineage(*a, **kw)
    s = SigmaArtifact.from_dict({**sigma(), "inputs": {**sigma()["inputs"], "poisoned_train": "0" * 16}})
    with pytest.raises(ConfigError, match=r"another poisoned_train than cert_ssb\.sigma"):
        check_ensemble_lineage(args[0], s, args[2])


# ---------------------------------------------------------------------------------------------------
# the certificate table: schema, row count and lineage on read


def _certificates(n_clean=3, n_trig=2, sigma_fp="s1", ensemble_fp="e1"):
    import pandas as pd

    rows = []
    for split, n in (("clean", n_clean), ("triggered", n_trig)):
        for i in range(n):
            rows.append(
                {
                    "method": "uniform",
                    "split": split,
                    "sample_id": i,
                    "label": 1,
                    "prediction": 1,
                    "p_lower_a": 0.9,
                    "p_upper_b": 0.1,
                    "r1": 1.2,
                    "sigma": 0.25,
                    "sigma_min": 0.25,
                    "radius": 0.3,
                    "radius_published": 0.3,
                    "abstained": False,
                    "correct": True,
                    "n_estimation": 9,
                    "ensemble_fingerprint": ensemble_fp,
                    "sigma_fingerprint": sigma_fp,
                }
            )
    return pd.DataFrame(rows)


def _sigma(n_clean=3, n_trig=2):
    from certssb.core.artifacts import SigmaArtifact

    sigmas = {
        "train": torch.full((5,), 0.25),
        "clean": torch.full((n_clean,), 0.25),
        "triggered": torch.full((n_trig,), 0.25),
    }
    return SigmaArtifact.build("uniform", 0.25, sigmas, inputs={})


def test_a_certificate_table_of_its_sigma_and_ensemble_passes():
    from certssb.core.artifacts import check_certificates

    sig = _sigma()
    table = _certificates(sigma_fp=sig.fingerprint)
    check_certificates(table, "uniform.certificates", sigma=sig, ensemble="e1")


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda t: t.head(4), r"has 4 rows \(3 clean \+ 1 triggered\), but its test sets have 3 \+ 2"),
        (lambda t: t.drop(columns="radius"), r"lacks the column\(s\) radius"),
        (lambda t: t.assign(radius=["0.3x"] + [0.3] * 4), r"column 'radius' must hold numbers"),
        (lambda t: t.assign(abstained=[1.5] * 5), r"column 'abstained' must hold booleans"),
        (
            lambda t: t.assign(ensemble_fingerprint=["e1", "e1", "e2", "e1", "e1"]),
            r"mixes rows of several runs",
        ),
        (
            lambda t: t.assign(ensemble_fingerprint="e9"),
            r"was made from another ensemble \(fingerprints e9 vs e1\)",
        ),
    ],
)
def test_a_damaged_certificate_table_is_refused_in_one_line(damage, needle):
    from certssb.core.artifacts import check_certificates

    sig = _sigma()
    with pytest.raises(ConfigError, match=needle) as err:
        check_certificates(
            damage(_certificates(sigma_fp=sig.fingerprint)), "uniform.certificates", sigma=sig, ensemble="e1"
        )
    assert "\n" not in str(err.value) and str(err.value).startswith("uniform.certificates ")


def test_the_noise_plan_fingerprint_covers_its_training_set():
    from certssb.core.noise import make_noise_plan

    kw = {"seed": 0, "num_models": 2, "sigma": 0.25, "num_draws": 1, "n_train": 4, "input_shape": (1, 2, 2)}
    a, b = make_noise_plan(**kw, poisoned_train="aa"), make_noise_plan(**kw, poisoned_train="bb")
    assert a["fingerprint"] != b["fingerprint"] and a["poisoned_train"] == "aa"
    assert torch.equal(a["train_seeds"], b["train_seeds"])  # the same noise, another lineage
    assert make_noise_plan(**kw)["fingerprint"] != a["fingerprint"]
