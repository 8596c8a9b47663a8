"""Batches for the training loop: a device-resident tensor path and a DataLoader path.

Both give identical batches for the same (seed, epoch): the order of an epoch is a permutation
drawn from a generator seeded by (seed, epoch) alone, so a run resumed mid-epoch can skip the
batches it already saw and continue with the very same data, and under DDP each rank takes its
own slice of the same permutation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """An RNG that depends only on (seed, epoch): the key to resuming with the same data order."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def channel_stats(x: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (from the training split)."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).float().div_(255)
    return flat.mean(1).tolist(), flat.std(1).clamp_min(1e-6).tolist()


def prepare_images(
    x: Tensor, mean: list[float], std: list[float], size: int, channels_last: bool = False
) -> Tensor:
    """uint8 NCHW → normalised float32 at `size`: zero-padded when larger, resized when smaller.

    Padding (not stretching) is how LeNet-5 met 28x28 digits in the original paper.
    """
    out = x.float().div_(255)
    m = torch.tensor(mean, device=out.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=out.device).view(1, -1, 1, 1)
    out = out.sub_(m).div_(s)
    h = out.shape[-1]
    if size > h:
        left = (size - h) // 2
        # pad with the normalised value of a black pixel so the border looks like background
        out = F.pad(out, (left, size - h - left, left, size - h - left), value=0.0)
        border = (0.0 - m) / s
        mask = torch.ones(1, 1, size, size, dtype=torch.bool, device=out.device)
        mask[..., left : left + h, left : left + h] = False
        out = torch.where(mask, border.expand_as(out), out)
    elif size < h:
        out = F.interpolate(
            out, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def draw_crop_flip(n: int, gen: torch.Generator, pad: int = 4) -> tuple[Tensor, Tensor]:
    """Random crop offsets and flip flags for `n` images (drawn on the CPU, so streams match)."""
    return torch.randint(0, 2 * pad + 1, (n, 2), generator=gen), torch.rand(n, generator=gen) < 0.5


def draw_for_rank(
    n: int, gen: torch.Generator, rank: int, world_size: int
) -> tuple[Tensor, Tensor]:
    """This rank's share of the draws for the whole global batch: with N processes each sample
    gets the very crop and flip it would get in one process (shards interleave, see `order`)."""
    shifts, flips = draw_crop_flip(n * world_size, gen)
    return shifts[rank::world_size], flips[rank::world_size]


def crop_flip(x: Tensor, shifts: Tensor, flips: Tensor, pad: int = 4) -> Tensor:
    """Random crop with zero padding and horizontal flip, the whole batch on its own device."""
    n, c, h, w = x.shape
    shifts, flips = shifts.to(x.device), flips.to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (torch.arange(h, device=x.device).view(1, h) + shifts[:, :1]).view(n, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, w) + shifts[:, 1:]
    cols = torch.where(flips.view(n, 1), cols.flip(1), cols).view(n, 1, 1, w)
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    idx_c = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[idx_n, idx_c, rows, cols]


class TensorLoader:
    """Batches sliced from tensors that already live on the training device: no workers, no copies.

    `x` is the prepared float split, `y` its labels, both on the device. Shuffled loaders take a
    fresh (seed, epoch) permutation each epoch; evaluation loaders take contiguous slices.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        augment: str = "none",
        limit_batches: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.augment = augment
        self.limit_batches = limit_batches
        self.rank, self.world_size = rank, world_size

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before batch limits)."""
        return len(self.x) // self.world_size if self.world_size > 1 else len(self.x)

    def __len__(self) -> int:
        n = self.num_samples
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return min(batches, self.limit_batches) if self.limit_batches else batches

    def order(self, epoch: int) -> Tensor | None:
        """This rank's sample indices for `epoch` (None: the natural order)."""
        if not self.shuffle and self.world_size == 1:
            return None
        n = len(self.x)
        perm = (
            torch.randperm(n, generator=epoch_generator(self.seed, epoch))
            if self.shuffle
            else torch.arange(n)
        )
        if self.world_size > 1:  # equal shards, as DistributedSampler(drop_last=True)
            per = n // self.world_size
            perm = perm[: per * self.world_size][self.rank :: self.world_size]
        return perm

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of `epoch`, from batch index `start` on (for resuming mid-epoch)."""
        order = self.order(epoch)
        if order is not None:
            order = order.to(self.x.device)
        aug_gen = epoch_generator(self.seed + 1_000_003, epoch) if self.augment != "none" else None
        for i in range(len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, self.num_samples)
            aug = None
            if aug_gen is not None:
                aug = draw_for_rank(hi - lo, aug_gen, self.rank, self.world_size)
            if i < start:  # skipped batches still draw, so the augmentation stream stays aligned
                continue
            if order is None:
                xb, yb = self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if aug is not None:
                xb = crop_flip(xb, *aug)
            yield xb, yb


class _EpochBatchSampler:
    """Index batches of one epoch for a DataLoader, in the same order as the tensor path."""

    def __init__(self, index: TensorLoader) -> None:
        self.index, self.epoch, self.start = index, 0, 0

    def __len__(self) -> int:
        return len(self.index) - self.start

    def __iter__(self) -> Iterator[list[int]]:
        order = self.index.order(self.epoch)
        bs, n = self.index.batch_size, self.index.num_samples
        for i in range(self.start, len(self.index)):
            lo, hi = i * bs, min((i + 1) * bs, n)
            yield (order[lo:hi] if order is not None else torch.arange(lo, hi)).tolist()


class DataLoaderBatches:
    """The DataLoader path: uint8 samples stay on the host and are prepared per batch.

    For data that does not fit the memory budget; workers, pinned memory and non-blocking
    copies hide the host-to-device traffic. Batches equal the tensor path's for the same epoch.
    """

    def __init__(
        self,
        index: TensorLoader,
        *,
        device: torch.device,
        mean: list[float],
        std: list[float],
        size: int,
        channels_last: bool,
        num_workers: int = 0,
    ) -> None:
        from torch.utils.data import DataLoader, TensorDataset

        self.index, self.device = index, device
        self.mean, self.std, self.size, self.channels_last = mean, std, size, channels_last
        self.sampler = _EpochBatchSampler(index)
        self.loader = DataLoader(
            TensorDataset(index.x, index.y),
            batch_sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            # its own generator: each new iterator draws a base seed, which must not come from
            # the global RNG (dropout's), or a resumed run would draw different masks
            generator=torch.Generator().manual_seed(index.seed),
        )

    @property
    def num_samples(self) -> int:
        return self.index.num_samples

    @property
    def batch_size(self) -> int:
        return self.index.batch_size

    def __len__(self) -> int:
        return len(self.index)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        self.sampler.epoch, self.sampler.start = epoch, start
        index = self.index
        aug_gen = (
            epoch_generator(index.seed + 1_000_003, epoch) if index.augment != "none" else None
        )
        bs, n, rank, ranks = index.batch_size, index.num_samples, index.rank, index.world_size
        if aug_gen is not None:
            for i in range(start):
                draw_for_rank(min((i + 1) * bs, n) - i * bs, aug_gen, rank, ranks)
        for xb, yb in self.loader:
            xb = xb.to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            xb = prepare_images(xb, self.mean, self.std, self.size, self.channels_last)
            if aug_gen is not None:
                xb = crop_flip(xb, *draw_for_rank(len(xb), aug_gen, rank, ranks))
            yield xb, yb
