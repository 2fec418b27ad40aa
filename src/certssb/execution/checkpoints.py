"""Checkpoints of a trained ensemble: one file per chunk of models under ``<checkpoint_dir>/<fingerprint>/``,
written atomically as each chunk finishes, so an interrupted run resumes where it stopped and a rerun with the
same inputs and parameters retrains nothing. Loaded with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from certssb.core.ensemble import ChunkResult, TrainConfig


def ensemble_fingerprint(
    data_fingerprint: str, sigma: torch.Tensor, plan: dict[str, Any], cfg: TrainConfig, num_classes: int
) -> str:
    """Hash of everything that determines the trained ensemble (not the backend or device)."""
    h = hashlib.sha256()
    h.update(json.dumps({"data": data_fingerprint, "plan": plan["fingerprint"], "cfg": asdict(cfg),
                         "classes": num_classes}, sort_keys=True).encode())
    h.update(sigma.detach().cpu().to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def chunk_path(checkpoint_dir: Path, indices: Sequence[int]) -> Path:
    return checkpoint_dir / f"chunk_{indices[0]:05d}_{indices[-1]:05d}.pt"


def load_chunk(path: Path) -> ChunkResult:
    d = torch.load(path, map_location="cpu", weights_only=True)
    return ChunkResult(list(d["indices"]), d["params"], list(d["log"]))


def save_chunk(result: ChunkResult, path: Path) -> None:
    _save_atomic({"indices": result.indices, "params": result.params, "log": result.log}, path)


def chunks_of(num_models: int, chunk_size: int) -> list[list[int]]:
    return [list(range(s, min(s + chunk_size, num_models))) for s in range(0, num_models, chunk_size)]
