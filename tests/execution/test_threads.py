"""certssb.execution.threads: the thread policy (the default, the rule for concurrent jobs,
torch's setting)."""

from __future__ import annotations

import pytest
import torch

from certssb.core.validation import ConfigError
from certssb.execution import threads


def test_threads_default_is_omp_num_threads_then_all_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.resolve_threads(None) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.resolve_threads(None) == threads.available_cores() >= 1
    assert threads.resolve_threads(3) == 3
    with pytest.raises(ConfigError, match=r"parameter 'num_threads' = 0 is invalid"):
        threads.resolve_threads(0)


def test_the_rule_for_concurrent_jobs_is_cores_over_jobs():
    assert threads.policy_threads(1, cores=8) == 8
    assert threads.policy_threads(2, cores=8) == 4
    assert threads.policy_threads(3, cores=2) == 1  # never 0


def test_apply_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_bad_environment_value_falls_back_to_the_cores(monkeypatch):
    for bad in ("0", "-2", "four", " "):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert threads.resolve_threads(None) == threads.available_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", " 3 ")
    assert threads.resolve_threads(None) == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_bad_count_or_number_of_jobs_is_named(bad):
    with pytest.raises(ConfigError, match=r"parameter 'num_threads' = .* an integer in \(0, inf\)"):
        threads.resolve_threads(bad)
    with pytest.raises(ConfigError, match=r"parameter 'jobs' = "):
        threads.policy_threads(bad, cores=8)


def test_the_cores_are_this_process_affinity(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)
    assert threads.available_cores() == 3
    assert threads.policy_threads(2) == 1

    def no_affinity(pid):
        raise OSError

    monkeypatch.setattr(threads.os, "sched_getaffinity", no_affinity, raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: None)
    assert threads.available_cores() == 1  # unknown: one core, never 0
