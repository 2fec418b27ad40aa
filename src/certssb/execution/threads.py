"""The thread policy: how many threads torch uses for one ``kedro run``.

Rule: ``num_threads = cores / concurrent torch jobs``. The default (parameter ``num_threads: null``) is the
fastest for ONE run on the machine: ``$OMP_NUM_THREADS`` when it is set (the user has already chosen), else
every core this process may use (``os.sched_getaffinity``). Running several jobs at once on one machine (a
study beside a run, two engineers), give each ``cores // jobs`` (at least 1): torch's default of all cores
per process makes each of two concurrent runs 2.7-5x slower than one thread each (docs/performance.md,
``benchmarks/threads.py``).

The count is applied once, at the start of the run (``certssb.hooks.ThreadPolicyHook``), with
``torch.set_num_threads``. It changes trained weights in the last bits (floating-point summation order), so
the ensemble's training config and its checkpoint fingerprint record it (``certssb.execution.checkpoints``).
"""

from __future__ import annotations

import os

import torch

from certssb.core.validation import positive


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def resolve_threads(num_threads: int | None) -> int:
    """``num_threads`` if given (checked: an integer >= 1), else ``$OMP_NUM_THREADS`` if it is a positive
    integer, else :func:`available_cores`."""
    if num_threads is not None:
        positive("num_threads", num_threads, integer=True)
        return int(num_threads)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


def policy_threads(jobs: int, cores: int | None = None) -> int:
    """The documented rule for ``jobs`` concurrent torch jobs: ``max(1, cores // jobs)``."""
    positive("jobs", jobs, integer=True)
    return max(1, (cores or available_cores()) // int(jobs))


def apply_threads(num_threads: int | None) -> int:
    """``torch.set_num_threads(resolve_threads(num_threads))``; returns the count now in use."""
    n = resolve_threads(num_threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()
