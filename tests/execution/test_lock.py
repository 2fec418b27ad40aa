"""certssb.execution.lock: one run per project folder; a refused run is one line naming the holder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from certssb.core.validation import ConfigError
from certssb.execution.lock import RunLock


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


def test_the_lock_file_says_who_holds_it_and_release_is_idempotent(tmp_path):
    path = tmp_path / "nested" / "data" / RunLock.NAME  # the folder is created
    lock = RunLock(path, describe="kedro run --pipelines=audit")
    assert not lock.held
    lock.acquire()
    text = path.read_text()
    assert (
        lock.held
        and text.startswith(f"pid {os.getpid()}, started 20")
        and text.endswith("Z: kedro run --pipelines=audit")
    )
    lock.release()
    assert not lock.held and path.read_text() == ""  # emptied: no stale holder in a later message
    lock.release()  # a second release is a no-op


def test_a_holder_that_wrote_nothing_is_called_another_process(tmp_path):
    import fcntl

    path = tmp_path / RunLock.NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, content still empty
    try:
        with pytest.raises(ConfigError, match=r"is running in this project folder \(another process; lock "):
            RunLock(path).acquire()
    finally:
        os.close(fd)
