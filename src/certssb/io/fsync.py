"""Durable writes: the fsync of a folder that makes a rename inside it survive a crash of the machine."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: Path | str) -> None:
    """fsync a folder, so a rename inside it survives a crash of the machine (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
