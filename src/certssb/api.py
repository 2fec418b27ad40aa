r"""A small Python API: certify your own ``nn.Module``\ s against backdoor (poisoning) perturbations.

Threat model (docs/methods.md#what-a-certificate-claims). The smoothed classifier is
``g(D, x) = argmax_c P_{E, eps}[f_{A(D + E)}(x + eps) = c]``: model k is trained on its own noisy copy
``D + E_k`` of the training set (``E_k`` i.i.d. Gaussian, std ``sigma``, drawn ONCE per model) and votes on
``x + eps_k``. The certificate covers label-preserving ℓ2 perturbations of the training features and
the test input, jointly ``||Delta||_2 < radius``; no insertion or removal of training points and no
label changes. With one uniform ``sigma``, ``radius = sigma * R_1``,
``R_1 = 1/2 (Phi^-1(p_lower_a) - Phi^-1(p_upper_b))``, where the bounds hold with probability
``>= 1 - alpha`` over the M models (one vote each; the first ``n0`` models choose the top class, the
remaining ``M - n0`` estimate its probability). The guarantee holds only if the models really were
trained on independently noised copies (as :func:`train_ensemble` does); this class cannot check that.

Example::

    models = certssb.train_ensemble(x, y, num_models=20, sigma=0.25, model_fn=lambda: nn.Linear(2, 2))
    pred, radius = certssb.SmoothedEnsemble(models, sigma=0.25).certify(x_test, n0=5, alpha=0.001)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.stats import binomtest
from torch import nn

from certssb.core import certify as _certify
from certssb.core import noise as _noise
from certssb.core.validation import ConfigError, fail, number

ABSTAIN = _certify.ABSTAIN  # -1, as in Cohen et al.'s reference code (locuslab/smoothing)

__all__ = ["ABSTAIN", "SmoothedEnsemble", "train_ensemble"]


def _sigma(sigma: float | torch.Tensor) -> float:
    """One positive, finite sigma (uniform smoothing); a per-sample sigma is refused."""
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            fail(
                "sigma",
                f"tensor of shape {tuple(sigma.shape)}",
                "one positive number (uniform sigma); this API certifies with one sigma for every sample",
            )
        sigma = float(sigma.item())
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float))
        or not math.isfinite(sigma)
        or sigma <= 0
    ):
        fail("sigma", sigma, "a finite number > 0 (the std of the Gaussian noise)")
    return float(sigma)


def _tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] == 0:
        fail(
            name,
            type(x).__name__ if not isinstance(x, torch.Tensor) else f"tensor of shape {tuple(x.shape)}",
            "a float tensor of shape (N, ...) with N >= 1 samples",
        )
    return x


class SmoothedEnsemble:
    """The smoothed classifier of M models trained on independently noised copies (see the module docstring).

    Args:
        models: the M trained ``nn.Module``\\ s; each maps a batch ``(B, ...)`` to logits ``(B, C)``.
        sigma: the one noise std used in training and at test time (a float or a one-element tensor).
        num_classes: C; inferred from the first model's output when None.
        device: where the models run.
        seed: seed of the input noise: model k votes on ``x + sigma * Z_k`` with ``Z_k`` generated from
            (seed, k), so the same call gives the same votes.
        batch_size: inputs per forward pass.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        sigma: float | torch.Tensor,
        *,
        num_classes: int | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        batch_size: int = 256,
    ) -> None:
        if (
            isinstance(models, nn.Module)
            or not isinstance(models, Sequence)
            or len(models) == 0
            or not all(isinstance(m, nn.Module) for m in models)
        ):
            fail(
                "models", type(models).__name__, "a non-empty list of torch.nn.Module (the ensemble members)"
            )
        self.models = list(models)
        self.sigma = _sigma(sigma)
        number("seed", seed, low=0, integer=True)
        number("batch_size", batch_size, low=1, integer=True)
        if num_classes is not None:
            number("num_classes", num_classes, low=2, integer=True)
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.seed = int(seed)
        self.batch_size = int(batch_size)

    @property
    def num_models(self) -> int:
        return len(self.models)

    def _noise_seeds(self) -> list[int]:
        plan = _noise.make_noise_plan(
            seed=self.seed,
            num_models=self.num_models,
            sigma=self.sigma,
            num_draws=1,
            n_train=1,
            input_shape=[1],
        )
        return [int(s) for s in plan["test_seeds"]]

    @torch.no_grad()
    def votes(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Each model's hard vote (M, N) and softmax (M, N, C) on its own noisy copy of ``x``."""
        x = _tensor("x", x).to(self.device, torch.float32)
        votes, probs = [], []
        for model, seed in zip(self.models, self._noise_seeds()):
            model.eval().to(self.device)
            z = _noise.unit_noise(seed, x.shape, self.device)
            logits = torch.cat(
                [
                    model(x[i : i + self.batch_size] + self.sigma * z[i : i + self.batch_size])
                    for i in range(0, x.shape[0], self.batch_size)
                ]
            )
            if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
                raise ConfigError(
                    f"a model returned shape {tuple(logits.shape)} for {x.shape[0]} inputs; "
                    "models must return logits of shape (N, num_classes)"
                )
            p = torch.softmax(logits.float(), dim=1)
            votes.append(p.argmax(1).cpu())
            probs.append(p.cpu())
        c = probs[0].shape[1]
        if self.num_classes is None:
            self.num_classes = c
        elif c != self.num_classes:
            raise ConfigError(f"the models return {c} logits but num_classes = {self.num_classes}")
        return torch.stack(votes).numpy(), torch.stack(probs).double().numpy()

    def predict(self, x: torch.Tensor, *, alpha: float = 0.001) -> torch.Tensor:
        """Majority vote of the M models, ``ABSTAIN`` (-1) unless the top class beats the runner-up in a
        two-sided binomial test at level ``alpha`` (Cohen et al.'s PREDICT): wrong with probability
        ``<= alpha`` when it does not abstain."""
        number("alpha", alpha, low=0, high=1, low_open=True, high_open=True)
        v, _ = self.votes(x)
        counts = np.stack([np.bincount(col, minlength=self.num_classes) for col in v.T])
        order = np.argsort(-counts, axis=1, kind="stable")
        top, second = order[:, 0], order[:, 1]
        idx = np.arange(len(top))
        na, nb = counts[idx, top], counts[idx, second]
        pred = np.array(
            [
                a if binomtest(int(ca), int(ca + cb), 0.5).pvalue <= alpha else ABSTAIN
                for a, ca, cb in zip(top, na, nb)
            ],
            dtype=np.int64,
        )
        return torch.from_numpy(pred)

    def certify(
        self, x: torch.Tensor, n0: int = 5, alpha: float = 0.001, bound: str = "clopper_pearson"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Certified prediction and ℓ2 radius per input (``certssb.core.certify.certify``).

        The first ``n0`` models choose the top class, the other ``M - n0`` bound its probability
        (``bound``: ``clopper_pearson`` -- exact, ``radius = sigma * Phi^-1(p_lower)`` -- or ``hoeffding``).
        Returns ``(prediction, radius)``: int64 (N,) with ``ABSTAIN`` = -1 and float64 (N,), 0 where
        abstained. With probability ``>= 1 - alpha`` (per input) the smoothed prediction is constant under
        every perturbation of the threat model with ``||Delta||_2 < radius``.
        """
        v, p = self.votes(x)
        table = _certify.certify(
            v,
            p,
            self.sigma,
            labels=np.zeros(v.shape[1], dtype=np.int64),
            num_classes=self.num_classes,
            bound=bound,
            aggregation="hard",
            alpha=alpha,
            selection="split",
            n0=n0,
        )
        pred = torch.tensor(table["prediction"].to_numpy(np.int64))
        rad = torch.tensor(table["radius"].to_numpy(np.float64))
        return pred, rad


def train_ensemble(
    x: torch.Tensor,
    y: torch.Tensor,
    num_models: int,
    sigma: float | torch.Tensor,
    model_fn: Callable[[], nn.Module],
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> list[nn.Module]:
    """Train ``num_models`` fresh ``model_fn()`` modules, model k on ``x + sigma * Z_k``.

    ``Z_k`` is standard normal noise drawn ONCE per model (one noisy copy of the training set, not
    redrawn per batch: redrawing would be augmentation, not the smoothing the certificate assumes), from
    the seeds of ``certssb.core.noise.make_noise_plan(seed=seed, ...)``; initial weights and batch order of
    model k come from its own seed too, so a call is reproducible and leaves torch's global RNG unchanged.
    Adam, cross-entropy on logits ``model(x) -> (B, C)``. Returns the models in eval mode.
    """
    x = _tensor("x", x)
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
        fail(
            "y",
            type(y).__name__ if not isinstance(y, torch.Tensor) else f"tensor of shape {tuple(y.shape)}",
            f"integer class labels of shape ({x.shape[0]},)",
        )
    number("num_models", num_models, low=1, integer=True)
    s = _sigma(sigma)
    number("epochs", epochs, low=1, integer=True)
    number("batch_size", batch_size, low=1, integer=True)
    number("lr", lr, low=0, low_open=True)
    number("seed", seed, low=0, integer=True)
    if not callable(model_fn):
        fail(
            "model_fn",
            type(model_fn).__name__,
            "a function with no arguments returning a new torch.nn.Module",
        )
    dev = torch.device(device)
    plan = _noise.make_noise_plan(
        seed=seed,
        num_models=num_models,
        sigma=s,
        num_draws=1,
        n_train=x.shape[0],
        input_shape=list(x.shape[1:]),
    )
    xf, yl = x.to(dev, torch.float32), y.to(dev, torch.long)
    models = []
    for k in range(num_models):
        xk = xf + s * _noise.unit_noise(int(plan["train_seeds"][k]), xf.shape, dev)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(plan["model_seeds"][k]))
            model = model_fn()
            if not isinstance(model, nn.Module):
                fail("model_fn", type(model).__name__, "must return a torch.nn.Module")
            model.to(dev).train()
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            g = torch.Generator().manual_seed(int(plan["model_seeds"][k]))
            for _ in range(epochs):
                order = torch.randperm(xk.shape[0], generator=g).to(dev)
                for i in range(0, xk.shape[0], batch_size):
                    b = order[i : i + batch_size]
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(xk[b]), yl[b]).backward()
                    opt.step()
        models.append(model.eval())
    return models
