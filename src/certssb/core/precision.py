r"""Numeric precision of the forward passes: ``float32`` | ``bfloat16`` | ``auto``.

``bfloat16`` runs every forward pass (training, votes, the inference-time certifier's draws, sigma
optimisation) under ``torch.autocast(device_type, dtype=torch.bfloat16)``: matrix multiplies and convolutions
take bfloat16 inputs (8 mantissa bits) and accumulate in float32; the weights, the optimiser state, the
softmax, the loss and the vote counts stay float32 (the logits are cast back with ``.float()`` before them).

Soundness: a certificate holds for the base classifier as it is evaluated. At either precision the base
classifier is one fixed deterministic function of (weights, input) during selection and estimation, so the
bounds of ``certify`` are unchanged; the precision is part of the model (recorded in the ensemble's
``train_config`` and its fingerprint, and a model is evaluated at the precision it was trained at).

``auto`` resolves to ``bfloat16`` where the hardware runs it natively -- a CPU with AMX or AVX-512-BF16
(``amx_bf16`` / ``avx512_bf16`` in ``/proc/cpuinfo``, or ``torch.backends.cpu.get_cpu_capability()``
reporting AMX), a CUDA device with ``torch.cuda.is_bf16_supported()`` -- and to ``float32`` elsewhere (bf16
emulated in software is slower than float32).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

from .validation import choice

#: What the parameter accepts; :data:`RESOLVED` what a model records.
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "auto")
RESOLVED: tuple[str, ...] = ("float32", "bfloat16")
CPU_BF16_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_native(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 matrix multiplies natively (see the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    if cpu_flags() & set(CPU_BF16_FLAGS):
        return True
    try:
        return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # noqa: BLE001 - older torch: no capability query
        return False


def resolve_precision(precision: str | None, device: torch.device | str) -> str:
    """``float32`` / ``bfloat16`` as given; ``auto`` -> ``bfloat16`` where :func:`bf16_native`, else
    ``float32``; None -> ``float32`` (artifacts written before the parameter existed)."""
    if precision is None:
        return "float32"
    choice("precision", precision, PRECISIONS)
    if precision == "auto":
        if str(device) == "auto":  # the device parameter's ``auto``: CUDA when present, else CPU
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return "bfloat16" if bf16_native(device) else "float32"
    return precision


def model_precision(train_config: dict | None) -> str:
    """The precision a model artifact was trained at (``train_config["precision"]``; float32 when absent)."""
    value = (train_config or {}).get("precision") or "float32"
    choice("train_config.precision", value, RESOLVED)
    return value


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """``torch.autocast(device.type, dtype=torch.bfloat16)`` for ``bfloat16``; nothing for ``float32``."""
    choice("precision", precision, RESOLVED)
    if precision == "float32":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield
