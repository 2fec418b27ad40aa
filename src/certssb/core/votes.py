r"""Monte-Carlo votes of the smoothed classifier over (training noise, input noise).

For test sample :math:`x_i` with its own :math:`\sigma_i` and model k (trained on :math:`D + E_k`), the K
input draws are :math:`x_i + \sigma_i \zeta_{k,d,i}` with :math:`\zeta` regenerated from the noise plan
(``noise.test_unit_noise``). Per model and sample we keep

- ``votes[k, i, c]``: the fraction of model k's K draws whose argmax is class c, a value in [0, 1]
  (one-hot when K = 1). Not the mode of the K argmaxes: the K draws share the model's training noise
  :math:`E_k`, so their mode is not a single-draw vote and the single-draw radius does not apply to it
  (docs/methods.md#what-a-certificate-claims); the fraction's expectation is the single-draw probability,
  which Hoeffding bounds;
- ``probs[k, i]``: its softmax averaged over the K draws.

Since (E_k, zeta_k) are i.i.d. over k, these M per-model outcomes are i.i.d. draws: the bounds in
``certify`` use n = M, not M * K.

Models are streamed in chunks of ``model_chunk`` (never all M on the device at once); inside a chunk the
members run vectorised (``torch.func.vmap``) on GPUs and one after another in ``channels_last`` on CPU,
with samples x draws batched. The forward passes run at the model's precision (``core.precision``: its
``train_config["precision"]``; under bfloat16 autocast the softmax and the counts stay float32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .ensemble import load_member, member_module, stacked_forward, with_inference_pooling
from .models import check_input_shape
from .noise import test_unit_noise
from .precision import autocast, model_precision
from .validation import ConfigError, positive


@torch.no_grad()
def predict_votes(
    model: dict[str, Any],
    x: torch.Tensor,
    sigma: torch.Tensor,
    plan: dict[str, Any],
    split: str,
    *,
    device: torch.device,
    model_chunk: int = 10,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    precision: str | None = None,
) -> dict[str, torch.Tensor]:
    """Vote fractions (M, N, C) and mean probabilities (M, N, C) of every model of ``model`` on ``x``
    (N, C, H, W), as ``{"votes": ..., "probs": ...}`` (float32; see the module docstring).

    ``batch_size`` (images per forward): ``None`` -> 256 on CPU (cache-sized; 3x faster than 4096 for the
    small CNN on 2 cores) and 4096 on CUDA. ``precision`` (float32 | bfloat16): None -> the one the model
    was trained at (``model["train_config"]["precision"]``, float32 when absent).
    """
    positive("model_chunk", model_chunk, integer=True)
    precision = precision or model_precision(model.get("train_config"))
    check_input_shape(model["architecture"], model["in_shape"], x.shape[1:], f"the {split} test set")
    n, c = x.shape[0], model["num_classes"]
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    if sigma.shape != (n,):
        raise ConfigError(
            f"mismatched shapes: {split} test set has {n} samples but sigma has shape {tuple(sigma.shape)}"
        )
    indices = [int(k) for k in model["model_indices"]]
    m = len(indices)
    if max(indices) >= plan["num_models"]:
        raise ConfigError("the ensemble has more models than the noise plan: they come from different runs")
    k_draws = plan["num_draws"]
    votes = torch.empty(m, n, c)
    probs = torch.empty(m, n, c)
    x_dev = x.to(device)
    s_dev = sigma.to(device).view(1, n, 1, 1, 1)
    vectorised = device.type == "cuda"
    if batch_size is None:
        batch_size = 4096 if vectorised else 256
    positive("batch_size", batch_size, integer=True)
    template = member_module(model["architecture"], model["in_shape"], c) if vectorised else None
    # CPU: one module, each member's weights copied in (rebuilding it per member cost ~8 % of the time)
    net = (
        None
        if vectorised
        else load_member(model["architecture"], model["in_shape"], c, model["params"], 0, device)
    )
    if net is not None:  # channels_last; 2 x 2 max-pools without indices (the same values, faster)
        net = with_inference_pooling(net.to(memory_format=torch.channels_last))
    per_batch = max(1, batch_size // k_draws)
    for start in range(0, m, model_chunk):
        chunk = list(range(start, min(start + model_chunk, m)))
        # inputs of every member of the chunk: (m_c, K, N, C, H, W)
        inputs = torch.stack(
            [x_dev.unsqueeze(0) + s_dev * test_unit_noise(plan, indices[j], split, n, device) for j in chunk]
        )
        if vectorised:
            params = {name: t[chunk].to(device) for name, t in model["params"].items()}
            with autocast(precision, device):
                logits = torch.cat(
                    [
                        stacked_forward(template, params, inputs[:, :, b : b + per_batch].flatten(1, 2))
                        .float()
                        .view(len(chunk), k_draws, -1, c)
                        for b in range(0, n, per_batch)
                    ],
                    dim=2,
                )
        else:
            outs = []
            for j_local, j in enumerate(chunk):
                for name, p in net.named_parameters():
                    p.copy_(model["params"][name][j])
                flat = inputs[j_local].flatten(0, 1).contiguous(memory_format=torch.channels_last)
                with autocast(precision, device):
                    outs.append(
                        torch.cat(
                            [
                                net(flat[b : b + batch_size]).float()
                                for b in range(0, flat.shape[0], batch_size)
                            ]
                        ).view(k_draws, n, c)
                    )
            logits = torch.stack(outs)
        p = torch.softmax(logits.float(), dim=-1)  # (m_c, K, N, C)
        counts = torch.nn.functional.one_hot(p.argmax(-1), c).sum(1)  # (m_c, N, C) argmax counts
        votes[chunk] = (counts.float() / k_draws).cpu()
        probs[chunk] = p.mean(1).cpu()
        if progress:
            progress(len(chunk))
    return {"votes": votes, "probs": probs}
