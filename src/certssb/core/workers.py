"""Calls on one-thread workers: how the CPU paths use T torch threads for small models.

A small CNN uses a second intra-op thread poorly, so on a CPU with T > 1 torch threads the ensemble's
training (one model per call), Cert-SSB's sigma ascent (one batch per call) and the inference-time
certifier's draws (one chunk of samples per call) run T calls at once, each in a worker thread whose torch
uses ONE thread. Every call's arithmetic is then single-threaded, so its result does not depend on T or on
which worker ran it; on a GPU, or with one torch thread, the calls run one after another on the caller's
thread.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import torch

_R = TypeVar("_R")


def one_thread_map(fn: Callable[[Any], _R], args: Iterable[Any], device: torch.device) -> Iterator[_R]:
    """``fn(a)`` for each ``a`` of ``args``, the results in the order of ``args``.

    On a CPU with T = ``torch.get_num_threads()`` > 1: T calls at once, each on a worker with one torch
    thread. ``args`` is consumed in order on the caller's thread and at most T + 1 calls are pending, so an
    argument made lazily (e.g. noise drawn from one generator) is made in the same order, and with bounded
    memory, whatever T is."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield from map(fn, args)
        return
    with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        pending: collections.deque[Future[_R]] = collections.deque()
        for a in args:
            pending.append(pool.submit(fn, a))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
