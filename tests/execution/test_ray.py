"""Tests for certssb.execution.ray: equality with the sequential backend, retries, resuming, shards, votes
(its options and addresses: tests/execution/test_ray_options.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

ray = pytest.importorskip("ray")

from certssb.core.ensemble import TrainConfig  # noqa: E402
from certssb.core.noise import make_noise_plan  # noqa: E402
from certssb.core.validation import ConfigError  # noqa: E402
from certssb.execution import ray as ray_backend  # noqa: E402
from certssb.execution.checkpoints import chunk_path, ensemble_fingerprint  # noqa: E402
from certssb.execution.training import train_ensemble, train_threads  # noqa: E402

pytestmark = pytest.mark.ray

M = 4
CFG = TrainConfig(architecture="mlp", epochs=1, batch_size=16)


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    sigma = torch.full((64,), 0.25)
    plan = make_noise_plan(seed=0, num_models=M, sigma=0.25, num_draws=1, n_train=64, input_shape=(1, 8, 8))
    return x, y, sigma, plan


def run(data, backend="ray", chunk_size=1, checkpoint_dir=None, progress=None, **opts):
    x, y, sigma, plan = data
    return train_ensemble(
        x,
        y,
        sigma,
        plan,
        CFG,
        num_classes=3,
        data_fingerprint="test",
        backend=backend,
        device="cpu",
        chunk_size=chunk_size,
        checkpoint_dir=checkpoint_dir,
        ray_options=opts,
        progress=progress,
    )[0]


@pytest.fixture(scope="module")
def reference(data):
    return run(data, backend="sequential")


@pytest.fixture
def fail_shard_0_once(monkeypatch, tmp_path):
    """The first attempt of shard 0 creates a marker file and raises; later attempts (the file exists) train
    normally -- a failure that survives Ray's worker processes. Returns the marker's path."""
    marker = str(tmp_path / "failed_once")
    train_shard = ray_backend._train_shard

    def failing(x, y, sigma, plan, shard, cfg, num_classes, settings):  # a closure: pickled by value for Ray
        if settings["shard_id"] == 0:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                raise RuntimeError("injected failure of shard 0")
        return train_shard(x, y, sigma, plan, shard, cfg, num_classes, settings)

    monkeypatch.setattr(ray_backend, "_remote_train_shard", lambda: ray.remote(failing))
    return marker


def assert_same(a, b):
    assert a.indices == b.indices == list(range(M))
    assert a.params.keys() == b.params.keys()
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name


@pytest.mark.parametrize(("chunk_size", "num_shards"), [(1, None), (2, 1)])
def test_ray_equals_sequential(data, reference, chunk_size, num_shards):
    seen = []
    out = run(data, chunk_size=chunk_size, num_shards=num_shards, progress=seen.append)
    assert_same(out, reference)
    assert sum(seen) == M
    assert [r["model"] for r in out.log] == list(range(M))


def test_vectorised_local_backend_matches(data, reference):
    out = run(data, chunk_size=2, local_backend="vectorised")
    for name in out.params:
        torch.testing.assert_close(
            out.params[name], reference.params[name], rtol=1e-4, atol=1e-4
        )  # float order


def test_failed_shard_is_retried(data, reference, fail_shard_0_once):
    out = run(data, chunk_size=2, max_retries=1)
    assert os.path.exists(fail_shard_0_once)  # shard 0 did fail once, and its retry succeeded
    assert_same(out, reference)


def test_exhausted_retries_then_rerun_resumes(data, reference, tmp_path, fail_shard_0_once):
    ckpt = tmp_path / "ckpt"
    with pytest.raises(ray_backend.ShardError, match=r"models 0-1 failed .*max_retries=0.*rerun resumes"):
        run(data, chunk_size=2, checkpoint_dir=ckpt, max_retries=0)
    # the shards train with num_cpus_per_shard threads: part of the fingerprint (certssb.execution.training)
    folder = ckpt / ensemble_fingerprint("test", data[2], data[3], CFG, 3, train_threads("ray", {}))
    assert sorted(p.name for p in folder.glob("chunk_*.pt")) == ["chunk_00002_00003.pt"]  # shard 1 was saved
    out = run(data, chunk_size=2, checkpoint_dir=ckpt, max_retries=0)  # shard 0 now trains
    assert_same(out, reference)


def test_stopped_run_resumes(data, reference, tmp_path):
    x, y, sigma, plan = data
    run(data, chunk_size=1, checkpoint_dir=tmp_path, num_shards=2)
    folder = tmp_path / ensemble_fingerprint("test", sigma, plan, CFG, 3, train_threads("ray", {}))
    files = {k: chunk_path(folder, [k]) for k in range(M)}
    before = {k: p.stat().st_mtime_ns for k, p in files.items()}
    files[2].unlink()
    time.sleep(0.01)
    seen = []
    out = run(data, chunk_size=1, checkpoint_dir=tmp_path, num_shards=2, progress=seen.append)
    assert files[2].exists()
    assert {k: files[k].stat().st_mtime_ns == before[k] for k in (0, 1, 3)} == {0: True, 1: True, 3: True}
    assert sum(seen) == M  # 3 restored + 1 trained
    assert_same(out, reference)


def test_num_shards_above_num_models_fails_before_training(data):
    with pytest.raises(ConfigError, match=r"ensemble\.ray\.num_shards"):
        run(data, num_shards=M + 1)


def test_make_shards_keeps_whole_contiguous_chunks():
    chunks = [[0, 1], [2, 3], [4, 5], [6]]
    assert ray_backend.make_shards(chunks, 3) == [[[0, 1], [2, 3]], [[4, 5]], [[6]]]
    assert ray_backend.make_shards(chunks, 10) == [[c] for c in chunks]
    assert ray_backend.make_shards([], None) == []


def test_own_local_instance_is_shut_down_and_bad_address_fails_fast(tmp_path):
    """Without an initialised Ray: address null starts (and stops) a local instance; a dead address fails."""
    script = textwrap.dedent("""
        import time, ray, torch
        from certssb.core.ensemble import TrainConfig
        from certssb.execution.training import train_ensemble
        from certssb.core.noise import make_noise_plan
        from certssb.core.validation import ConfigError
        x, y, s = torch.rand(16, 1, 4, 4), torch.randint(0, 2, (16,)), torch.full((16,), 0.5)
        plan = make_noise_plan(
            seed=0, num_models=2, sigma=0.5, num_draws=1, n_train=16, input_shape=(1, 4, 4)
        )
        cfg = TrainConfig(architecture="mlp", epochs=1, batch_size=8)
        kw = dict(num_classes=2, data_fingerprint="t", backend="ray", device="cpu", chunk_size=1)
        t0 = time.perf_counter()
        try:
            train_ensemble(x, y, s, plan, cfg, ray_options={"address": "127.0.0.1:1"}, **kw)
            raise SystemExit("no ConfigError for a dead address")
        except ConfigError as e:
            assert "ensemble.ray.address" in str(e) and not ray.is_initialized(), e
        assert time.perf_counter() - t0 < 10
        out, _ = train_ensemble(x, y, s, plan, cfg, ray_options={"num_cpus": 1}, **kw)
        assert out.indices == [0, 1] and not ray.is_initialized()
        print("OK")
    """)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


def test_votes_on_ray_equal_the_local_votes(data, reference):
    from certssb.core.votes import predict_votes
    from certssb.execution.ray import predict_votes_ray

    x, _, sigma, plan = data
    model = {
        "architecture": CFG.architecture,
        "in_shape": list(x.shape[1:]),
        "num_classes": 3,
        "params": reference.params,
        "model_indices": torch.tensor(reference.indices),
    }
    local = predict_votes(model, x[:20], sigma[:20], plan, "clean", device=torch.device("cpu"), model_chunk=2)
    remote = predict_votes_ray(
        model, x[:20], sigma[:20], plan, "clean", options={"num_shards": 2}, model_chunk=1
    )
    assert torch.equal(local["votes"], remote["votes"])
    torch.testing.assert_close(local["probs"], remote["probs"], rtol=1e-5, atol=1e-6)
