"""Backdoor triggers, training-set poisoning and the attacks on certifiers (ALGORITHMS.md §1, §6).

Images are float32 tensors ``(N, C, H, W)`` in [0, 1]; labels are int64 ``(N,)``.

Triggers (``TRIGGERS``)
-----------------------
Additive, ℓ2-bounded triggers (the certified threat model): a fixed pattern ``p`` with ``‖p‖₂ = δ``
is added, ``x ← clamp(x + p, 0, 1)``:

- ``onepixel``  -- one spatial location, every channel ``+= δ/√C``. MNIST (1×28×28): pixel (23, 23)
  ``+= δ``; CIFAR (3×32×32): pixel (15, 15) of each channel ``+= δ/√3``. Other sizes: a 32×32 image
  uses (15, 15); any other H×W uses (H−5, W−5) (MNIST's position measured from the bottom-right
  corner), clipped into the image.
- ``fourpixel`` -- four locations around a centre ``(r, c)``: ``(r−1, c+1), (r, c), (r+1, c−1),
  (r+1, c+1)``, every channel of each ``+= δ/√(4C)``. MNIST: centre (19, 19) → (18,20), (19,19),
  (20,18), (20,20), each ``+= δ/2``; CIFAR: centre (15, 15) → (14,16), (15,15), (16,14), (16,16),
  each ``+= δ/√12``. Other sizes: a 32×32 image uses centre (15, 15); any other H×W uses
  (H−9, W−9), clipped to [1, H−2] × [1, W−2] (needs H, W ≥ 3).
- ``blending``  -- a fixed standard-Gaussian pattern of shape (C, H, W) drawn from a CPU
  ``torch.Generator`` seeded with ``pattern_seed``, rescaled to ``‖p‖₂ = δ``.

Clamping to [0, 1] can shrink the perturbation, so every function returns the *realised* per-sample
norms ``‖x_trig − x‖₂``, never only the nominal δ.

Practical triggers (not norm-bounded by design; ``δ`` is ignored, the realised norm is reported):

- ``badnets`` -- a white ``badnets_size × badnets_size`` square in the bottom-right corner with a
  1-pixel margin (rows and columns ``[H−1−s, H−1)``), every channel set to 1.0.
- ``blend``   -- ``x ← (1 − a)·x + a·pattern``, ``pattern`` a fixed uniform-[0, 1] image of shape
  (C, H, W) from ``pattern_seed``, ``a = blend_alpha``.

Attacks (``ATTACKS``)
---------------------
- ``none`` -- no poisoning.
- every trigger name -- the classic backdoor: ``round(poison_rate·N)`` non-target samples get the
  trigger and the label ``target``, in place.
- ``abstain`` / ``radius_collapse`` -- attacks on certifiers (Lorenz, Kwiatkowska, Fritz): triggered
  *copies* of ``round(poison_rate·N)`` random training points are appended with labels chosen to
  make the smoothed classifier abstain (random labels other than the true one) or to collapse the
  certified radius (the runner-up class of a clean model, so ``p_A ≈ p_B``).

The joint perturbation norm of an attack is ``‖Δ‖ = sqrt(Σ_i ‖δ_i‖² + ‖δ_x‖²)``
(:meth:`PoisonResult.joint_norm`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from certssb.core.validation import choice, fail, number, positive

__all__ = [
    "TRIGGERS",
    "ADDITIVE_TRIGGERS",
    "CERTIFIER_ATTACKS",
    "ATTACKS",
    "TRIGGER_DEFAULTS",
    "PoisonResult",
    "trigger_perturbation",
    "apply_trigger",
    "poison",
    "class_mean_scores",
    "make_triggered_test",
    "attack_trigger",
    "poison_count",
]

TRIGGERS: tuple[str, ...] = ("onepixel", "fourpixel", "blending", "badnets", "blend")
"""All trigger names; each is also a backdoor attack name."""

ADDITIVE_TRIGGERS: tuple[str, ...] = ("onepixel", "fourpixel", "blending")
"""The triggers that are a fixed additive pattern with ℓ2 norm exactly δ (before clamping)."""

CERTIFIER_ATTACKS: tuple[str, ...] = ("abstain", "radius_collapse")
"""Attacks on the certifier (Lorenz et al.): they append triggered copies to the training set."""

ATTACKS: tuple[str, ...] = ("none",) + TRIGGERS + CERTIFIER_ATTACKS
"""Every value ``attack.name`` may take."""

TRIGGER_DEFAULTS: dict[str, Any] = {"pattern_seed": 1234, "badnets_size": 3, "blend_alpha": 0.2}
"""The keyword arguments a trigger accepts (``**trigger_kwargs``) and their defaults."""


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------


def _check_trigger_kwargs(trigger_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Merge ``trigger_kwargs`` into the defaults; unknown names or bad values raise ConfigError."""
    for key in trigger_kwargs:
        if key not in TRIGGER_DEFAULTS:
            fail(f"attack.{key}", trigger_kwargs[key],
                 "unknown trigger option; allowed options are " + ", ".join(TRIGGER_DEFAULTS))
    kw = {**TRIGGER_DEFAULTS, **trigger_kwargs}
    number("attack.pattern_seed", kw["pattern_seed"], integer=True)
    positive("attack.badnets_size", kw["badnets_size"], integer=True)
    number("attack.blend_alpha", kw["blend_alpha"], low=0, high=1)
    return kw


