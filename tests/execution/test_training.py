"""Tests for certssb.execution.training: checkpoints and resume (a rerun trains nothing, a deleted chunk is
the only one retrained, an interrupted run resumes to the uninterrupted result), train_ensemble's bad
arguments. The backends themselves: tests/core/test_ensemble.py."""

from __future__ import annotations

import pytest
import torch

import certssb.core.ensemble as ens
from certssb.core.validation import ConfigError
from tests.tiny_ensemble import N, assert_params_equal, cfg, make_data, make_plan, run


def test_rerun_with_checkpoints_trains_nothing(monkeypatch, tmp_path):
    x, y = make_data()
    sigma = torch.full((N,), 0.3)
    first, fp = run(x, y, sigma, make_plan(), cfg(), chunk_size=1, checkpoint_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / fp).iterdir())
    assert files == ["chunk_00000_00000.pt", "chunk_00001_00001.pt", "chunk_00002_00002.pt"]

    def boom(*a, **kw):
        raise AssertionError("nothing should be retrained")

    monkeypatch.setattr(ens, "train_chunk", boom)
    progress = []
    again, fp2 = run(
        x, y, sigma, make_plan(), cfg(), chunk_size=1, checkpoint_dir=tmp_path, progress=progress.append
    )
    assert fp2 == fp
    assert progress == [1, 1, 1]  # restored chunks are reported too
    assert_params_equal(again.params, first.params)
    assert again.log == first.log


def test_deleted_chunk_is_the_only_one_retrained(monkeypatch, tmp_path):
    x, y = make_data()
    sigma = torch.full((N,), 0.3)
    ref, _ = run(x, y, sigma, make_plan(), cfg())  # uninterrupted, no checkpoints
    _, fp = run(x, y, sigma, make_plan(), cfg(), chunk_size=1, checkpoint_dir=tmp_path)
    (tmp_path / fp / "chunk_00001_00001.pt").unlink()
    trained = []
    real = ens.train_chunk

    def counting(x, y, sigma, plan, indices, *a, **kw):
        trained.append(list(indices))
        return real(x, y, sigma, plan, indices, *a, **kw)

    monkeypatch.setattr(ens, "train_chunk", counting)
    res, _ = run(x, y, sigma, make_plan(), cfg(), chunk_size=1, checkpoint_dir=tmp_path)
    assert trained == [[1]]
    assert (tmp_path / fp / "chunk_00001_00001.pt").exists()
    assert res.indices == [0, 1, 2]
    assert_params_equal(res.params, ref.params)


def test_interrupted_run_resumes_to_the_uninterrupted_result(monkeypatch, tmp_path):
    x, y = make_data()
    sigma = torch.linspace(0.2, 0.4, N)
    ref, _ = run(x, y, sigma, make_plan(), cfg(), chunk_size=1)
    real = ens.train_chunk
    calls = []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(ens, "train_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(x, y, sigma, make_plan(), cfg(), chunk_size=1, checkpoint_dir=tmp_path)
    fp_dir = next(tmp_path.iterdir())
    assert sorted(p.name for p in fp_dir.iterdir()) == ["chunk_00000_00000.pt"]  # no partial files

    trained = []

    def counting(x, y, sigma, plan, indices, *a, **kw):
        trained.append(list(indices))
        return real(x, y, sigma, plan, indices, *a, **kw)

    monkeypatch.setattr(ens, "train_chunk", counting)
    res, _ = run(x, y, sigma, make_plan(), cfg(), chunk_size=1, checkpoint_dir=tmp_path)
    assert trained == [[1], [2]]
    assert_params_equal(res.params, ref.params)
    assert [(r["model"], r["epoch"]) for r in res.log] == [(0, 0), (1, 0), (2, 0)]


def test_different_inputs_use_a_different_checkpoint_folder(tmp_path):
    x, y = make_data()
    _, fa = run(x, y, torch.full((N,), 0.3), make_plan(m=1), cfg(), checkpoint_dir=tmp_path)
    _, fb = run(x, y, torch.full((N,), 0.3), make_plan(m=1), cfg(epochs=2), checkpoint_dir=tmp_path)
    assert fa != fb
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fa, fb])


def test_bad_ensemble_arguments():
    x, y = make_data()
    s = torch.full((N,), 0.3)
    with pytest.raises(ConfigError, match="'noise.num_models' = 0"):
        run(x, y, s, make_plan(), cfg(), num_models=0)
    with pytest.raises(ConfigError, match="'noise.num_models' = 4"):
        run(x, y, s, make_plan(m=3), cfg(), num_models=4)
    with pytest.raises(ConfigError, match="'ensemble.backend' = 'threads'"):
        run(x, y, s, make_plan(), cfg(), backend="threads")
    with pytest.raises(ConfigError, match="'ensemble.chunk_size' = 0"):
        run(x, y, s, make_plan(), cfg(), chunk_size=0)
    z = s.clone()
    z[7] = 0.0
    with pytest.raises(ConfigError, match="'sigma'"):
        run(x, y, z, make_plan(), cfg())
    with pytest.raises(ConfigError, match="mismatched shapes.*labels"):
        run(x, y[:-1], s, make_plan(), cfg())
    with pytest.raises(ConfigError, match="mismatched shapes.*sigma"):
        run(x, y, s[:-1], make_plan(), cfg())
    with pytest.raises(ConfigError, match="mismatched shapes"):
        run(x[:, 0], y, s, make_plan(), cfg())
    with pytest.raises(ConfigError, match="does not match the noise plan"):
        run(x[:-1], y[:-1], s[:-1], make_plan(), cfg())
