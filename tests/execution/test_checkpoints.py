"""Thread policy, checkpoint fingerprint (threads, training code), damaged checkpoints, the run lock and the
durable dataset wrappers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from certssb.core.ensemble import TrainConfig
from certssb.core.noise import make_noise_plan
from certssb.core.validation import ConfigError
from certssb.execution import checkpoints, threads
from certssb.execution.checkpoints import chunk_path, ensemble_fingerprint
from certssb.execution.lock import RunLock
from certssb.execution.training import train_ensemble
from certssb.io.atomic import AtomicFile, CSVDataset, JSONDataset, MatplotlibDataset

N, SHAPE, C = 48, (1, 6, 6), 3


def data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(N) % C
    x = torch.rand(N, *SHAPE, generator=g)
    plan = make_noise_plan(seed=1, num_models=4, sigma=0.25, num_draws=1, n_train=N, input_shape=SHAPE)
    return x, y, torch.full((N,), 0.25), plan


CFG = TrainConfig(architecture="mlp", epochs=1, batch_size=16, lr=1e-3)


def train(x, y, s, plan, **kw):
    return train_ensemble(
        x, y, s, plan, CFG, num_classes=C, data_fingerprint="d", device="cpu", chunk_size=2, **kw
    )


# ------------------------------------------------------------------------------------------------ threads
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


def test_the_fingerprint_records_threads_and_training_code(monkeypatch):
    _, _, s, plan = data()
    one = ensemble_fingerprint("d", s, plan, CFG, C, threads=1)
    assert one != ensemble_fingerprint("d", s, plan, CFG, C, threads=2)
    assert one == ensemble_fingerprint("d", s, plan, CFG, C, threads=1)
    code = checkpoints.training_code_version()
    assert len(code) == 12 and checkpoints.training_provenance(1) == {"num_threads": 1, "training_code": code}
    monkeypatch.setattr(checkpoints, "training_code_version", lambda: "edited-code")  # the code changed
    assert ensemble_fingerprint("d", s, plan, CFG, C, threads=1) != one


def test_a_resume_under_another_thread_count_does_not_reuse_chunks(tmp_path):
    x, y, s, plan = data()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, fp1 = train(x, y, s, plan, checkpoint_dir=tmp_path)
        torch.set_num_threads(2)
        _, fp2 = train(x, y, s, plan, checkpoint_dir=tmp_path)
    finally:
        torch.set_num_threads(before)
    assert fp1 != fp2 and sorted(p.name for p in tmp_path.iterdir()) == sorted([fp1, fp2])


# --------------------------------------------------------------------------------- damaged checkpoint chunk
def test_a_truncated_chunk_is_named_moved_aside_and_retrained(tmp_path, caplog):
    x, y, s, plan = data()
    reference, fp = train(x, y, s, plan)  # uninterrupted, no checkpoints
    train(x, y, s, plan, checkpoint_dir=tmp_path)
    bad = chunk_path(tmp_path / fp, [2, 3])
    bad.write_bytes(bad.read_bytes()[:100])  # a crash before the data reached the disk
    with caplog.at_level(logging.WARNING, logger="certssb.execution.training"):
        again, _ = train(x, y, s, plan, checkpoint_dir=tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "retrained" in warnings[0]
    assert len(list((tmp_path / fp).glob("chunk_00002_00003.pt.corrupt-*"))) == 1  # kept for inspection
    assert bad.exists()  # retrained and saved again
    assert again.indices == reference.indices
    for k in reference.params:
        assert torch.equal(again.params[k], reference.params[k]), k


def test_checkpoints_leave_no_temporary_file(tmp_path):
    x, y, s, plan = data()
    _, fp = train(x, y, s, plan, checkpoint_dir=tmp_path)
    names = sorted(p.name for p in (tmp_path / fp).iterdir())
    assert names == ["chunk_00000_00001.pt", "chunk_00002_00003.pt"]


# ------------------------------------------------------------------------------------------------ the lock
def test_a_second_lock_is_refused_in_one_line_naming_the_holder(tmp_path):
    first = RunLock(tmp_path / "data" / RunLock.NAME, describe="kedro run --pipelines=study")
    first.acquire()
    try:
        with pytest.raises(ConfigError) as err:
            RunLock(tmp_path / "data" / RunLock.NAME).acquire()
        msg = str(err.value)
        assert "\n" not in msg and f"pid {os.getpid()}" in msg and "kedro run --pipelines=study" in msg
        assert msg.startswith("another kedro run is running in this project folder")
    finally:
        first.release()
    again = RunLock(tmp_path / "data" / RunLock.NAME)
    again.acquire()  # released: the next run goes
    again.release()


def test_the_lock_of_a_dead_process_is_free(tmp_path):
    path = tmp_path / RunLock.NAME
    code = (
        f"from certssb.execution.lock import RunLock; import os; RunLock({str(path)!r}).acquire(); "
        "os._exit(0)"
    )  # dies holding the lock, without releasing it
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
    lock = RunLock(path)
    lock.acquire()
    assert lock.held
    lock.release()


# ----------------------------------------------------------------------------------- durable dataset wrappers
def test_atomic_datasets_round_trip_and_leave_no_temporary_file(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    csv = CSVDataset(filepath=str(tmp_path / "t" / "table.csv"), save_args={"index": False})
    csv.save(df)
    pd.testing.assert_frame_equal(csv.load(), df)
    js = JSONDataset(filepath=str(tmp_path / "d.json"))
    js.save({"k": [1, 2]})
    assert js.load() == {"k": [1, 2]}
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    png = MatplotlibDataset(filepath=str(tmp_path / "f.png"))
    png.save(fig)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text(json.dumps({"old": True}))
    with pytest.raises(RuntimeError), AtomicFile(target, "w") as fh:
        fh.write('{"new": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
