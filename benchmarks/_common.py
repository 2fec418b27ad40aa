"""Shared helpers for the benchmark scripts in this folder.

- device resolution (``auto|cpu|cuda``, same rule as ``certssb.core.ensemble.resolve_device``);
- timing with warm-up and repetition (synchronising CUDA before reading the clock), best and median;
- the hardware ceiling: float32 matmul GFLOP/s measured in the same run (and bf16 on CUDA);
- FLOP counting with ``torch.utils.flop_counter.FlopCounterMode`` (matmul/conv FLOPs only, 2 per MAC);
- the run's environment (device, torch version, CPU count, load average, timestamp) and JSON writing;
- a small fixed-width table printer.

Timings on a shared machine only ever get slower through interference, so the headline figure of each
measurement is the best (minimum) of its repetitions; the median and every repetition are in the JSON,
with the cores other processes used during each run and the load average before and after.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
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

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


# ---------------------------------------------------------------------------------------------------
# Command line and device


def base_parser(description: str) -> argparse.ArgumentParser:
    """``--quick``, ``--device auto|cpu|cuda``, ``--out PATH``, ``--repeat N`` (shared by all scripts)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, finishes in under a minute on 2 CPU cores")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = cuda when visible, else cpu")
    p.add_argument("--out", default=None,
                   help="JSON output path (default: benchmarks/results/<name>-<device>.json)")
    p.add_argument("--repeat", type=int, default=None, help="timed repetitions per measurement (after warm-up)")
    p.add_argument("--quiet-budget", type=float, default=None,
                   help="seconds the script may wait in total for other processes to go quiet before "
                        "timed CPU runs (default 60, 10 with --quick; 0 disables)")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Resolve the device and set the waiting budget from the parsed common arguments."""
    set_quiet_budget(args.quiet_budget if args.quiet_budget is not None else (10.0 if args.quick else 60.0))
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` in MiB since the last reset (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


# ---------------------------------------------------------------------------------------------------
# Timing
#
# The machine may be shared: other processes competing for the 2 cores slow a run several-fold (OpenMP
# threads wait for each other). Each timed run therefore records how many cores *other* processes used
# meanwhile (from /proc/stat minus this process's own CPU time), and before a timed run we wait a
# little (within a budget for the whole script) until the others are quiet.

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
QUIET_THRESHOLD_CORES = 0.3
_quiet_state = {"budget_s": 0.0, "waited_s": 0.0}


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, CPU ticks of this process) or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        busy = v[0] + v[1] + v[2] + sum(v[5:8])  # user nice system irq softirq steal
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])  # utime + stime (all threads)
        return busy, own
    except (OSError, ValueError, IndexError):
        return None


def _foreign_cores(start: tuple[int, int] | None, end: tuple[int, int] | None, wall_s: float,
                   min_wall_s: float = 0.1) -> float | None:
    """Cores used by other processes over ``wall_s``; None when unknown or when the interval is too
    short for the 10 ms tick resolution of /proc/stat."""
    if start is None or end is None or wall_s < min_wall_s:
        return None
    return max(0.0, ((end[0] - start[0]) - (end[1] - start[1])) / _HZ / wall_s)


def set_quiet_budget(seconds: float) -> None:
    """Allow ``wait_for_quiet`` to wait at most ``seconds`` in total during this script."""
    _quiet_state["budget_s"] = float(seconds)
    _quiet_state["waited_s"] = 0.0


def quiet_waited_s() -> float:
    return round(_quiet_state["waited_s"], 2)


def wait_for_quiet(window_s: float = 0.5, ticks: Callable[[], tuple[int, int] | None] | None = None) -> None:
    """Sleep in ``window_s`` steps until other processes use < ``QUIET_THRESHOLD_CORES`` cores, or the
    script's remaining waiting budget is spent. ``ticks`` counts what is "own" (default: this process)."""
    ticks = ticks or _cpu_ticks
    while _quiet_state["waited_s"] < _quiet_state["budget_s"]:
        a = ticks()
        t0 = time.perf_counter()
        time.sleep(window_s)
        dt = time.perf_counter() - t0
        _quiet_state["waited_s"] += dt
        load = _foreign_cores(a, ticks(), dt, min_wall_s=0.0)
        if load is None or load < QUIET_THRESHOLD_CORES:
            return


def time_call(fn: Callable[[], Any], device: torch.device, *, quiet: bool = True) -> tuple[float, Any, float | None]:
    """Wall-clock seconds of one call of ``fn`` (CUDA synchronised before and after), its result, and
    the cores other processes used meanwhile (None where unknown)."""
    if quiet and device.type == "cpu":
        wait_for_quiet()
    sync(device)
    a = _cpu_ticks()
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    dt = time.perf_counter() - t0
    return dt, out, _foreign_cores(a, _cpu_ticks(), dt)


