"""Timing with ``torch.utils.benchmark.Timer``, interleaved, with the other processes' load per run.

One *measurement* of a function is one ``Timer.blocked_autorange(min_run_time=...)``: the Timer first
calls the function untimed (its block-size estimate, which is also the warm-up), then times blocks of
calls until ``min_run_time`` seconds are timed (at least one block), synchronising the accelerator
before each clock reading. With ``min_run_time=0`` an expensive call is run exactly twice: once untimed,
once timed. The Timer runs with this process's torch thread count (its own default would be 1 thread).

Ratios are measured side by side: ``bench_interleaved`` takes a measurement of every function in turn,
round after round (A, B, A, B, ...; optionally rotating the order), so that drifts of the machine's speed
hit all of them alike. A round's time for a function is the median per-call time of its measurement
(for an expensive call: its one timed call). Around each measurement the CPU time of the machine and of
our own process(es) is sampled with psutil (``_cpu``), giving the cores other processes used meanwhile;
on CPU the script first waits (within its budget) until they are quiet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import _cpu
import torch
from _stats import foreign_cores, summarise
from torch.utils import benchmark

TIMER_NOTE = (
    "torch.utils.benchmark.Timer.blocked_autorange per function and round (one untimed call to "
    "size the blocks, then blocks of calls until min_run_time is timed; accelerator synchronised; "
    "num_threads = torch.get_num_threads()); runs_s = per round, the median per-call time"
)


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


class _KeepLast:
    """Calls ``fn`` and keeps its last result (the Timer's statement discards it)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn, self.last = fn, None

    def __call__(self) -> None:
        self.last = self.fn()


def measure(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    min_run_time: float = 0.0,
    sample: _cpu.Sampler = _cpu.sample_process,
    quiet: bool = True,
) -> dict[str, Any]:
    """One ``Timer.blocked_autorange`` of ``fn`` (after waiting for quiet on CPU when ``quiet``).

    Returns ``per_call_s`` (each block's time per call), ``calls_per_block``, ``median_s`` (per call),
    ``foreign_cores`` over the whole measurement and ``peak_memory_mib`` (CUDA only).
    """
    if quiet and device.type == "cpu":
        _cpu.wait_for_quiet(sample=sample)
    reset_peak_memory(device)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    a = sample()
    t0 = time.perf_counter()
    m = timer.blocked_autorange(min_run_time=min_run_time)
    wall = time.perf_counter() - t0
    return {
        "per_call_s": list(m.times),
        "calls_per_block": m.number_per_run,
        "median_s": m.median,
        "foreign_cores": foreign_cores(a, sample(), wall),
        "peak_memory_mib": peak_memory_mib(device),
    }


def once(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds of a single call of ``fn`` (accelerator synchronised) and its result: for what must not be
    warmed up or repeated, such as a cold first call."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def bench_interleaved(
    fns: dict[str, Callable[[], Any]],
    device: torch.device,
    *,
    repeat: int = 3,
    min_run_time: float = 0.0,
    keep_outputs: bool = False,
    rotate: bool = False,
    sample: _cpu.Sampler = _cpu.sample_process,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Measure several functions in ``repeat`` rounds (A, B, C, A, B, C, ...; with ``rotate`` the order
    turns by one each round), each measurement timing at least ``min_run_time`` seconds.

    Returns per-name ``summarise`` dicts over the rounds (plus ``timed_calls_per_run`` and the peak CUDA
    memory) and, with ``keep_outputs``, each function's last result.
    """
    names = list(fns)
    wrapped = {k: _KeepLast(fn) if keep_outputs else fn for k, fn in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in names}
    foreign: dict[str, list[float | None]] = {k: [] for k in names}
    calls: dict[str, list[int]] = {k: [] for k in names}
    peaks: dict[str, float | None] = {k: None for k in names}
    for r in range(repeat):
        order = names[r % len(names) :] + names[: r % len(names)] if rotate else names
        for k in order:
            res = measure(wrapped[k], device, min_run_time=min_run_time, sample=sample)
            times[k].append(res["median_s"])
            foreign[k].append(res["foreign_cores"])
            calls[k].append(res["calls_per_block"] * len(res["per_call_s"]))
            pk = res["peak_memory_mib"]
            if pk is not None:
                peaks[k] = pk if peaks[k] is None else max(peaks[k], pk)
    out = {
        k: {**summarise(times[k], foreign[k]), "timed_calls_per_run": calls[k], "peak_memory_mib": peaks[k]}
        for k in names
    }
    outs = {k: wrapped[k].last for k in names} if keep_outputs else {}
    return out, outs


def bench(
    fn: Callable[[], Any], device: torch.device, *, repeat: int = 3, min_run_time: float = 0.0
) -> dict[str, Any]:
    """``bench_interleaved`` of one function: ``repeat`` measurements, summarised."""
    return bench_interleaved({"fn": fn}, device, repeat=repeat, min_run_time=min_run_time)[0]["fn"]
