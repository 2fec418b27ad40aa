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
