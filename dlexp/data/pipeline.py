"""From an image data set to the three loaders the loop consumes (a GAN: one, and real images).

What to read and how comes in as plain parameters; `dlexp.engine.databuild` makes them from the
data config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlexp.data.loaders import DataLoaderBatches, TensorLoader, channel_stats, prepare_images
from dlexp.data.vision import ImageSplits, load_image_splits


@dataclass(frozen=True)
class ImageSource:
    """An image data set on disk, and how its training split is cut into train and val."""

    name: str  # one of VISION_DATASETS
    data_dir: Path
    download: bool
    val_fraction: float
    split_seed: int

    def load(self) -> ImageSplits:
        """Train/val/test as uint8 tensors (the test split is always the same)."""
        return load_image_splits(
            self.name,
            self.data_dir,
            download=self.download,
            val_fraction=self.val_fraction,
            split_seed=self.split_seed,
        )


@dataclass
class ImageData:
    train: TensorLoader | DataLoaderBatches
    val: TensorLoader | DataLoaderBatches
    test: TensorLoader | DataLoaderBatches
    classes: list[str]
    channels: int
    image_size: int  # the size the model sees (after padding/resizing)
    mean: list[float]
    std: list[float]
    loader_kind: str  # "tensor" or "dataloader"
    # uint8 validation images at native size, for the misclassified-examples grid
    val_images: torch.Tensor | None
    input_size: int = 0  # the data set's own size (before padding/resizing to image_size)

    def model_inputs(self) -> dict[str, Any]:
        """Constructor arguments the data decides (a model gets those it takes)."""
        return {
            "in_channels": self.channels,
            "image_size": self.image_size,
            "num_classes": len(self.classes),
        }

    def example(self) -> torch.Tensor:
        """A small input batch of the right shape (gives lazy layers their sizes)."""
        return torch.zeros(2, self.channels, self.image_size, self.image_size)

    def state(self) -> dict[str, Any]:
        """What a checkpoint needs to preprocess new inputs the same way: uint8 images of
        `input_size` px, scaled to [0, 1], normalised, then padded or resized to `image_size`."""
        return {
            "mean": self.mean,
            "std": self.std,
            "image_size": self.image_size,
            "input_size": self.input_size or self.image_size,
        }

    def describe(self) -> str:
        return (
            f"{self.train.num_samples:,} train / {self.val.num_samples:,} val / "
            f"{self.test.num_samples:,} test, {self.loader_kind} loader"
        )


def split_bytes(n: int, channels: int, size: int) -> int:
    return n * channels * size * size * 4  # float32 once prepared


def build_image_data(
    source: ImageSource,
    *,
    augment: str,
    loader: str,
    memory_budget_mb: float,
    num_workers: int,
    batch_size: int,
    eval_batch_size: int,
    model_image_size: int | None,
    device: torch.device,
    channels_last: bool,
    seed: int,
    limit_train_batches: int | None = None,
    limit_val_batches: int | None = None,
    overfit_batches: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> ImageData:
    """`loader`: tensor (every split prepared on the device), dataloader (uint8 images on the
    host, `num_workers` processes), or auto (tensor when the splits fit `memory_budget_mb`).
    `augment` applies to the training batches only."""
    splits = source.load()
    train_x, train_y = splits.train_x, splits.train_y
    val_x, val_y = splits.val_x, splits.val_y
    if overfit_batches:
        # Debugging aid: a model that cannot fit a handful of batches has a bug, not a tuning issue.
        n = overfit_batches * batch_size
        train_x, train_y = train_x[:n], train_y[:n]
        val_x, val_y = train_x, train_y
    channels, native = splits.train_x.shape[1], splits.train_x.shape[-1]
    size = model_image_size or native
    mean, std = channel_stats(splits.train_x)

    total = sum(split_bytes(len(x), channels, size) for x in (train_x, val_x, splits.test_x))
    kind = loader
    if kind == "auto":
        kind = "tensor" if total <= memory_budget_mb * 2**20 else "dataloader"

    def make(x: torch.Tensor, y: torch.Tensor, bs: int, train: bool, limit: int | None):
        shuffle = train and not overfit_batches
        opts = dict(
            shuffle=shuffle,
            seed=seed,
            augment=augment if train else "none",
            limit_batches=limit,
            rank=rank if train else 0,
            world_size=world_size if train else 1,
        )
        if kind == "tensor":
            prepared = prepare_images(x.to(device), mean, std, size, channels_last)
            return TensorLoader(prepared, y.to(device), bs, **opts)
        index = TensorLoader(x, y, bs, **opts)
        return DataLoaderBatches(
            index,
            device=device,
            mean=mean,
            std=std,
            size=size,
            channels_last=channels_last,
            num_workers=num_workers,
        )

    return ImageData(
        train=make(train_x, train_y, batch_size, True, limit_train_batches),
        val=make(val_x, val_y, eval_batch_size, False, limit_val_batches),
        test=make(splits.test_x, splits.test_y, eval_batch_size, False, None),
        classes=list(splits.classes),
        channels=channels,
        image_size=size,
        mean=mean,
        std=std,
        loader_kind=kind,
        val_images=val_x,
        input_size=int(native),
    )


def build_gan_images(
    source: ImageSource,
    *,
    batch_size: int,
    seed: int,
    limit_train_batches: int | None,
    num_real: int,
    device: torch.device,
) -> tuple[TensorLoader, torch.Tensor]:
    """A GAN's training batches and up to `num_real` validation images for its evaluation,
    both in [-1, 1] (mean 0.5, std 0.5: the range of the generator's Tanh) on the device.

    `drop_last`: a last batch of a few images gives batch norm useless statistics. No
    augmentation: random crops with zero padding would teach the generator black borders.
    """
    splits = source.load()
    size, half = splits.image_size, [0.5] * splits.channels
    loader = TensorLoader(
        prepare_images(splits.train_x.to(device), half, half, size),
        splits.train_y.to(device),
        batch_size,
        shuffle=True,
        seed=seed,
        drop_last=len(splits.train_x) >= batch_size,
        limit_batches=limit_train_batches,
    )
    n = min(num_real, len(splits.val_x))
    return loader, prepare_images(splits.val_x[:n].to(device), half, half, size)
