"""Pure arithmetic over the benchmarks' measurements: no torch, no psutil, no clock.

- ``summarise``: best / median seconds of a measurement's rounds and the other processes' load per round;
- ``paired_ratio``: the ratio of two interleaved measurements, median over the uncontended rounds;
- ``foreign_cores``: cores used by other processes between two CPU-time samples;
- ``fit_line``: least squares t = overhead + M * s_per_model;
- ``achieved`` / ``set_fractions``: GFLOP/s and their fraction of the measured matmul ceiling;
- ``contended``: where in a result the best run was slowed by other processes.

``tests/test_benchmarks_common.py`` checks these against hand-computed values.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

# other processes using at least this many cores during a run make it "contended"
QUIET_THRESHOLD_CORES = 0.3


def summarise(times: Sequence[float], foreign: Sequence[float | None] = ()) -> dict[str, Any]:
    """Best (headline) and median seconds, every run, and the other processes' load during each run."""
    out: dict[str, Any] = {
        "best_s": min(times),
        "median_s": statistics.median(times),
        "runs_s": [round(t, 6) for t in times],
    }
    if foreign:
        out["foreign_cores_per_run"] = [None if f is None else round(f, 2) for f in foreign]
        i = min(range(len(times)), key=times.__getitem__)
        out["foreign_cores_in_best_run"] = out["foreign_cores_per_run"][i]
    return out


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
    return {
        "of_best": of_best,
        "median_of_rounds": statistics.median(per_round) if per_round else of_best,
        "clean_rounds": len(per_round),
        "rounds": min(len(a), len(b)),
    }


def foreign_cores(
    start: tuple[float, float] | None, end: tuple[float, float] | None, wall_s: float, min_wall_s: float = 0.1
) -> float | None:
    """Cores used by other processes over ``wall_s`` from two ``(busy seconds of the machine, CPU seconds
    of our own processes)`` samples; None when a sample is missing or the interval is shorter than
    ``min_wall_s`` (the kernel counts CPU time in 10 ms ticks)."""
    if start is None or end is None or wall_s < min_wall_s:
        return None
    return max(0.0, ((end[0] - start[0]) - (end[1] - start[1])) / wall_s)


def fit_line(ms: Sequence[int], secs: Sequence[float]) -> dict[str, float | None] | None:
    """Least squares t = overhead + M * s_per_model (None with fewer than two distinct M)."""
    if len(ms) < 2:
        return None
    mx, my = sum(ms) / len(ms), sum(secs) / len(secs)
    sxx = sum((m - mx) ** 2 for m in ms)
    if sxx == 0:
        return None
    b = sum((m - mx) * (t - my) for m, t in zip(ms, secs)) / sxx
    a = my - b * mx
    return {"overhead_s": a, "s_per_model": b, "models_per_second_asymptotic": 1.0 / b if b > 0 else None}


def achieved(flops: float, seconds: float, ceiling_gflops: float) -> dict[str, float]:
    """Achieved GFLOP/s and its fraction of the measured fp32 2048^2 matmul ceiling."""
    gflops = flops / seconds / 1e9
    return {"gflops": gflops, "fraction_of_ceiling": gflops / ceiling_gflops}


def set_fractions(obj: Any, ceiling_gflops: float, key: str = "fraction_of_ceiling") -> None:
    """(Re)compute ``key`` (default ``fraction_of_ceiling``; ``fraction_of_bf16_ceiling`` against the bf16
    matmul) next to every ``gflops`` entry in a nested dict/list."""
    if isinstance(obj, dict):
        if "gflops" in obj:
            obj[key] = obj["gflops"] / ceiling_gflops
        for v in obj.values():
            set_fractions(v, ceiling_gflops, key)
    elif isinstance(obj, list):
        for v in obj:
            set_fractions(v, ceiling_gflops, key)


def contended(obj: Any, path: str) -> list[str]:
    """Paths of measurements whose best run saw other processes use >= ``QUIET_THRESHOLD_CORES``."""
    out: list[str] = []
    if isinstance(obj, dict):
        f = obj.get("foreign_cores_in_best_run")
        if f is not None and f >= QUIET_THRESHOLD_CORES:
            out.append(path)
        for k, v in obj.items():
            out += contended(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += contended(v, f"{path}[{i}]")
    return out
