"""one_thread_map: results in order, arguments made in order on the caller's thread and at most T + 1 ahead,
each call on one torch thread; serial on one thread."""

from __future__ import annotations

import threading

import pytest
import torch

from certssb.core.workers import one_thread_map

CPU = torch.device("cpu")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_results_in_order_each_call_on_one_torch_thread_in_a_worker(two_threads):
    caller = threading.get_ident()

    def fn(a):
        return a * a, torch.get_num_threads(), threading.get_ident()

    out = list(one_thread_map(fn, range(9), CPU))
    assert [r[0] for r in out] == [a * a for a in range(9)]
    assert {r[1] for r in out} == {1}
    assert caller not in {r[2] for r in out}
    assert torch.get_num_threads() == 2  # the caller's torch keeps its threads


def test_arguments_are_made_in_order_on_the_callers_thread_and_at_most_t_plus_1_ahead(two_threads):
    made, done, caller = [], [], threading.get_ident()

    def args():
        for a in range(8):
            assert threading.get_ident() == caller
            assert len(made) - len(done) <= 3  # T + 1 pending at most, T = 2
            made.append(a)
            yield a

    for r in one_thread_map(lambda a: a, args(), CPU):
        done.append(r)
    assert made == done == list(range(8))


def test_one_torch_thread_runs_the_calls_serially_on_the_callers_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        caller = threading.get_ident()
        assert list(one_thread_map(lambda a: (a, threading.get_ident()), range(3), CPU)) == [
            (0, caller),
            (1, caller),
            (2, caller),
        ]
    finally:
        torch.set_num_threads(before)
