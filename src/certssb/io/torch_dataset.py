"""``TorchDataset``: a versioned Kedro dataset for tensor artifacts, written with ``torch.save`` and
read with ``torch.load(..., weights_only=True)``.

Only plain data is accepted: a tensor, or a (nested) dict / list / tuple of tensors, ``str``,
``int``, ``float``, ``bool`` and ``None`` (dict keys: ``str`` or ``int``). Anything else -- a
module, a numpy array or scalar, a set, a custom class -- is refused at save time with the key path
of the offending value, so no artifact ever needs pickle to be read back.

Catalog entry::

    model_weights:
      type: certssb.io.torch_dataset.TorchDataset
      filepath: data/06_models/weights.pt
      versioned: true
"""

from __future__ import annotations

import io
import os
import uuid
from collections import OrderedDict
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import torch
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from certssb.io.fsync import fsync_dir

_SCALARS: tuple[type, ...] = (str, int, float, bool, type(None))


def _path_str(path: str) -> str:
    return path or "<root>"


def _plain(data: Any, path: str = "") -> Any:
    """Check that ``data`` is plain data (see module docstring) and return it with every tensor
    detached and compacted (a view of a big tensor would otherwise save the whole storage).

    Raises ``DatasetError`` naming the key path (e.g. ``['model'][2]``) and the type found.
    """
    kind = type(data)
    if isinstance(data, torch.Tensor):
        t = data.detach()
        if t.layout == torch.strided and (
            not t.is_contiguous()
            or t.storage_offset() != 0
            or t.untyped_storage().nbytes() != t.numel() * t.element_size()
        ):
            t = t.clone(memory_format=torch.contiguous_format)
        if type(t) is not torch.Tensor:  # Parameter / tensor subclasses -> plain tensor
            t = t.as_subclass(torch.Tensor)
        return t
    if kind in _SCALARS:  # exact types: numpy.float64 is a float subclass but needs pickle
        return data
    if kind in (dict, OrderedDict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if type(key) not in (str, int):
                raise DatasetError(
                    "TorchDataset cannot save a dict key of type "
                    f"{type(key).__module__}.{type(key).__name__} "
                    f"at {_path_str(path)} ({key!r}); keys must be str or int"
                )
            out[key] = _plain(value, f"{path}[{key!r}]")
        return out
    if kind in (list, tuple, torch.Size):
        items = [_plain(v, f"{path}[{i}]") for i, v in enumerate(data)]
        return items if kind is list else tuple(items)  # torch.Size is stored as a plain tuple
    raise DatasetError(
        f"TorchDataset cannot save {kind.__module__}.{kind.__qualname__} at {_path_str(path)}: only "
        "tensors and (nested) dict / list / tuple of tensors, str, int, float, bool, None are allowed "
        "(convert it, e.g. torch.as_tensor(...), float(...), list(...), or module.state_dict())"
    )


class TorchDataset(AbstractVersionedDataset[Any, Any]):
    """Load / save plain tensor artifacts with ``torch.load(weights_only=True)`` / ``torch.save``.

    Local saves go to a temporary file in the target directory, fsync'ed, followed by an atomic
    ``os.replace`` and an fsync of the directory, so a crash never leaves a half-written artifact;
    on other filesystems the bytes are written to a temporary path next to the target and moved into place.

    Example:
        >>> ds = TorchDataset(filepath=str(tmp_path / "a.pt"))
        >>> ds.save({"w": torch.ones(2), "names": ["a", "b"]})
        >>> ds.load()["w"]
        tensor([1., 1.])
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            filepath: path of the ``.pt`` file, optionally with an fsspec protocol (``s3://...``).
            version: kedro ``Version``; ``load=None`` loads the latest, ``save=None`` makes a timestamp.
            metadata: free metadata, ignored by kedro (used by plugins such as kedro-viz).
            fs_args: arguments of the fsspec filesystem constructor.
            credentials: credentials of the fsspec filesystem.
        """
        _fs_args = deepcopy(fs_args) or {}
        _credentials = deepcopy(credentials) or {}
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        if protocol == "file":
            _fs_args.setdefault("auto_mkdir", True)
        self._fs = fsspec.filesystem(self._protocol, **_credentials, **_fs_args)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def load(self) -> Any:
        """Read the artifact with ``torch.load(map_location="cpu", weights_only=True)``."""
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError as exc:  # versioned and no version saved yet
            raise DatasetError(
                f"TorchDataset artifact '{self._filepath}' does not exist (no saved version): run the "
                f"pipeline that produces it first. ({exc})"
            ) from exc
        if not self._fs.exists(load_path):
            raise DatasetError(
                f"TorchDataset artifact '{load_path}' does not exist: run the pipeline that produces "
                "it first (or check the catalog filepath / load version)."
            )
        try:
            if self._protocol == "file":
                return torch.load(load_path, map_location="cpu", weights_only=True)
            with self._fs.open(load_path, "rb") as fh:
                return torch.load(io.BytesIO(fh.read()), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DatasetError(
                f"TorchDataset cannot read '{load_path}' with torch.load(weights_only=True): {exc}"
            ) from exc

    def save(self, data: Any) -> None:
        """Check that ``data`` is plain (see module docstring), then write it atomically."""
        plain = _plain(data)
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        buffer = io.BytesIO()
        torch.save(plain, buffer)
        payload = buffer.getvalue()
        if self._protocol == "file":
            target = Path(save_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = str(target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp")
            # os.open with 0o666 honours the umask (mkstemp would make the artifact 0600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
                fsync_dir(target.parent)  # the rename itself survives a crash of the machine
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            tmp = f"{save_path}.tmp-{os.getpid()}"
            with self._fs.open(tmp, "wb") as fh:
                fh.write(payload)
            self._fs.mv(tmp, save_path)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        """Invalidate the fsspec listing cache of the dataset's path."""
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
