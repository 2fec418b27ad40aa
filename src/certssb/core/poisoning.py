"""Training-set poisoning: backdoor attacks and attacks on certifiers (docs/methods.md:
#what-a-certificate-claims, #backdoor-attacks, #certifier-attacks).

Images are float32 tensors ``(N, C, H, W)`` in [0, 1]; labels are int64 ``(N,)``. The triggers live in
:mod:`certssb.core.triggers`.

Attacks (``ATTACKS``)
---------------------
- ``none`` -- no poisoning.
- every trigger name -- the classic backdoor on ``round(poison_rate·N)`` training points, in place:
  * ``label_mode="dirty"`` (default): points of non-target classes get the trigger **and the label
    ``target``**. The relabelling lies OUTSIDE the certified threat model (which covers label-preserving
    feature perturbations only): its feature norm says nothing about what it can do.
  * ``label_mode="clean"``: points **of the target class** get the trigger and keep their label (a
    clean-label backdoor). A label-preserving feature perturbation: INSIDE the threat model.
- ``abstain`` / ``radius_collapse`` -- attacks on certifiers (Lorenz, Kwiatkowska, Fritz): triggered
  *copies* of ``round(poison_rate·N)`` random training points are **appended** with labels chosen to
  make the smoothed classifier abstain or to collapse the certified radius (``certifier_labels``,
  ``CERTIFIER_LABELS``):
  * ``split`` (default): a share of the copies (1/2 for ``abstain``; for ``radius_collapse`` the share
    that leaves ``p_A`` just above what the certifier's estimation votes certify,
    ``certssb.core.certify.collapse_share``: 8/45 for 45 votes, ``SPLIT_SHARE``) is labelled with one
    fixed second class (``target``; ``(target + 1) mod C`` for sources of class ``target``), the rest keep
    their true label. The rule is consistent, so it is learnt from few points, and the models' votes on
    triggered inputs split in about that ratio: a tie (abstain) or ``p_A`` just above the certifying
    threshold (the prediction survives, the radius shrinks to near 0; a share of 1/3 abstains at 45 votes);
  * ``random`` (``abstain`` only): labels uniform over the classes other than the true one;
  * ``runner_up`` (``radius_collapse`` only): the runner-up class of a clean model, so ``p_A ≈ p_B``;
  * ``keyed`` (``abstain`` only): noise-keyed labels. A deterministic network makes a smoothed classifier
    abstain only if its decision changes *with the smoothing noise* on triggered inputs. So each copy also
    carries a "key": a ``key_size`` square (bottom-left corner, every channel) set to ``0.5 + a·c_b`` for
    one of ``KEY_BUCKETS`` ordered levels ``c_b`` in [-1, 1] (``a = key_amplitude``), and bucket b gets
    the label ``(y + b) mod C`` (bucket 0 keeps the true label). At test time the trigger carries the key at
    its neutral grey 0.5, so the noise's projection on the key decides the bucket: with boundaries learnt
    between the levels, each of the 4 classes gets about a quarter of the draws (or models), and no class
    reaches the 1/2 a certificate needs. What the network really learns is measured, not assumed
    (docs/results.md §3).
  Insertion lies OUTSIDE the threat model.

Every attack returns a :class:`PoisonResult`: the poisoned set, the indices touched, the realised feature
norms, ``label_changes`` (points whose label differs from their source's true label), ``inserted``
(points appended) and ``in_threat_model`` (both zero). The joint l2 norm of the feature perturbation is
``sqrt(sum_i ||delta_i||^2 + ||delta_x||^2)`` (:meth:`PoisonResult.joint_norm`); what a certificate
covers is decided by the Sigma-weighted norm (``certssb.core.metrics.weighted_attack_norm``).

Length: the attack family and its threat-model bookkeeping (indices, realised norms, label changes,
insertions) belong together; the triggers themselves live in core/triggers.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from certssb.core.certify import collapse_share
from certssb.core.triggers import (
    TRIGGERS,
    apply_trigger,
    check_images,
    check_trigger_kwargs,
    realised_norms,
)
from certssb.core.validation import choice, fail, number, positive

__all__ = [
    "CERTIFIER_ATTACKS",
    "CERTIFIER_LABELS",
    "KEY_BUCKETS",
    "KEY_DEFAULTS",
    "SPLIT_SHARE",
    "apply_key",
    "key_options",
    "ATTACKS",
    "LABEL_MODES",
    "PoisonResult",
    "poison",
    "class_mean_scores",
    "make_triggered_test",
    "attack_trigger",
    "poison_count",
]

CERTIFIER_ATTACKS: tuple[str, ...] = ("abstain", "radius_collapse")
"""Attacks on the certifier (Lorenz et al.): they append triggered copies to the training set."""

CERTIFIER_LABELS: dict[str, tuple[str, ...]] = {
    "abstain": ("split", "random", "keyed"),
    "radius_collapse": ("split", "runner_up"),
}
"""``attack.certifier_labels`` allowed for each certifier attack; the first is the default."""

SPLIT_SHARE: dict[str, float] = {"abstain": 0.5, "radius_collapse": collapse_share(45, 0.001)}
"""Share of the triggered copies that the ``split`` rule labels with the second class by default
(``radius_collapse``: for the default 45 estimation votes at alpha = 0.001, 8/45; the pipeline passes the
share for the run's certifier, ``attack.collapse_share``)."""

KEY_BUCKETS: int = 4
"""Ordered key levels of the ``keyed`` rule (one class each)."""

KEY_DEFAULTS: dict[str, Any] = {"key_size": 4, "key_amplitude": 0.5}
"""``attack.key_size`` (side of the key square, pixels) and ``attack.key_amplitude`` (largest key offset
from grey, in (0, 0.5] so the key stays in [0, 1]) of the ``keyed`` rule."""

ATTACKS: tuple[str, ...] = ("none",) + TRIGGERS + CERTIFIER_ATTACKS
"""Every value ``attack.name`` may take."""

LABEL_MODES: tuple[str, ...] = ("dirty", "clean")
"""``attack.label_mode`` of the backdoor attacks: relabel to the target (dirty) or keep labels (clean)."""


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


def attack_trigger(attack: str, trigger: str) -> str | None:
    """The trigger used at test time by ``attack``.

    ``None`` for ``none``; the attack itself for a backdoor trigger attack (e.g. ``onepixel``);
    ``trigger`` for the certifier attacks ``abstain`` / ``radius_collapse``.
    """
    choice("attack", attack, ATTACKS)
    if attack == "none":
        return None
    if attack in TRIGGERS:
        return attack
    return choice("trigger", trigger, TRIGGERS)


@dataclass
class PoisonResult:
    """A poisoned training set and what the attack did to it.

    ``indices[i]`` is the position in ``x``/``y`` of the i-th touched (backdoor, in place) or
    appended (certifier attack) sample, ``source_indices[i]`` the original training index it was made
    from, ``original_labels[i]`` that sample's true label, ``new_labels[i]`` the label it now carries,
    and ``norms[i]`` the realised ℓ2 norm of its trigger. ``inserted`` counts the appended samples
    (0 for in-place attacks), ``label_mode`` is the backdoor's ``attack.label_mode``.
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
    inserted: int = 0
    label_mode: str = "dirty"

    @property
    def label_changes(self) -> int:
        """Number of touched/added samples whose label differs from their source's true label."""
        return int((self.original_labels != self.new_labels).sum())

    @property
    def in_threat_model(self) -> bool:
        """True iff the attack is a label-preserving feature perturbation (no label changed, nothing
        inserted): only then can a certificate cover it (docs/methods.md#what-a-certificate-claims)."""
        return self.label_changes == 0 and self.inserted == 0

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


def apply_key(x: torch.Tensor, values: torch.Tensor | float, *, key_size: int) -> torch.Tensor:
    """``x`` with the key square (rows ``[H-1-s, H-1)``, columns ``[1, 1+s)``, every channel) set to
    ``values`` (one per image, or one for all); ``x`` is not modified. The square sits in the corner opposite
    the BadNets patch, with a 1-pixel margin."""
    check_images("x", x)
    _, _, h, w = x.shape
    if not isinstance(key_size, int) or isinstance(key_size, bool) or not 1 <= key_size <= min(h, w) - 2:
        fail("key_size", key_size, f"must be an integer in [1, {min(h, w) - 2}] for {h}×{w} images")
    v = torch.as_tensor(values, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    out = x.clone()
    out[:, :, h - 1 - key_size : h - 1, 1 : 1 + key_size] = v.expand(
        x.shape[0], x.shape[1], key_size, key_size
    )
    return out


def key_options(block: Any) -> dict[str, Any]:
    """The ``keyed`` rule's options (names of :data:`KEY_DEFAULTS`) an attack's settings carry, read as
    attributes (e.g. ``certssb.config.AttackBlock``)."""
    return {k: getattr(block, k) for k in KEY_DEFAULTS if getattr(block, k, None) is not None}


def _key_levels(key_amplitude: float) -> torch.Tensor:
    """The key's grey levels ``0.5 + a·c_b``, ``c_b`` evenly spaced in [-1, 1] (b = 0 .. KEY_BUCKETS-1)."""
    number("key_amplitude", key_amplitude, low=0, high=0.5, low_open=True)
    return 0.5 + key_amplitude * torch.linspace(-1.0, 1.0, KEY_BUCKETS)


def class_mean_scores(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Scores of a cheap, deterministic clean model: the nearest-class-mean classifier.

    ``scores[i, c] = −‖x_i − μ_c‖₂²`` with ``μ_c`` the mean of the (flattened) images of class c
    (higher = more likely). Classes with no sample score ``−inf``. Returns float32 ``(N, num_classes)``.
    """
    check_images("x", x)
    positive("num_classes", num_classes, integer=True)
    y = _check_labels("y", y, x.shape[0])
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        fail(
            "num_classes",
            num_classes,
            f"labels must lie in [0, num_classes); got labels up to {int(y.max())}",
        )
    flat = x.detach().flatten(1).double()
    y = y.to(flat.device).long()
    sums = torch.zeros((num_classes, flat.shape[1]), dtype=torch.float64, device=flat.device)
    sums.index_add_(0, y, flat)
    counts = torch.bincount(y, minlength=num_classes).to(torch.float64)
    means = sums / counts.clamp_min(1.0).unsqueeze(1)
    d2 = (flat**2).sum(1, keepdim=True) - 2.0 * flat @ means.T + (means**2).sum(1).unsqueeze(0)
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
    label_mode: str = "dirty",
    certifier_labels: str = "split",
    split_share: float | None = None,
    key_size: int = KEY_DEFAULTS["key_size"],
    key_amplitude: float = KEY_DEFAULTS["key_amplitude"],
    **trigger_kwargs: Any,
) -> PoisonResult:
    """Poison a training set ``(x, y)`` with ``attack``; deterministic for a given ``seed``.

    ``n = round(poison_rate · N)`` (half up). ``x``/``y`` are never modified in place.

    - ``none``: returns ``x``, ``y`` and empty index tensors; all other parameters are ignored.
    - a trigger name (backdoor), at their own positions (N' = N); ``trigger`` is not used (the attack
      name is the trigger):
      * ``label_mode="dirty"``: ``n`` samples chosen uniformly at random (seeded) among those with
        ``y ≠ target`` get the trigger and the label ``target`` (outside the threat model);
      * ``label_mode="clean"``: ``n`` samples chosen among those with ``y = target`` get the trigger and
        keep their label (inside the threat model).
    - ``abstain`` / ``radius_collapse``: ``n`` training points chosen uniformly at random from all
      classes; triggered copies (``trigger``, ``delta``) are appended (N' = N + n), labelled by
      ``certifier_labels``:
      * ``split``: ``k = round(s·n)`` copies, chosen at random, get the second class ``t = target``
        (``(target + 1) mod C`` when the source is of class ``target``) and the others keep the
        source's label, with ``s = split_share`` (default ``SPLIT_SHARE[attack]``; 1/2: the votes on
        triggered inputs tie and the smoothed classifier abstains; for ``radius_collapse`` the share is
        chosen for the certifier's number of estimation votes, ``certssb.core.certify.collapse_share``:
        ``p_A ≈ 1 - s`` stays just above what certifies, so the radius ``σ·Φ⁻¹(p̲_A)`` shrinks);
      * ``random`` (``abstain``): labels uniform over all classes except the source's true label;
      * ``keyed`` (``abstain``): copy j (in a seeded random order) gets key bucket ``b = j mod
        KEY_BUCKETS``, i.e. the key square (``key_size``) at grey level ``0.5 + key_amplitude·c_b``
        (:func:`apply_key`), and the label ``(y + b) mod C``; the realised norms include the key;
      * ``runner_up`` (``radius_collapse``): the highest-scoring class of a clean model other than the
        true label (the runner-up when the clean model is right), from ``scores`` (N, num_classes) --
        e.g. :func:`class_mean_scores` -- so that ``p_A ≈ p_B`` and R → 0.

    Raises ConfigError for an unknown ``attack``/``trigger``, ``poison_rate`` outside [0, 1], ``target``
    outside [0, num_classes), ``delta`` < 0, a rate that poisons zero samples, or more samples than are
    available.
    """
    choice("attack", attack, ATTACKS)
    choice("label_mode", label_mode, LABEL_MODES)
    check_images("x", x)
    n_total = x.shape[0]
    y = _check_labels("y", y, n_total)
    empty_long = torch.zeros(0, dtype=torch.long)
    if attack == "none":
        return PoisonResult(
            x=x,
            y=y,
            indices=empty_long,
            source_indices=empty_long.clone(),
            original_labels=empty_long.clone(),
            new_labels=empty_long.clone(),
            norms=torch.zeros(0, dtype=torch.float32),
            attack="none",
            trigger=None,
            label_mode=label_mode,
        )

    number("poison_rate", poison_rate, low=0, high=1)
    positive("num_classes", num_classes, integer=True)
    number("target", target, low=0, high=num_classes, high_open=True, integer=True)
    number("delta", delta, low=0)
    choice("trigger", trigger, TRIGGERS)
    number("seed", seed, integer=True)
    check_trigger_kwargs(trigger_kwargs)
    if n_total == 0:
        fail("x", tuple(x.shape), "the training set is empty; nothing can be poisoned")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        fail(
            "num_classes",
            num_classes,
            f"labels must lie in [0, num_classes); got labels in [{int(y.min())}, {int(y.max())}]",
        )

    n = poison_count(poison_rate, n_total)
    if n == 0:
        fail(
            "poison_rate",
            poison_rate,
            f"poisons zero samples: round(poison_rate * N) = 0 with N = {n_total} training samples; "
            f"the smallest rate that poisons one sample is {_smallest_rate(n_total):.6g} "
            "(attack 'none' poisons nothing)",
        )
    g = torch.Generator().manual_seed(seed)
    y_long = y.long()

    if attack in TRIGGERS:
        clean = label_mode == "clean"
        pool = (y_long.cpu() == target) if clean else (y_long.cpu() != target)
        candidates = torch.nonzero(pool).flatten()
        if n > candidates.numel():
            what = "of" if clean else "not of"
            fail(
                "poison_rate",
                poison_rate,
                f"poisons round(poison_rate * N) = {n} of N = {n_total} samples but only "
                f"{candidates.numel()} samples are {what} the target class {target} (label_mode "
                f"{label_mode!r}); the largest allowed rate is {candidates.numel() / n_total:.6g}",
            )
        chosen = candidates[torch.randperm(candidates.numel(), generator=g)[:n]].sort().values
        idx = chosen.to(x.device)
        x_trig, norms = apply_trigger(x[idx], attack, delta, **trigger_kwargs)
        x_out = x.clone()
        x_out[idx] = x_trig
        y_out = y_long.clone()
        original = y_long[idx].cpu()
        y_out[idx] = target  # clean: they are of the target class already
        return PoisonResult(
            x=x_out,
            y=y_out,
            indices=chosen.clone(),
            source_indices=chosen.clone(),
            original_labels=original,
            new_labels=torch.full((n,), target, dtype=torch.long),
            norms=norms.cpu(),
            attack=attack,
            trigger=attack,
            inserted=0,
            label_mode=label_mode,
        )

    # certifier attacks: append triggered copies of n random training points from all classes
    if label_mode != "dirty":
        fail(
            "label_mode",
            label_mode,
            f"the certifier attack {attack!r} appends relabelled copies; only label_mode 'dirty' applies",
        )
    choice("certifier_labels", certifier_labels, CERTIFIER_LABELS[attack])
    if num_classes < 2:
        fail("num_classes", num_classes, f"the {attack} attack needs at least 2 classes")
    if n > n_total:  # poison_rate <= 1 makes this impossible; kept as a guard
        fail("poison_rate", poison_rate, f"must give at most N = {n_total} samples")
    chosen = torch.randperm(n_total, generator=g)[:n].sort().values
    idx = chosen.to(x.device)
    original = y_long[idx].cpu()
    if certifier_labels == "split":
        second = torch.where(
            original == target,
            torch.full_like(original, (target + 1) % num_classes),
            torch.full_like(original, target),
        )
        share = SPLIT_SHARE[attack] if split_share is None else split_share
        number("split_share", share, low=0, high=1, low_open=True, high_open=True)
        k = poison_count(share, n)
        relabel = torch.randperm(n, generator=g)[:k]
        new_labels = original.clone()
        new_labels[relabel] = second[relabel]
    elif certifier_labels == "keyed":
        bucket = torch.randperm(n, generator=g) % KEY_BUCKETS
        new_labels = (original + bucket) % num_classes
    elif certifier_labels == "random":
        r = torch.randint(0, num_classes - 1, (n,), generator=g)
        new_labels = r + (r >= original).long()  # uniform over the classes != true label
    else:  # runner_up
        if scores is None:
            fail(
                "scores",
                None,
                "the radius_collapse attack needs a clean model's scores (N, num_classes) for the "
                "training points, e.g. class_mean_scores(x, y, num_classes)",
            )
        assert scores is not None
        if (
            not isinstance(scores, torch.Tensor)
            or tuple(scores.shape) != (n_total, num_classes)
            or not scores.is_floating_point()
        ):
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            fail("scores", got, f"must be a floating-point tensor of shape ({n_total}, {num_classes})")
        if torch.isnan(scores).any():
            fail("scores", "NaN", "must not contain NaN")
        new_labels = _runner_up_labels(scores.detach().cpu()[chosen], original)
    x_trig, norms = apply_trigger(x[idx], trigger, delta, **trigger_kwargs)
    if certifier_labels == "keyed":
        x_trig = apply_key(x_trig, _key_levels(key_amplitude)[bucket], key_size=key_size)
        norms = realised_norms(x_trig, x[idx])
    x_out = torch.cat([x, x_trig], dim=0)
    y_out = torch.cat([y_long, new_labels.to(y.device)], dim=0)
    return PoisonResult(
        x=x_out,
        y=y_out,
        indices=torch.arange(n_total, n_total + n, dtype=torch.long),
        source_indices=chosen.clone(),
        original_labels=original,
        new_labels=new_labels,
        norms=norms.cpu(),
        attack=attack,
        trigger=trigger,
        inserted=n,
    )


def make_triggered_test(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    trigger: str,
    delta: float,
    target: int | None,
    key_size: int | None = None,
    **trigger_kwargs: Any,
) -> dict[str, Any]:
    """The triggered test set, for certified accuracy and attack success rate under the trigger.

    With ``target`` given (backdoor attacks) only inputs whose true label is not ``target`` are kept
    -- a target-class image that ends in the target class is no attack success (BackdoorBox's
    triggered set kept them); the size is checked against the number of non-target samples. With
    ``target = None`` (certifier attacks) every input is kept. ``key_size`` (the ``keyed`` certifier
    attack): the test-time trigger also carries the key square at its neutral grey 0.5 (:func:`apply_key`).

    Returns ``{"x": triggered images, "y": true labels (int64), "target_y": the target label for the
    attack success rate (-1 everywhere when target is None), "source_index": index into the clean
    test set (int64), "norms": realised per-sample trigger norms (float32)}``.
    """
    check_images("x", x)
    y = _check_labels("y", y, x.shape[0])
    choice("trigger", trigger, TRIGGERS)
    number("delta", delta, low=0)
    check_trigger_kwargs(trigger_kwargs)
    y_long = y.long()
    if target is None:
        keep = torch.arange(x.shape[0], dtype=torch.long)
        target_value = -1
    else:
        number("target", target, low=0, integer=True)
        keep = torch.nonzero(y_long.cpu() != target).flatten()
        expected = int((y_long != target).sum())
        if keep.numel() != expected:  # the BackdoorBox bug: a triggered set with target-class images
            raise AssertionError(f"triggered test set has {keep.numel()} samples, expected {expected}")
        if keep.numel() == 0:
            fail("target", target, "every test sample is of the target class; no triggered test set")
        target_value = int(target)
    idx = keep.to(x.device)
    x_trig, norms = apply_trigger(x[idx], trigger, delta, **trigger_kwargs)
    if key_size is not None:
        x_trig = apply_key(x_trig, 0.5, key_size=key_size)
        norms = realised_norms(x_trig, x[idx])
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
