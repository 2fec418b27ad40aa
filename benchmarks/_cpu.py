"""CPU-load accounting with ``psutil``: how many cores *other* processes use while we time something.

The machine may be shared: other processes competing for its cores slow a run several-fold (OpenMP
threads wait for each other). A CPU sample is ``(busy CPU seconds of the whole machine, CPU seconds of
what counts as our own)``; two samples and the wall time between them give the cores others used
(``_stats.foreign_cores``). "Our own" is either this process (``sample_process``) or this process and
all its descendants (``sample_tree``: Ray's daemons and workers are children of ``scaling.py``).

Before a timed run, ``wait_for_quiet`` sleeps (within a budget for the whole script) until the others
use fewer than ``QUIET_THRESHOLD_CORES``. ``other_benchmarks`` / ``wait_for_benchmarks`` look for other
benchmark scripts by their command line.

Needs the optional ``bench`` extra: ``pip install -e '.[bench]'`` (psutil).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil
from _stats import QUIET_THRESHOLD_CORES, foreign_cores

CpuSample = tuple[float, float]
Sampler = Callable[[], "CpuSample | None"]

_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")  # not idle / iowait
_quiet_state = {"budget_s": 0.0, "waited_s": 0.0}


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot, all cores (fields missing on an OS count 0)."""
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in _BUSY_FIELDS)


def _own_s(proc: psutil.Process, with_children: bool = False) -> float:
    t = proc.cpu_times()
    s = t.user + t.system
    if with_children:  # reaped children's time (a Ray worker that exited still counts as ours)
        s += t.children_user + t.children_system
    return s


def sample_process() -> CpuSample | None:
    """(machine busy seconds, CPU seconds of this process, all threads); None if psutil cannot tell."""
    try:
        return machine_busy_s(), _own_s(psutil.Process())
    except (psutil.Error, OSError):
        return None


def tree_processes() -> list[psutil.Process]:
    """This process and all its descendants."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def tree_cpu_s() -> float:
    """CPU seconds of this process and all its descendants (each with its reaped children's)."""
    total = 0.0
    for p in tree_processes():
        try:
            total += _own_s(p, with_children=True)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # exited between listing and reading
    return total


def sample_tree() -> CpuSample | None:
    """(machine busy seconds, CPU seconds of this process tree): others = outside the tree."""
    try:
        return machine_busy_s(), tree_cpu_s()
    except (psutil.Error, OSError):
        return None


def tree_cores(seconds: float) -> tuple[float | None, float | None]:
    """Cores used over ``seconds`` by this process's descendants (e.g. Ray's processes) and by others."""
    a, own_a = sample_tree(), sample_process()
    time.sleep(seconds)
    b, own_b = sample_tree(), sample_process()
    if None in (a, b, own_a, own_b):
        return None, None
    descendants = ((b[1] - a[1]) - (own_b[1] - own_a[1])) / seconds
    return round(max(0.0, descendants), 3), round(foreign_cores(a, b, seconds), 3)


# ---------------------------------------------------------------------------------------------------
# Waiting for quiet (one budget per script)


def set_quiet_budget(seconds: float) -> None:
    """Allow ``wait_for_quiet`` to wait at most ``seconds`` in total during this script."""
    _quiet_state["budget_s"] = float(seconds)
    _quiet_state["waited_s"] = 0.0


def quiet_waited_s() -> float:
    return round(_quiet_state["waited_s"], 2)


def wait_for_quiet(window_s: float = 0.5, sample: Sampler = sample_process) -> None:
    """Sleep in ``window_s`` steps until other processes use < ``QUIET_THRESHOLD_CORES`` cores, or the
    script's remaining waiting budget is spent. ``sample`` says what counts as "own"."""
    while _quiet_state["waited_s"] < _quiet_state["budget_s"]:
        a = sample()
        t0 = time.perf_counter()
        time.sleep(window_s)
        dt = time.perf_counter() - t0
        _quiet_state["waited_s"] += dt
        load = foreign_cores(a, sample(), dt, min_wall_s=0.0)
        if load is None or load < QUIET_THRESHOLD_CORES:
            return


# ---------------------------------------------------------------------------------------------------
# Other benchmark scripts


def other_benchmarks() -> list[str]:
    """Command lines containing "benchmarks/" outside this process, its ancestors and its descendants
    (what ``pgrep -f benchmarks/`` would show besides us)."""
    me = psutil.Process()
    mine = {p.pid for p in tree_processes()} | {p.pid for p in me.parents()}
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] in mine:
            continue
        cmd = " ".join(p.info["cmdline"] or [])
        if "benchmarks/" in cmd:
            found.append(f"{p.info['pid']}: {cmd[:200]}")
    return found


def wait_for_benchmarks(max_s: float, poll_s: float = 30.0) -> dict[str, Any]:
    """Wait up to ``max_s`` seconds, polling every ``poll_s``, until no other benchmark script runs."""
    t0 = time.perf_counter()
    others = other_benchmarks()
    while others and time.perf_counter() - t0 < max_s:
        print(f"waiting for other benchmarks ({len(others)} running): {others[0]}", flush=True)
        time.sleep(min(poll_s, max(0.0, max_s - (time.perf_counter() - t0))))
        others = other_benchmarks()
    return {"max_wait_s": max_s, "waited_s": round(time.perf_counter() - t0, 1), "still_running": others}
