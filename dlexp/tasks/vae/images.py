"""The images an autoencoder learns from: pixels in [0, 1] (what a Bernoulli likelihood needs),
all three splits on the device, with their labels for the latent scatter and the linear probe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dlexp.data.loaders import TensorLoader, prepare_images
from dlexp.engine.databuild import image_splits


@dataclass
class Images:
    train: TensorLoader  # shuffled training batches (x in [0, 1], labels)
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]

    @property
    def channels(self) -> int:
        return int(self.val_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.val_x.shape[-1])

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """Images and labels of `train` (in order, unshuffled), `val` or `test`."""
        if name == "train":
            return self.train.x, self.train.y
        return (self.val_x, self.val_y) if name == "val" else (self.test_x, self.test_y)

    def describe(self) -> str:
        side = f"{self.channels}x{self.image_size}x{self.image_size}"
        return (
            f"{self.train.num_samples:,} train / {len(self.val_x):,} val / {len(self.test_x):,} "
            f"test images, {side}, pixels in [0, 1]"
        )


def build_images(
    data_cfg: Mapping[str, Any],
    *,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    limit_train_batches: int | None,
    limit_val_batches: int | None,
    device: torch.device,
) -> Images:
    """Every split at native size in [0, 1] (mean 0, std 1: no normalisation) on the device.

    `drop_last` as for the GANs: a last batch of a few images gives batch norm useless
    statistics. `limit_val_batches` keeps the first batches of validation images."""
    splits = image_splits(data_cfg)
    zero, one, size = [0.0] * splits.channels, [1.0] * splits.channels, splits.image_size

    def prepare(x: Tensor) -> Tensor:
        return prepare_images(x.to(device), zero, one, size)

    val_n = len(splits.val_x)
    if limit_val_batches:
        val_n = min(val_n, limit_val_batches * eval_batch_size)
    train = TensorLoader(
        prepare(splits.train_x),
        splits.train_y.to(device),
        batch_size,
        shuffle=True,
        seed=seed,
        drop_last=len(splits.train_x) >= batch_size,
        augment=data_cfg["augment"],
        limit_batches=limit_train_batches,
    )
    return Images(
        train=train,
        val_x=prepare(splits.val_x[:val_n]),
        val_y=splits.val_y[:val_n].to(device),
        test_x=prepare(splits.test_x),
        test_y=splits.test_y.to(device),
        classes=list(splits.classes),
    )