def summarise(times: Sequence[float], foreign: Sequence[float | None] = ()) -> dict[str, Any]:
    """Best (headline) and median seconds, every run, and the other processes' load during each run."""
    out: dict[str, Any] = {"best_s": min(times), "median_s": statistics.median(times),
                           "runs_s": [round(t, 6) for t in times]}
    if foreign:
        out["foreign_cores_per_run"] = [None if f is None else round(f, 2) for f in foreign]
        i = min(range(len(times)), key=times.__getitem__)
        out["foreign_cores_in_best_run"] = out["foreign_cores_per_run"][i]
    return out


def bench(fn: Callable[[], Any], device: torch.device, *, warmup: int = 1, repeat: int = 3,
          min_time_s: float = 0.0) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` timed times (more while their sum is below
    ``min_time_s``). Returns ``best_s``, ``median_s``, ``runs_s`` and the foreign load per run."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    foreign: list[float | None] = []
    while len(times) < repeat or sum(times) < min_time_s:
        t, _, f = time_call(fn, device)
        times.append(t)
        foreign.append(f)
        if len(times) >= 1000:
            break
    return summarise(times, foreign)


def bench_interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, *, warmup: int = 1,
                      repeat: int = 3, min_time_s: float = 0.0,
                      keep_outputs: bool = False) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Time several functions in rounds (A, B, C, A, B, C, ...) so that slow drifts of the machine's
    speed hit all of them alike. ``warmup`` untimed calls each first; then ``repeat`` rounds (more while
    no function has yet ``min_time_s`` timed). Returns per-name summaries (with the peak CUDA
    memory) and, with ``keep_outputs``, each function's last result."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    foreign: dict[str, list[float | None]] = {k: [] for k in fns}
    peaks: dict[str, float | None] = {k: None for k in fns}
    outs: dict[str, Any] = {}
    rounds = 0
    while rounds < repeat or max(sum(v) for v in times.values()) < min_time_s:
        for k, fn in fns.items():
            reset_peak_memory(device)
            t, out, f = time_call(fn, device)
            times[k].append(t)
            foreign[k].append(f)
            pk = peak_memory_mib(device)
            peaks[k] = pk if peaks[k] is None else max(peaks[k], pk)
            if keep_outputs:
                outs[k] = out
            del out
        rounds += 1
        if rounds >= 1000:
            break
    return {k: {**summarise(times[k], foreign[k]), "peak_memory_mib": peaks[k]} for k in fns}, outs


def paired_ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> dict[str, Any]:
    """Ratio of two interleaved measurements' times: of their best runs, and the median of the per-round
    ratios over the rounds in which neither run was contended (robust to drifts that last longer than
    one round). With no clean round, the median falls back to the ratio of the best runs."""
    a, b = numerator["runs_s"], denominator["runs_s"]
    fa = numerator.get("foreign_cores_per_run") or [None] * len(a)
    fb = denominator.get("foreign_cores_per_run") or [None] * len(b)

    def clean(f: float | None) -> bool:
        return f is None or f < QUIET_THRESHOLD_CORES

    of_best = numerator["best_s"] / denominator["best_s"]
    per_round = [x / y for x, y, p, q in zip(a, b, fa, fb) if clean(p) and clean(q)]
    return {"of_best": of_best, "median_of_rounds": statistics.median(per_round) if per_round else of_best,
            "clean_rounds": len(per_round), "rounds": min(len(a), len(b))}


# ---------------------------------------------------------------------------------------------------
# FLOPs and the hardware ceiling


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as counted by ``FlopCounterMode`` (conv / matmul, 2 FLOPs per MAC)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def matmul_gflops(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32,
                  repeat: int = 5, target_s: float = 0.25) -> dict[str, Any]:
    """GFLOP/s of an ``n x n`` @ ``n x n`` matmul (``2 n^3`` FLOPs) in ``dtype``; each timed sample runs
    enough back-to-back matmuls to last about ``target_s``. Best and median over ``repeat`` samples."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.matmul(a, b, out=out)  # warm-up (kernel selection, thread pool)
    t1 = time_call(lambda: torch.matmul(a, b, out=out), device, quiet=False)[0]
    inner = max(1, int(target_s / max(t1, 1e-6)))

    def run() -> None:
        for _ in range(inner):
            torch.matmul(a, b, out=out)

    res = bench(run, device, warmup=1, repeat=repeat)
    flops = 2.0 * n**3 * inner
    return {
        "n": n, "dtype": str(dtype).replace("torch.", ""), "matmuls_per_sample": inner,
        "gflops_best": flops / res["best_s"] / 1e9, "gflops_median": flops / res["median_s"] / 1e9,
        "foreign_cores_in_best_run": res.get("foreign_cores_in_best_run"),
    }


def hardware_ceiling(device: torch.device, quick: bool = False) -> dict[str, Any]:
    """The ceilings measured in this run: float32 2048^2 (the reference for ``fraction_of_ceiling``);
    on CUDA also float32 and bf16 at 8192^2."""
    rep = 3 if quick else 7
    out: dict[str, Any] = {"fp32_2048": matmul_gflops(device, 2048, torch.float32, repeat=rep)}
    if device.type == "cuda":
        out["fp32_8192"] = matmul_gflops(device, 8192, torch.float32, repeat=rep)
        out["bf16_8192"] = matmul_gflops(device, 8192, torch.bfloat16, repeat=rep)
        out["tf32_enabled"] = bool(torch.backends.cuda.matmul.allow_tf32)
    out["reference"] = "fp32_2048"
    out["reference_gflops"] = out["fp32_2048"]["gflops_best"]
    return out


def start_result(name: str, target: str, args: argparse.Namespace, device: torch.device
                 ) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The result skeleton every benchmark starts from, with the matmul ceiling measured now.

    Returns ``(result, ceiling, reference GFLOP/s)``.
    """
    result: dict[str, Any] = {"benchmark": name, "target": target, "quick": bool(args.quick),
                              "environment": environment(device)}
    ceiling = hardware_ceiling(device, quick=args.quick)
    result["ceiling"] = ceiling
    return result, ceiling, ceiling["reference_gflops"]


def finish_ceiling(ceiling: dict[str, Any], device: torch.device, quick: bool = False) -> float:
    """Measure the fp32 2048^2 ceiling again at the end of the run; the reference is the larger of the
    two (the machine may have been slowed by others during one of them). Returns the reference."""
    ceiling["fp32_2048_at_end"] = matmul_gflops(device, 2048, torch.float32, repeat=3 if quick else 7)
    ceiling["reference"] = "max(fp32_2048, fp32_2048_at_end)"
    ceiling["reference_gflops"] = max(ceiling["fp32_2048"]["gflops_best"], ceiling["fp32_2048_at_end"]["gflops_best"])
    return ceiling["reference_gflops"]


def set_fractions(obj: Any, ceiling_gflops: float) -> None:
    """(Re)compute ``fraction_of_ceiling`` next to every ``gflops`` entry in a nested dict/list."""
    if isinstance(obj, dict):
        if "gflops" in obj:
            obj["fraction_of_ceiling"] = obj["gflops"] / ceiling_gflops
        for v in obj.values():
            set_fractions(v, ceiling_gflops)
    elif isinstance(obj, list):
        for v in obj:
            set_fractions(v, ceiling_gflops)


def achieved(flops: float, seconds: float, ceiling_gflops: float) -> dict[str, float]:
    """Achieved GFLOP/s and its fraction of the measured fp32 2048^2 matmul ceiling."""
    gflops = flops / seconds / 1e9
    return {"gflops": gflops, "fraction_of_ceiling": gflops / ceiling_gflops}


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
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_1_5_15_at_start": _loadavg(),
    }
    return env


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` (load average at the end and the time spent waiting for quiet added) as indented
    JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = result.setdefault("environment", {})
    env["loadavg_1_5_15_at_end"] = _loadavg()
    env["waited_for_quiet_s"] = quiet_waited_s()
    env["quiet_threshold_cores"] = QUIET_THRESHOLD_CORES
    flagged = sorted(set(_contended(result.get("results"), "results")))
    env["contended_measurements"] = flagged
    if flagged:
        print(f"WARNING: other processes used >= {QUIET_THRESHOLD_CORES} cores during the best run of "
              f"{len(flagged)} measurement(s) ({', '.join(flagged)}): rerun on a quiet machine")
    path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    return path


def _contended(obj: Any, path: str) -> list[str]:
    """Paths of measurements whose best run saw other processes use >= the quiet threshold."""
    out: list[str] = []
    if isinstance(obj, dict):
        f = obj.get("foreign_cores_in_best_run")
        if f is not None and f >= QUIET_THRESHOLD_CORES:
            out.append(path)
        for k, v in obj.items():
            out += _contended(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _contended(v, f"{path}[{i}]")
    return out


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
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    if title:
        print(title)
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def print_ceiling(ceiling: dict[str, Any]) -> None:
    parts = [f"{k}: {v['gflops_best']:.1f} GFLOP/s" for k, v in ceiling.items() if isinstance(v, dict)]
    print("matmul ceiling (best of repetitions): " + ", ".join(parts)
          + f"; reference {ceiling['reference_gflops']:.1f} GFLOP/s")
