"""certssb.execution.checkpoints: the fingerprint (threads, training code), a resume under another thread
count, damaged checkpoints, no temporary file."""

from __future__ import annotations

import logging

import torch

from certssb.core.ensemble import TrainConfig
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