def _check_images(name: str, x: Any) -> torch.Tensor:
    """``x`` must be a floating tensor of shape (N, C, H, W)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        fail(name, got, "must be a floating-point tensor of shape (N, C, H, W) in [0, 1]")
    return x


def _check_labels(name: str, y: Any, n: int) -> torch.Tensor:
    """``y`` must be an integer tensor of shape (n,)."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        fail(name, got, f"must be an integer tensor of shape ({n},)")
    if y.shape[0] != n:
        fail(name, tuple(y.shape), f"must have one label per image, shape ({n},)")
    return y


def poison_count(poison_rate: float, n_samples: int) -> int:
    """Number of poisoned samples: ``round(poison_rate · N)``, rounded half up (0.5 → 1)."""
    return int(math.floor(poison_rate * n_samples + 0.5))


def _smallest_rate(n_samples: int) -> float:
    """The smallest ``poison_rate`` for which :func:`poison_count` is at least 1."""
    rate = 0.5 / n_samples
    while poison_count(rate, n_samples) < 1:  # guards against floating-point rounding
        rate = math.nextafter(rate, 1.0)
    return rate


# ----------------------------------------------------------------------------------------------
# triggers
# ----------------------------------------------------------------------------------------------


def _clip(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def trigger_perturbation(
    trigger: str,
    shape: tuple[int, int, int],
    delta: float,
    *,
    pattern_seed: int = 1234,
    badnets_size: int = 3,
    blend_alpha: float = 0.2,
) -> torch.Tensor | None:
    """The additive pattern ``p`` (float32, shape ``(C, H, W)``) of an ℓ2-bounded trigger, ``‖p‖₂ = δ``.

    - ``onepixel``: location (23, 23) on 28×28, (15, 15) on 32×32, (H−5, W−5) otherwise; each of the
      C channels gets ``δ/√C`` (MNIST: ``+δ``; CIFAR: ``+δ/√3``).
    - ``fourpixel``: centre (r, c) = (19, 19) on 28×28 ((H−9, W−9) in general), (15, 15) on 32×32;
      pixels (r−1, c+1), (r, c), (r+1, c−1), (r+1, c+1), each channel ``+δ/√(4C)``
      (MNIST ``+δ/2``; CIFAR ``+δ/√12``).
    - ``blending``: a standard-Gaussian pattern from ``torch.Generator().manual_seed(pattern_seed)``
      (drawn in float64 on the CPU), rescaled to ℓ2 norm δ.

    ``badnets`` and ``blend`` are not a fixed additive pattern (they overwrite / mix pixels), so for
    them this returns ``None``; :func:`apply_trigger` handles them. ``badnets_size`` and
    ``blend_alpha`` are accepted (and ignored) so that one ``**trigger_kwargs`` fits every function.
    """
    choice("attack.trigger", trigger, TRIGGERS)
    number("attack.delta", delta, low=0)
    _check_trigger_kwargs(
        {"pattern_seed": pattern_seed, "badnets_size": badnets_size, "blend_alpha": blend_alpha}
    )
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)):
        fail("shape", shape, "must be (C, H, W) with positive integers")
    if trigger not in ADDITIVE_TRIGGERS:
        return None
    c, h, w = (int(s) for s in shape)
    p = torch.zeros((c, h, w), dtype=torch.float64)
    if trigger == "onepixel":
        if (h, w) == (32, 32):
            r, q = 15, 15
        else:
            r, q = _clip(h - 5, 0, h - 1), _clip(w - 5, 0, w - 1)
        p[:, r, q] = delta / math.sqrt(c)
    elif trigger == "fourpixel":
        if h < 3 or w < 3:
            fail("shape", tuple(shape), "the fourpixel trigger needs images of at least 3×3 pixels")
        if (h, w) == (32, 32):
            r, q = 15, 15
        else:
            r, q = _clip(h - 9, 1, h - 2), _clip(w - 9, 1, w - 2)
        value = delta / math.sqrt(4 * c)
        for dr, dq in ((-1, 1), (0, 0), (1, -1), (1, 1)):
            p[:, r + dr, q + dq] = value
    else:  # blending
        g = torch.Generator().manual_seed(pattern_seed)
        z = torch.randn((c, h, w), generator=g, dtype=torch.float64)
        p = z * (delta / z.norm())
    return p.to(torch.float32)


