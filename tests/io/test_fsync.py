"""certssb.io.fsync: a folder is fsync'ed through a descriptor that is always closed; a folder that cannot be
opened or synced (missing, unsupported) is a no-op, never an error."""

from __future__ import annotations

import os

import pytest

from certssb.io import fsync


@pytest.fixture
def calls(monkeypatch):
    """Every descriptor passed to ``os.fsync`` and every one closed, in order."""
    seen: dict[str, list[int]] = {"fsync": [], "close": []}
    real_close = os.close
    monkeypatch.setattr(fsync.os, "fsync", lambda fd: seen["fsync"].append(fd))
    monkeypatch.setattr(fsync.os, "close", lambda fd: (seen["close"].append(fd), real_close(fd)))
    return seen


def test_the_folder_is_synced_and_its_descriptor_closed(tmp_path, calls):
    fsync.fsync_dir(tmp_path)
    assert len(calls["fsync"]) == 1 and calls["close"] == calls["fsync"]
    with pytest.raises(OSError):
        os.fstat(calls["fsync"][0])  # closed


def test_a_missing_folder_is_a_no_op(tmp_path, calls):
    fsync.fsync_dir(tmp_path / "not-there")
    assert calls == {"fsync": [], "close": []}


def test_a_filesystem_that_cannot_sync_a_folder_is_a_no_op_and_closes(tmp_path, monkeypatch, calls):
    def unsupported(fd):
        calls["fsync"].append(fd)
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(fsync.os, "fsync", unsupported)
    fsync.fsync_dir(str(tmp_path))  # a str path works too
    assert len(calls["fsync"]) == 1 and calls["close"] == calls["fsync"]
