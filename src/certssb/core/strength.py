r"""How strong a backdoor must be to be learnt: the attack-strength sweep (issue 13).

A certificate measured against an attack that the undefended model does not even learn says nothing, so
before any defence is judged we measure, on the *undefended* model (the same architecture trained on the
poisoned set without noise), the attack success rate

.. math:: \mathrm{ASR} = \frac{|\{x : y(x) \ne t,\ f(x \oplus \text{trigger}) = t\}|}{|\{x : y(x) \ne t\}|}

and the clean accuracy, over a grid of settings (:class:`Setting`): trigger, label mode (dirty: relabel
to the target, outside the certified threat model; clean: trigger on target-class points, labels kept),
poison rate, trigger strength ``delta`` (the l2 norm of the additive triggers ``onepixel``, ``fourpixel``,
``blending``; ignored by ``badnets`` and ``blended_injection``, whose strength is their size / blend) and
training epochs.

The *clean reference* for a setting is the same architecture trained for the same number of epochs on the
unpoisoned set with the same seed; ``clean_drop = reference accuracy - accuracy``. :func:`weakest_settings`
picks, for each trigger and label mode, the setting with the fewest poisoned points (then the smallest
realised trigger norm, then the fewest epochs) that reaches ``ASR >= threshold`` with
``clean_drop <= max_clean_drop``.

Everything here is deterministic for a given seed (the poisoned points, the model's initial weights and
its batch order).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import metrics
from .ensemble import TrainConfig, load_member, train_one
from .noise import make_noise_plan
from .poisoning import LABEL_MODES, PoisonResult, make_triggered_test, poison
from .splits import tensor_fingerprint
from .triggers import ADDITIVE_TRIGGERS, TRIGGERS
from .validation import choice, fail, number, positive

__all__ = ["Setting", "settings_grid", "measure_setting", "sweep", "weakest_settings"]


@dataclass(frozen=True)
class Setting:
    """One point of the sweep."""

    trigger: str
    label_mode: str
    poison_rate: float
    delta: float
    epochs: int


def settings_grid(
    triggers: Sequence[str],
    label_modes: Sequence[str],
    poison_rates: Sequence[float],
    deltas: Sequence[float],
    epochs: Sequence[int],
) -> list[Setting]:
    """The product of the axes, with ``delta`` varied only for the additive triggers (the others get the
    first delta, which they ignore). Raises ConfigError naming the axis on a bad value."""
    for name, values in (
        ("triggers", triggers),
        ("label_modes", label_modes),
        ("poison_rates", poison_rates),
        ("deltas", deltas),
        ("epochs", epochs),
    ):
        if not isinstance(values, (list, tuple)) or not values:
            fail(name, values, "a non-empty list")
    for t in triggers:
        choice("triggers", t, TRIGGERS)
    for m in label_modes:
        choice("label_modes", m, LABEL_MODES)
    for r in poison_rates:
        number("poison_rates", r, low=0, high=1, low_open=True)
    for d in deltas:
        positive("deltas", d)
    for e in epochs:
        positive("epochs", e, integer=True)
    out = []
    for t, m, r, e in itertools.product(triggers, label_modes, poison_rates, epochs):
        for d in deltas if t in ADDITIVE_TRIGGERS else deltas[:1]:
            out.append(Setting(t, m, float(r), float(d), int(e)))
    return out


def _predict(net: torch.nn.Module, x: torch.Tensor, device: torch.device, batch: int = 1000) -> np.ndarray:
    with torch.no_grad():
        return torch.cat(
            [net(x[i : i + batch].to(device)).argmax(1).cpu() for i in range(0, x.shape[0], batch)]
        ).numpy()


def _train(
    x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, num_classes: int, seed: int, device: torch.device
) -> torch.nn.Module:
    plan = make_noise_plan(
        seed=seed, num_models=1, sigma=1.0, num_draws=1, n_train=x.shape[0], input_shape=tuple(x.shape[1:])
    )
    res = train_one(x, y, torch.zeros(x.shape[0]), plan, 0, cfg, num_classes, device, noise=False)
    return load_member(cfg.architecture, list(x.shape[1:]), num_classes, res.params, 0, device).eval()


def _attack(
    setting: Setting, data: dict[str, Any], target: int, seed: int, trigger_kwargs: dict[str, Any]
) -> tuple[PoisonResult, dict[str, Any]]:
    """The poisoned training set and the triggered test set of a setting (cheap next to training)."""
    res = poison(
        data["x_train"],
        data["y_train"],
        attack=setting.trigger,
        poison_rate=setting.poison_rate,
        target=target,
        delta=setting.delta,
        num_classes=int(data["num_classes"]),
        seed=seed,
        label_mode=setting.label_mode,
        **trigger_kwargs,
    )
    trig = make_triggered_test(
        data["x_test"],
        data["y_test"],
        trigger=setting.trigger,
        delta=setting.delta,
        target=target,
        **trigger_kwargs,
    )
    return res, trig


def _measure(
    setting: Setting,
    res: PoisonResult,
    trig: dict[str, Any],
    data: dict[str, Any],
    model: TrainConfig,
    seed: int,
    device: torch.device,
    reference: Callable[[int], float] | None,
) -> dict[str, Any]:
    net = _train(
        res.x,
        res.y,
        replace(model, epochs=setting.epochs),
        int(data["num_classes"]),
        seed,
        device,
    )
    acc = metrics.clean_accuracy(_predict(net, data["x_test"], device), data["y_test"].numpy())
    ref = reference(setting.epochs) if reference is not None else float("nan")
    return {
        **asdict(setting),
        "n_poisoned": int(res.indices.numel()),
        "trigger_norm": float(trig["norms"].mean()),
        "clean_accuracy": acc,
        "attack_success_rate": metrics.attack_success_rate(
            _predict(net, trig["x"], device), trig["target_y"].numpy()
        ),
        "clean_reference": ref,
        "clean_drop": ref - acc,
    }


def measure_setting(
    setting: Setting,
    data: dict[str, Any],
    *,
    target: int,
    model: TrainConfig,
    seed: int,
    device: torch.device,
    trigger_kwargs: dict[str, Any] | None = None,
    reference: Callable[[int], float] | None = None,
) -> dict[str, Any]:
    """Poison ``data["x_train"]`` with ``setting``, train the undefended model, and measure it.

    ``data`` is a split dict (``x_train``, ``y_train``, ``x_test``, ``y_test``, ``num_classes``);
    ``model`` how the undefended model trains (its ``epochs`` is replaced by the setting's); ``reference``
    maps epochs to the clean reference accuracy. Returns one row: the setting, ``n_poisoned``,
    ``trigger_norm`` (mean realised l2 norm of the test trigger), ``clean_accuracy``,
    ``attack_success_rate``, ``clean_reference`` and ``clean_drop``.
    """
    res, trig = _attack(setting, data, target, seed, dict(trigger_kwargs or {}))
    return _measure(setting, res, trig, data, model, seed, device, reference)


def sweep(
    settings: Iterable[Setting],
    data: dict[str, Any],
    *,
    target: int,
    model: TrainConfig,
    seed: int,
    device: torch.device,
    trigger_kwargs: dict[str, Any] | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it,
) -> pd.DataFrame:
    """:func:`measure_setting` for every setting, with the clean references trained once per epoch count.
    ``progress`` wraps the iteration (a progress bar); the order of the rows is the order of ``settings``.
    A setting that makes exactly the same poisoned set and test trigger as an earlier one with the same epochs
    (``onepixel`` at any delta >= 1: its pixel is clamped at 1) is not retrained: its row repeats the earlier
    one's measurements, with ``same_as_delta`` naming that setting's delta (NaN for measured rows)."""
    kw = dict(trigger_kwargs or {})
    c = int(data["num_classes"])
    refs: dict[int, float] = {}

    def reference(epochs: int) -> float:
        if epochs not in refs:
            net = _train(data["x_train"], data["y_train"], replace(model, epochs=epochs), c, seed, device)
            refs[epochs] = metrics.clean_accuracy(
                _predict(net, data["x_test"], device), data["y_test"].numpy()
            )
        return refs[epochs]

    done: dict[tuple[str, int], dict[str, Any]] = {}
    rows = []
    for s in progress(list(settings)):
        res, trig = _attack(s, data, target, seed, kw)
        key = (tensor_fingerprint(res.x, res.y, trig["x"]), s.epochs)
        if key in done:  # the same poisoned set and test trigger (e.g. onepixel clamped at any delta >= 1)
            rows.append({**done[key], **asdict(s), "same_as_delta": done[key]["delta"]})
            continue
        done[key] = _measure(s, res, trig, data, model, seed, device, reference)
        rows.append({**done[key], "same_as_delta": float("nan")})
    return pd.DataFrame(rows)


def weakest_settings(
    table: pd.DataFrame, thresholds: Sequence[float] = (0.5, 0.9), max_clean_drop: float = 0.02
) -> pd.DataFrame:
    """For each threshold, trigger and label mode: the weakest setting with ``ASR >= threshold`` and
    ``clean_drop <= max_clean_drop`` -- fewest poisoned points, then smallest realised trigger norm, then
    fewest epochs. A (threshold, trigger, label mode) that no setting reaches gets a row with
    ``reached = False`` and the best ASR seen."""
    for t in thresholds:
        number("thresholds", t, low=0, high=1)
    number("max_clean_drop", max_clean_drop, low=0)
    rows = []
    for thr in thresholds:
        for (trig, mode), g in table.groupby(["trigger", "label_mode"], sort=False):
            ok = g[(g["attack_success_rate"] >= thr) & (g["clean_drop"] <= max_clean_drop)]
            if len(ok):
                best = ok.sort_values(["n_poisoned", "trigger_norm", "epochs"], kind="stable").iloc[0]
                rows.append({"threshold": thr, **best.to_dict(), "reached": True})
            else:
                best = g.sort_values("attack_success_rate", ascending=False, kind="stable").iloc[0]
                rows.append({"threshold": thr, **best.to_dict(), "reached": False})
    return pd.DataFrame(rows)
