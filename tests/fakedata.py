"""Tiny fake data sets written in the real on-disk formats, for offline tests.

The images are learnable on purpose: class k shows a bright bar at a class-dependent place
(classes 0-4 horizontal, 5-9 vertical) over dim noise, so end-to-end tests can check that
accuracy rises after a few steps. Generation is deterministic: `pattern_images(n, seed)` is
exactly what the writers store, so tests can compare loaded data against it.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def pattern_images(
    n: int, seed: int, size: int = 28, channels: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Return `n` bar images, uint8 (n, channels, size, size), and int64 labels (n,).

    Labels cycle through all 10 classes (shuffled), so even tiny sets contain every class.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    images = rng.integers(0, 60, size=(n, channels, size, size), dtype=np.uint8)
    width = max(2, size // 10)
    for i, label in enumerate(labels):
        start = int((label % 5 + 0.5) * size / 5) - width // 2
        bar = slice(start, start + width)
        value = rng.integers(200, 256, size=channels, dtype=np.uint8)[:, None, None]
        if label < 5:
            images[i, :, bar, :] = value
        else:
            images[i, :, :, bar] = value
    return images, labels


def write_mnist_idx(
    root: Path,
    folder: str = "MNIST",
    n_train: int = 200,
    n_test: int = 50,
    gzip_files: bool = False,
    seed: int = 0,
) -> None:
    """Write the four IDX files under `root/<folder>/raw/`, as torchvision's MNIST reads them.

    `folder` is the torchvision class name: "MNIST", "FashionMNIST" or "KMNIST". The training
    files hold `pattern_images(n_train, seed)`, the t10k files `pattern_images(n_test, seed + 1)`.
    """
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, split_seed in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        images, labels = pattern_images(n, split_seed)
        # IDX: big-endian magic (0x08 = uint8, then the number of dims), the dims, the bytes.
        image_bytes = struct.pack(">IIII", 2051, n, 28, 28) + images[:, 0].tobytes()
        label_bytes = struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
        _write(raw / f"{prefix}-images-idx3-ubyte", image_bytes, gzip_files)
        _write(raw / f"{prefix}-labels-idx1-ubyte", label_bytes, gzip_files)


def _write(path: Path, data: bytes, gzip_file: bool) -> None:
    if gzip_file:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_cifar10(root: Path, n_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> None:
    """Write `root/cifar-10-batches-py/` like the real (Python 2 pickled) CIFAR-10 files.

    The five data batches hold `pattern_images(5 * n_per_batch, seed, 32, 3)` in order, the
    test batch `pattern_images(n_test, seed + 1, 32, 3)`. torchvision checks the real files'
    md5 sums, which these cannot match: load them inside `cifar10_md5_check_skipped()`.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = pattern_images(5 * n_per_batch, seed, size=32, channels=3)
    test_x, test_y = pattern_images(n_test, seed + 1, size=32, channels=3)
    for i in range(5):
        part = slice(i * n_per_batch, (i + 1) * n_per_batch)
        _write_cifar_batch(folder / f"data_batch_{i + 1}", train_x[part], train_y[part], i + 1)
    _write_cifar_batch(folder / "test_batch", test_x, test_y, "testing")
    meta = {
        _Py2Str(b"label_names"): [_Py2Str(c.encode()) for c in CIFAR10_CLASSES],
        _Py2Str(b"num_cases_per_batch"): n_per_batch,
        _Py2Str(b"num_vis"): 3072,
    }
    _py2_pickle(folder / "batches.meta", meta)


def _write_cifar_batch(path: Path, x: np.ndarray, y: np.ndarray, batch: int | str) -> None:
    # Each row is 1024 red, then 1024 green, then 1024 blue values: the CHW order flattened.
    name = f"training batch {batch} of 5" if isinstance(batch, int) else "testing batch 1 of 1"
    entry = {
        _Py2Str(b"batch_label"): _Py2Str(name.encode()),
        _Py2Str(b"labels"): [int(v) for v in y],
        _Py2Str(b"data"): np.ascontiguousarray(x.reshape(len(x), 3 * 32 * 32)),
        _Py2Str(b"filenames"): [_Py2Str(f"fake_{i}.png".encode()) for i in range(len(x))],
    }
    _py2_pickle(path, entry)


class _Py2Str(bytes):
    """Bytes pickled as a Python 2 `str`, as in the real CIFAR files.

    That way they load as "data" with encoding="latin1" (torchvision) and as b"data" with
    encoding="bytes" (the recipe on the CIFAR web page), just like the originals.
    """


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us add a type
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: _Py2Str) -> None:
        data = bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2_str


def _py2_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


@contextlib.contextmanager
def cifar10_md5_check_skipped() -> Iterator[None]:
    """Let torchvision's CIFAR10 accept fake files: check that they exist, not their md5.

    torchvision verifies every batch file and batches.meta against the md5 of the real
    release; fake files cannot match it. Missing files are still reported as missing.
    """

    def exists_only(fpath: str | os.PathLike[str], md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    with mock.patch("torchvision.datasets.cifar.check_integrity", exists_only):
        yield
