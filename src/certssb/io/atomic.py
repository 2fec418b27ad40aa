"""Durable, atomic versions of the Kedro datasets for tables, dicts and figures.

``CSVDataset``, ``JSONDataset`` and ``MatplotlibDataset`` are kedro-datasets' own classes whose local writes
go to a temporary file in the target folder, which is flushed and fsync'ed, renamed over the target
(``os.replace``: atomic) and whose folder is fsync'ed: a crash or a kill leaves the old file or the new one,
never a truncated one, and a rename that returned survives a power loss. Other protocols (``s3://``, ...)
write as kedro-datasets does. Catalog entries name them like the originals::

    "{method}.certificates":
      type: certssb.io.atomic.CSVDataset
      filepath: data/07_model_output/{method}/certificates.csv
      versioned: true
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset

from certssb.io.fsync import fsync_dir

_WRITE = ("w", "a", "x", "+")


class AtomicFile:
    """A file open for writing at a temporary path; ``close()`` (or leaving ``with`` without an error) fsyncs
    it, renames it to ``path`` and fsyncs the folder; leaving ``with`` on an error deletes it."""

    def __init__(self, path: str | Path, mode: str = "wb", **kwargs: Any) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}.tmp"
        self._fh = open(self._tmp, mode, **kwargs)  # noqa: SIM115 - closed in close() / __exit__
        self._done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def write(self, data: Any) -> int:
        return self._fh.write(data)

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        if self._done:
            return
        self._done = True
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


class _AtomicFS:
    """The dataset's fsspec filesystem, with ``open`` in a write mode returning an :class:`AtomicFile`."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if any(c in mode for c in _WRITE):
            kwargs.pop("auto_mkdir", None)
            return AtomicFile(path, mode, **kwargs)
        return self._fs.open(path, mode, **kwargs)


class _Atomic:
    def _make_atomic(self) -> None:
        if getattr(self, "_protocol", None) == "file":
            self._fs = _AtomicFS(self._fs)


class CSVDataset(_CSVDataset, _Atomic):
    """kedro-datasets' ``pandas.CSVDataset`` with durable, atomic local writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make_atomic()


class JSONDataset(_JSONDataset, _Atomic):
    """kedro-datasets' ``json.JSONDataset`` with durable, atomic local writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make_atomic()


class MatplotlibDataset(_MatplotlibDataset, _Atomic):
    """kedro-datasets' ``matplotlib.MatplotlibDataset`` with durable, atomic local writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make_atomic()
