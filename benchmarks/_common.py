"""Shared helpers for the benchmark scripts in this folder (timing itself: ``_timing``; CPU-load
accounting: ``_cpu``; pure arithmetic: ``_stats``).

- the common command line (``--quick``, ``--device``, ``--out``, ``--repeat``, ``--quiet-budget``) and device
  resolution (``auto|cpu|cuda``, same rule as ``certssb.core.ensemble.resolve_device``);
- the hardware ceilings: float32 and bfloat16 2048^2 matmul GFLOP/s measured in the same run (and 8192^2 on
  CUDA), so each bf16 variant has its ratio to both in one run;
- FLOP counting with ``torch.utils.flop_counter.FlopCounterMode`` (matmul/conv FLOPs only, 2 per MAC);
- the run's environment (device, torch version, CPU count, load average, timestamp) and JSON writing;
- a small fixed-width table printer.

Timings on a shared machine only ever get slower through interference, so the headline figure of each
measurement is the best (minimum) of its rounds; the median and every round are in the JSON, with the
cores other processes used during each round and the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_DATA_ROOT = REPO_ROOT / "data" / "01_raw"

try:  # the package is normally installed in the venv (pip install -e .); fall back to the source tree
    import certssb  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(REPO_ROOT / "src"))

import _cpu  # noqa: E402
import _timing  # noqa: E402
import torch  # noqa: E402
from _stats import QUIET_THRESHOLD_CORES, contended  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

# ---------------------------------------------------------------------------------------------------
# Command line and device


def base_parser(description: str) -> argparse.ArgumentParser:
    """``--quick``, ``--device auto|cpu|cuda``, ``--out PATH``, ``--repeat N`` (shared by all scripts)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick", action="store_true", help="small sizes, finishes in under a minute on 2 CPU cores"
    )
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto = cuda when visible, else cpu"
    )
    p.add_argument(
        "--out", default=None, help="JSON output path (default: benchmarks/results/<name>-<device>.json)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="interleaved rounds per measurement (each a Timer measurement with its own untimed "
        "warm-up call)",
    )
    p.add_argument(
        "--quiet-budget",
        type=float,
        default=None,
        help="seconds the script may wait in total for other processes to go quiet before "
        "timed CPU runs (default 60, 10 with --quick; 0 disables)",
    )
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Resolve the device and set the waiting budget from the parsed common arguments."""
    _cpu.set_quiet_budget(
        args.quiet_budget if args.quiet_budget is not None else (10.0 if args.quick else 60.0)
    )
    return resolve_device(args.device)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a visible GPU exits with a message."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible (use --device auto or cpu)")
    return torch.device(name)


def default_out(name: str, device: torch.device) -> Path:
    return RESULTS_DIR / f"{name}-{device.type}.json"


# ---------------------------------------------------------------------------------------------------
# FLOPs and the hardware ceiling


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as counted by ``FlopCounterMode`` (conv / matmul, 2 FLOPs per MAC), on ONE
    torch thread: the counter sees only this thread, and the project's CPU code paths run their work on
    worker threads when torch has more than one (``smoothing``, ``sigma``, ``ensemble.train_chunk``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.set_num_threads(threads)
    return int(counter.get_total_flops())


def matmul_gflops(
    device: torch.device,
    n: int = 2048,
    dtype: torch.dtype = torch.float32,
    repeat: int = 5,
    target_s: float = 0.25,
) -> dict[str, Any]:
    """GFLOP/s of an ``n x n`` @ ``n x n`` matmul (``2 n^3`` FLOPs) in ``dtype``: ``repeat`` Timer
    measurements of at least ``target_s`` each; best and median over them of the median per matmul."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    res = _timing.bench(lambda: torch.matmul(a, b, out=out), device, repeat=repeat, min_run_time=target_s)
    flops = 2.0 * n**3
    return {
        "n": n,
        "dtype": str(dtype).replace("torch.", ""),
        "matmuls_per_run": res["timed_calls_per_run"],
        "gflops_best": flops / res["best_s"] / 1e9,
        "gflops_median": flops / res["median_s"] / 1e9,
        "foreign_cores_in_best_run": res.get("foreign_cores_in_best_run"),
    }


def hardware_ceiling(device: torch.device, quick: bool = False) -> dict[str, Any]:
    """The ceilings measured in this run: float32 2048^2 (the reference for ``fraction_of_ceiling``) and
    bfloat16 2048^2 (``reference_bf16_gflops``, for ``fraction_of_bf16_ceiling``); on CUDA also float32 and
    bf16 at 8192^2."""
    rep = 3 if quick else 7
    out: dict[str, Any] = {
        "fp32_2048": matmul_gflops(device, 2048, torch.float32, repeat=rep),
        "bf16_2048": matmul_gflops(device, 2048, torch.bfloat16, repeat=rep),
    }
    if device.type == "cuda":
        out["fp32_8192"] = matmul_gflops(device, 8192, torch.float32, repeat=rep)
        out["bf16_8192"] = matmul_gflops(device, 8192, torch.bfloat16, repeat=rep)
        out["tf32_enabled"] = bool(torch.backends.cuda.matmul.allow_tf32)
    out["reference"] = "fp32_2048"
    out["reference_gflops"] = out["fp32_2048"]["gflops_best"]
    out["reference_bf16_gflops"] = out["bf16_2048"]["gflops_best"]
    out["bf16_over_fp32"] = out["reference_bf16_gflops"] / out["reference_gflops"]
    return out


def start_result(
    name: str, target: str, args: argparse.Namespace, device: torch.device
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The result skeleton every benchmark starts from, with the matmul ceiling measured now.

    Returns ``(result, ceiling, reference GFLOP/s)``.
    """
    result: dict[str, Any] = {
        "benchmark": name,
        "target": target,
        "quick": bool(args.quick),
        "environment": environment(device),
    }
    ceiling = hardware_ceiling(device, quick=args.quick)
    result["ceiling"] = ceiling
    return result, ceiling, ceiling["reference_gflops"]


def finish_ceiling(ceiling: dict[str, Any], device: torch.device, quick: bool = False) -> float:
    """Measure the fp32 2048^2 ceiling again at the end of the run; the reference is the larger of the
    two (the machine may have been slowed by others during one of them). Returns the reference."""
    ceiling["fp32_2048_at_end"] = matmul_gflops(device, 2048, torch.float32, repeat=3 if quick else 7)
    ceiling["reference"] = "max(fp32_2048, fp32_2048_at_end)"
    ceiling["reference_gflops"] = max(
        ceiling["fp32_2048"]["gflops_best"], ceiling["fp32_2048_at_end"]["gflops_best"]
    )
    ceiling["bf16_2048_at_end"] = matmul_gflops(device, 2048, torch.bfloat16, repeat=3 if quick else 7)
    ceiling["reference_bf16_gflops"] = max(
        ceiling["bf16_2048"]["gflops_best"], ceiling["bf16_2048_at_end"]["gflops_best"]
    )
    ceiling["bf16_over_fp32"] = ceiling["reference_bf16_gflops"] / ceiling["reference_gflops"]
    return ceiling["reference_gflops"]


def cpu_info() -> dict[str, Any]:
    """``lscpu``'s model name, the CPU's AMX / AVX-512 flags (``/proc/cpuinfo``) and what ``precision: auto``
    resolves to here (``certssb.core.precision``)."""
    import subprocess

    from certssb.core import precision

    model = None
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    flags = sorted(f for f in precision.cpu_flags() if f.startswith(("amx", "avx512")))
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older torch
        capability = None
    return {
        "model_name": model,
        "amx_avx512_flags": flags,
        "torch_cpu_capability": capability,
        "precision_auto_cpu": precision.resolve_precision("auto", "cpu"),
    }


# ---------------------------------------------------------------------------------------------------
# Environment, JSON, tables


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device_type": device.type,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_1_5_15_at_start": _loadavg(),
        "psutil_version": _cpu.psutil.__version__,
        "timer": _timing.TIMER_NOTE,
        "cpu": cpu_info(),
    }
    return env


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` (load average at the end and the time spent waiting for quiet added) as indented
    JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = result.setdefault("environment", {})
    env["loadavg_1_5_15_at_end"] = _loadavg()
    env["waited_for_quiet_s"] = _cpu.quiet_waited_s()
    env["quiet_threshold_cores"] = QUIET_THRESHOLD_CORES
    flagged = sorted(set(contended(result.get("results"), "results")))
    env["contended_measurements"] = flagged
    if flagged:
        print(
            f"WARNING: other processes used >= {QUIET_THRESHOLD_CORES} cores during the best run of "
            f"{len(flagged)} measurement(s) ({', '.join(flagged)}): rerun on a quiet machine"
        )
    path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (torch.device, torch.dtype, Path)):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """Print ``rows`` as a fixed-width table of ``columns`` (floats with 4 significant digits)."""

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)
    ]
    if title:
        print(title)
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def print_ceiling(ceiling: dict[str, Any]) -> None:
    parts = [f"{k}: {v['gflops_best']:.1f} GFLOP/s" for k, v in ceiling.items() if isinstance(v, dict)]
    print(
        "matmul ceiling (best of repetitions): "
        + ", ".join(parts)
        + f"; reference {ceiling['reference_gflops']:.1f} GFLOP/s"
        + (
            f", bf16 {ceiling['reference_bf16_gflops']:.1f} GFLOP/s ({ceiling['bf16_over_fp32']:.2f}x)"
            if "reference_bf16_gflops" in ceiling
            else ""
        )
    )
