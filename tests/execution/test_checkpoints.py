"""certssb.execution.checkpoints: the fingerprint (threads, training code), a resume under another thread
count, damaged checkpoints, no temporary file."""

from __future__ import annotations

import logging

import pytest
import torch

from certssb.core.ensemble import ChunkResult, TrainConfig
from certssb.core.noise import make_noise_plan
from certssb.execution import checkpoints
from certssb.execution.checkpoints import chunk_path, ensemble_fingerprint
from certssb.execution.training import train_ensemble

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


# ----------------------------------------------------------------------------- fingerprint and resume


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


# ----------------------------------------------------------------------------- chunks on disk
def test_chunks_cover_the_models_in_order_and_are_named_by_their_first_and_last_model(tmp_path):
    assert checkpoints.chunks_of(5, 2) == [[0, 1], [2, 3], [4]]
    assert checkpoints.chunks_of(4, 4) == [[0, 1, 2, 3]] and checkpoints.chunks_of(3, 10) == [[0, 1, 2]]
    assert checkpoints.chunks_of(0, 2) == []
    assert chunk_path(tmp_path, [12, 13, 14]) == tmp_path / "chunk_00012_00014.pt"


def test_a_chunk_round_trips_and_a_failed_save_leaves_nothing(tmp_path, monkeypatch):
    res = ChunkResult([2, 3], {"w": torch.arange(6.0).reshape(2, 3)}, [{"model": 2, "epoch": 0, "loss": 0.5}])
    path = chunk_path(tmp_path, res.indices)
    checkpoints.save_chunk(res, path)
    back = checkpoints.load_chunk(path)
    assert back.indices == [2, 3] and back.log == res.log and torch.equal(back.params["w"], res.params["w"])

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        checkpoints.save_chunk(res, tmp_path / "other.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary, no partial file


def test_a_damaged_chunk_is_moved_aside_under_a_new_name(tmp_path):
    path = tmp_path / "chunk_00000_00001.pt"
    path.write_bytes(b"trunc")
    moved = checkpoints.move_aside(path)
    assert not path.exists() and moved.read_bytes() == b"trunc"
    assert moved.parent == tmp_path and moved.name.startswith("chunk_00000_00001.pt.corrupt-")
    assert moved.name.rsplit("-", 1)[1].isdigit()
