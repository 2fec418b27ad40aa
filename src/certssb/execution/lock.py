"""One run per project folder: an exclusive ``fcntl.flock`` on ``data/.kedro_run.lock``.

The lock belongs to the open file, so the operating system drops it when the process ends in any way (exit,
exception, SIGKILL, crash): a dead run never blocks the next one and there is no stale lock to clean up. The
file's content (pid, start time, command) only serves the message of a refused run.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from certssb.core.validation import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no flock, no lock (documented)
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """``acquire()`` takes the lock or raises ONE :class:`ConfigError` naming the run that holds it."""

    NAME = ".kedro_run.lock"

    def __init__(self, path: Path | str, describe: str = "kedro run") -> None:
        self.path = Path(path)
        self.describe = describe
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"another kedro run is running in this project folder ({holder}; lock "
                f"{self.path}): wait until it ends, or run in a copy of the project"
            ) from None
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {now}: {self.describe}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