def _realised_norms(x_trig: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ``‖x_trig − x‖₂`` (computed in float64, returned as float32, shape (N,))."""
    return (x_trig.double() - x.double()).flatten(1).norm(dim=1).to(torch.float32)


def apply_trigger(
    x: torch.Tensor, trigger: str, delta: float, **trigger_kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``trigger`` to every image of ``x`` (N, C, H, W) in [0, 1]; ``x`` is never modified.

    Returns ``(x_triggered, norms)``: the triggered images clamped to [0, 1] and the realised
    per-sample ℓ2 norms ``‖x_triggered − x‖₂`` (N,), which are ≤ δ for the additive triggers and
    lower than δ where clamping bites.

    - additive triggers: ``clamp(x + p, 0, 1)`` with ``p`` from :func:`trigger_perturbation`.
    - ``badnets``: the ``badnets_size × badnets_size`` square at rows/columns ``[H−1−s, H−1)`` (the
      bottom-right corner, 1-pixel margin) set to 1.0 in every channel; δ is ignored.
    - ``blend``: ``(1 − a)·x + a·pattern`` with ``pattern`` uniform in [0, 1] from
      ``pattern_seed`` and ``a = blend_alpha``; δ is ignored.

    ``trigger_kwargs``: ``pattern_seed`` (1234), ``badnets_size`` (3), ``blend_alpha`` (0.2).
    """
    _check_images("x", x)
    choice("attack.trigger", trigger, TRIGGERS)
    number("attack.delta", delta, low=0)
    kw = _check_trigger_kwargs(trigger_kwargs)
    _, c, h, w = x.shape
    if trigger in ADDITIVE_TRIGGERS:
        p = trigger_perturbation(trigger, (c, h, w), delta, **kw)
        assert p is not None
        x_trig = (x + p.to(device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)
    elif trigger == "badnets":
        s = kw["badnets_size"]
        if s + 1 > min(h, w):
            fail("attack.badnets_size", s,
                 f"the square plus its 1-pixel margin must fit in a {h}×{w} image (at most {min(h, w) - 1})")
        x_trig = x.clone()
        x_trig[:, :, h - 1 - s:h - 1, w - 1 - s:w - 1] = 1.0
    else:  # blend
        a = float(kw["blend_alpha"])
        g = torch.Generator().manual_seed(kw["pattern_seed"])
        pattern = torch.rand((c, h, w), generator=g, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
        x_trig = ((1.0 - a) * x + a * pattern).clamp(0.0, 1.0)
    return x_trig, _realised_norms(x_trig, x)


def attack_trigger(attack: str, trigger: str) -> str | None:
    """The trigger used at test time by ``attack``.

    ``None`` for ``none``; the attack itself for a backdoor trigger attack (e.g. ``onepixel``);
    ``trigger`` for the certifier attacks ``abstain`` / ``radius_collapse``.
    """
    choice("attack.name", attack, ATTACKS)
    if attack == "none":
        return None
    if attack in TRIGGERS:
        return attack
    return choice("attack.trigger", trigger, TRIGGERS)


# ----------------------------------------------------------------------------------------------
# poisoning
# ----------------------------------------------------------------------------------------------


@dataclass
class PoisonResult:
    """A poisoned training set and what the attack did to it.

    ``indices[i]`` is the position in ``x``/``y`` of the i-th touched (backdoor, in place) or
    appended (certifier attack) sample, ``source_indices[i]`` the original training index it was made
    from, ``original_labels[i]`` that sample's true label, ``new_labels[i]`` the label it now carries,
    and ``norms[i]`` the realised ℓ2 norm of its trigger.
    """

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    source_indices: torch.Tensor
    original_labels: torch.Tensor
    new_labels: torch.Tensor
    norms: torch.Tensor
    attack: str = "none"
    trigger: str | None = None

    def joint_norm(self, test_trigger_norm: float = 0.0) -> float:
        """``‖Δ‖ = sqrt(Σ_i ‖δ_i‖² + ‖δ_x‖²)``: the joint norm of training and test-time perturbations."""
        number("test_trigger_norm", test_trigger_norm, low=0)
        total = float((self.norms.double() ** 2).sum()) + float(test_trigger_norm) ** 2
        return math.sqrt(total)

    def report(self) -> dict[str, list]:
        """One row per touched/added sample: index, source_index, original_label, new_label, trigger_l2."""
        return {
            "index": [int(v) for v in self.indices.tolist()],
            "source_index": [int(v) for v in self.source_indices.tolist()],
            "original_label": [int(v) for v in self.original_labels.tolist()],
            "new_label": [int(v) for v in self.new_labels.tolist()],
            "trigger_l2": [float(v) for v in self.norms.tolist()],
        }


def class_mean_scores(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Scores of a cheap, deterministic clean model: the nearest-class-mean classifier.

    ``scores[i, c] = −‖x_i − μ_c‖₂²`` with ``μ_c`` the mean of the (flattened) images of class c
    (higher = more likely). Classes with no sample score ``−inf``. Returns float32 ``(N, num_classes)``.
    """
    _check_images("x", x)
    positive("num_classes", num_classes, integer=True)
    y = _check_labels("y", y, x.shape[0])
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        fail("num_classes", num_classes, f"labels must lie in [0, num_classes); got labels up to {int(y.max())}")
    flat = x.detach().flatten(1).double()
    y = y.to(flat.device).long()
    sums = torch.zeros((num_classes, flat.shape[1]), dtype=torch.float64, device=flat.device)
    sums.index_add_(0, y, flat)
    counts = torch.bincount(y, minlength=num_classes).to(torch.float64)
    means = sums / counts.clamp_min(1.0).unsqueeze(1)
    d2 = ((flat ** 2).sum(1, keepdim=True) - 2.0 * flat @ means.T + (means ** 2).sum(1).unsqueeze(0))
    scores = -d2.clamp_min(0.0)
    scores[:, counts == 0] = -math.inf
    return scores.to(torch.float32)


def _runner_up_labels(scores: torch.Tensor, true_labels: torch.Tensor) -> torch.Tensor:
    """The highest-scoring class other than the true label (the runner-up when the top class is right)."""
    s = scores.double()
    finfo = torch.finfo(torch.float64)
    s = s.clamp(finfo.min, finfo.max)  # -inf of other classes must still beat the masked true class
    s[torch.arange(s.shape[0]), true_labels] = -math.inf
    return s.argmax(dim=1)


def poison(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attack: str,
    poison_rate: float,
    target: int,
    delta: float,
    num_classes: int,
    seed: int,
    trigger: str = "onepixel",
    scores: torch.Tensor | None = None,
    **trigger_kwargs: Any,
) -> PoisonResult:
    """Poison a training set ``(x, y)`` with ``attack``; deterministic for a given ``seed``.

    ``n = round(poison_rate · N)`` (half up). ``x``/``y`` are never modified in place.

    - ``none``: returns ``x``, ``y`` and empty index tensors; all other parameters are ignored.
    - a trigger name (backdoor): ``n`` samples chosen uniformly at random (seeded) among those with
      ``y ≠ target`` get the trigger and the label ``target`` at their own positions (N' = N).
      ``trigger`` is not used: the attack name is the trigger.
    - ``abstain``: ``n`` training points chosen uniformly at random from all classes; triggered copies
      (``trigger``, ``delta``) are appended (N' = N + n) with labels uniform over all classes except
      the source's true label, so the votes on triggered inputs split and the smoothed classifier
      abstains.
    - ``radius_collapse``: as ``abstain`` but each copy is labelled with the highest-scoring class of
      a clean model other than the true label (the runner-up when the clean model is right), from
      ``scores`` (N, num_classes) -- e.g. :func:`class_mean_scores` -- so that ``p_A ≈ p_B`` and R → 0.

    Raises ConfigError for an unknown ``attack.name``/``attack.trigger``, ``attack.poison_rate``
    outside [0, 1], ``attack.target`` outside [0, num_classes), ``attack.delta`` < 0, a rate that
    poisons zero samples, or more samples than are available.
    """
    choice("attack.name", attack, ATTACKS)
    _check_images("x", x)
    n_total = x.shape[0]
    y = _check_labels("y", y, n_total)
    empty_long = torch.zeros(0, dtype=torch.long)
    if attack == "none":
        return PoisonResult(x=x, y=y, indices=empty_long, source_indices=empty_long.clone(),
                            original_labels=empty_long.clone(), new_labels=empty_long.clone(),
                            norms=torch.zeros(0, dtype=torch.float32), attack="none", trigger=None)

    number("attack.poison_rate", poison_rate, low=0, high=1)
    positive("num_classes", num_classes, integer=True)
    number("attack.target", target, low=0, high=num_classes, high_open=True, integer=True)
    number("attack.delta", delta, low=0)
    choice("attack.trigger", trigger, TRIGGERS)
    number("seed", seed, integer=True)
    _check_trigger_kwargs(trigger_kwargs)
    if n_total == 0:
        fail("x", tuple(x.shape), "the training set is empty; nothing can be poisoned")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        fail("num_classes", num_classes,
             f"labels must lie in [0, num_classes); got labels in [{int(y.min())}, {int(y.max())}]")

    n = poison_count(poison_rate, n_total)
    if n == 0:
        fail("attack.poison_rate", poison_rate,
             f"poisons zero samples: round(poison_rate * N) = 0 with N = {n_total} training samples; "
             f"the smallest rate that poisons one sample is {_smallest_rate(n_total):.6g} "
             f"(use attack.name = 'none' for no attack)")
    g = torch.Generator().manual_seed(seed)
    y_long = y.long()

    if attack in TRIGGERS:
        candidates = torch.nonzero(y_long.cpu() != target).flatten()
        if n > candidates.numel():
            fail("attack.poison_rate", poison_rate,
                 f"poisons round(poison_rate * N) = {n} of N = {n_total} samples but only "
                 f"{candidates.numel()} samples are not of the target class {target}; the largest "
                 f"allowed rate is {candidates.numel() / n_total:.6g}")
        chosen = candidates[torch.randperm(candidates.numel(), generator=g)[:n]].sort().values
        idx = chosen.to(x.device)
        x_trig, norms = apply_trigger(x[idx], attack, delta, **trigger_kwargs)
        x_out = x.clone()
        x_out[idx] = x_trig
        y_out = y_long.clone()
        original = y_long[idx].cpu()
        y_out[idx] = target
        return PoisonResult(x=x_out, y=y_out, indices=chosen.clone(), source_indices=chosen.clone(),
                            original_labels=original, new_labels=torch.full((n,), target, dtype=torch.long),
                            norms=norms.cpu(), attack=attack, trigger=attack)

    # certifier attacks: append triggered copies of n random training points from all classes
    if attack == "abstain" and num_classes < 2:
        fail("num_classes", num_classes, "the abstain attack needs at least 2 classes")
    if n > n_total:  # poison_rate <= 1 makes this impossible; kept as a guard
        fail("attack.poison_rate", poison_rate, f"must give at most N = {n_total} samples")
    chosen = torch.randperm(n_total, generator=g)[:n].sort().values
    idx = chosen.to(x.device)
    original = y_long[idx].cpu()
    if attack == "abstain":
        r = torch.randint(0, num_classes - 1, (n,), generator=g)
        new_labels = r + (r >= original).long()  # uniform over the classes != true label
    else:  # radius_collapse
        if scores is None:
            fail("scores", None,
                 "the radius_collapse attack needs a clean model's scores (N, num_classes) for the "
                 "training points, e.g. class_mean_scores(x, y, num_classes)")
        assert scores is not None
        if (not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (n_total, num_classes)
                or not scores.is_floating_point()):
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            fail("scores", got, f"must be a floating-point tensor of shape ({n_total}, {num_classes})")
        if torch.isnan(scores).any():
            fail("scores", "NaN", "must not contain NaN")
        if num_classes < 2:
            fail("num_classes", num_classes, "the radius_collapse attack needs at least 2 classes")
        new_labels = _runner_up_labels(scores.detach().cpu()[chosen], original)
    x_trig, norms = apply_trigger(x[idx], trigger, delta, **trigger_kwargs)
    x_out = torch.cat([x, x_trig], dim=0)
    y_out = torch.cat([y_long, new_labels.to(y.device)], dim=0)
    return PoisonResult(x=x_out, y=y_out, indices=torch.arange(n_total, n_total + n, dtype=torch.long),
                        source_indices=chosen.clone(), original_labels=original, new_labels=new_labels,
                        norms=norms.cpu(), attack=attack, trigger=trigger)


def make_triggered_test(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    trigger: str,
    delta: float,
    target: int | None,
    **trigger_kwargs: Any,
) -> dict[str, Any]:
    """The triggered test set, for certified accuracy and attack success rate under the trigger.

    With ``target`` given (backdoor attacks) only inputs whose true label is not ``target`` are kept
    -- a target-class image that ends in the target class is no attack success (BackdoorBox's
    triggered set kept them); the size is checked against the number of non-target samples. With
    ``target = None`` (certifier attacks) every input is kept.

    Returns ``{"x": triggered images, "y": true labels (int64), "target_y": the target label for the
    attack success rate (-1 everywhere when target is None), "source_index": index into the clean
    test set (int64), "norms": realised per-sample trigger norms (float32)}``.
    """
    _check_images("x", x)
    y = _check_labels("y", y, x.shape[0])
    choice("attack.trigger", trigger, TRIGGERS)
    number("attack.delta", delta, low=0)
    _check_trigger_kwargs(trigger_kwargs)
    y_long = y.long()
    if target is None:
        keep = torch.arange(x.shape[0], dtype=torch.long)
        target_value = -1
    else:
        number("attack.target", target, low=0, integer=True)
        keep = torch.nonzero(y_long.cpu() != target).flatten()
        expected = int((y_long != target).sum())
        if keep.numel() != expected:  # the BackdoorBox bug: a triggered set with target-class images
            raise AssertionError(f"triggered test set has {keep.numel()} samples, expected {expected}")
        if keep.numel() == 0:
            fail("attack.target", target, "every test sample is of the target class; no triggered test set")
        target_value = int(target)
    idx = keep.to(x.device)
    x_trig, norms = apply_trigger(x[idx], trigger, delta, **trigger_kwargs)
    out = {
        "x": x_trig,
        "y": y_long[idx].clone(),
        "target_y": torch.full((keep.numel(),), target_value, dtype=torch.long, device=y.device),
        "source_index": keep.clone(),
        "norms": norms.cpu(),
    }
    if target is not None:
        assert out["x"].shape[0] == expected and not bool((out["y"] == target).any())
    return out
