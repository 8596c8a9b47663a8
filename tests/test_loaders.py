"""The data path: both loaders give the same batches; order depends only on (seed, epoch)."""

from __future__ import annotations

import pytest
import torch

from dlexp.data.loaders import (
    DataLoaderBatches,
    TensorLoader,
    channel_stats,
    crop_flip,
    draw_crop_flip,
    prepare_images,
)


def _images(n: int = 50, channels: int = 1, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 10


def _collect(loader, epoch: int, start: int = 0):
    return [(xb.clone(), yb.clone()) for xb, yb in loader.batches(epoch, start)]


def test_prepare_pads_28_to_32_with_background_and_normalises():
    x, _ = _images(4)
    mean, std = channel_stats(x)
    out = prepare_images(x, mean, std, 32)
    assert out.shape == (4, 1, 32, 32) and out.dtype == torch.float32
    black = (0.0 - mean[0]) / std[0]
    assert torch.allclose(out[:, :, :2, :], torch.full_like(out[:, :, :2, :], black))
    inner = out[:, :, 2:30, 2:30]
    assert torch.allclose(inner, (x.float() / 255 - mean[0]) / std[0], atol=1e-6)


def test_shuffled_order_depends_only_on_seed_and_epoch():
    x, y = _images()
    a = TensorLoader(x.float(), y, 8, shuffle=True, seed=3)
    b = TensorLoader(x.float(), y, 8, shuffle=True, seed=3)
    assert torch.equal(a.order(0), b.order(0))
    assert not torch.equal(a.order(0), a.order(1))
    assert not torch.equal(a.order(0), TensorLoader(x, y, 8, shuffle=True, seed=4).order(0))
    assert sorted(a.order(2).tolist()) == list(range(len(x)))


def test_resuming_mid_epoch_gives_the_remaining_batches():
    x, y = _images()
    loader = TensorLoader(x.float(), y, 8, shuffle=True, seed=1, augment="none")
    full = _collect(loader, epoch=2)
    rest = _collect(loader, epoch=2, start=3)
    assert len(full) == 7 and len(rest) == 4
    for (xa, ya), (xb, yb) in zip(full[3:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_augmentation_stream_stays_aligned_after_skipping():
    x, y = _images(channels=3, size=32)
    loader = TensorLoader(x.float(), y, 8, shuffle=True, seed=1, augment="crop_flip")
    full = _collect(loader, epoch=0)
    rest = _collect(loader, epoch=0, start=2)
    assert torch.equal(full[2][0], rest[0][0])
    assert not torch.equal(full[0][0], x.float()[loader.order(0)[:8]]), "augmentation did nothing"


def test_crop_flip_moves_pixels_but_keeps_shape():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    shifts = torch.tensor([[4, 4], [4, 4]])  # pad 4, offset 4: no shift
    flips = torch.tensor([False, True])
    out = crop_flip(x, shifts, flips)
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], x[1].flip(-1))
    gen = torch.Generator().manual_seed(0)
    moved = crop_flip(x, *draw_crop_flip(2, gen, pad=1), pad=1)
    assert moved.shape == x.shape


@pytest.mark.parametrize("augment", ["none", "crop_flip"])
def test_dataloader_path_matches_tensor_path_batch_for_batch(augment: str):
    x, y = _images(40)
    mean, std = channel_stats(x)
    opts = dict(shuffle=True, seed=5, augment=augment)
    tensor = TensorLoader(prepare_images(x, mean, std, 32), y, 16, **opts)
    index = TensorLoader(x, y, 16, **opts)
    stream = DataLoaderBatches(
        index, device=torch.device("cpu"), mean=mean, std=std, size=32, channels_last=False
    )
    assert len(stream) == len(tensor) == 3
    for epoch, start in ((0, 0), (1, 1), (1, 2)):
        for (xa, ya), (xb, yb) in zip(
            _collect(tensor, epoch, start), _collect(stream, epoch, start), strict=True
        ):
            assert torch.equal(ya, yb)
            assert torch.allclose(xa, xb, atol=1e-6)
    # a start mid-epoch (a resumed run) gives exactly the uninterrupted run's remaining batches,
    # augmentation included: the skipped batches' random crops and flips are drawn all the same
    for loader in (tensor, stream):
        full = _collect(loader, 1)
        for start in (1, 2):
            rest = _collect(loader, 1, start)
            assert len(rest) == len(full) - start
            for (xa, ya), (xb, yb) in zip(full[start:], rest, strict=True):
                assert torch.equal(ya, yb) and torch.equal(xa, xb)
    if augment != "none":  # the augmentation did something: not the plain prepared images
        plain = prepare_images(x, mean, std, 32)[index.order(1)[:16]]
        assert not torch.allclose(_collect(stream, 1)[0][0], plain)


def test_ranks_take_disjoint_equal_shards_of_one_permutation():
    x, y = _images(50)
    shards = [
        TensorLoader(x.float(), y, 4, shuffle=True, seed=0, rank=r, world_size=2).order(3)
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 25
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_limit_batches_and_eval_order():
    x, y = _images(50)
    loader = TensorLoader(x.float(), y, 8, shuffle=False, limit_batches=2)
    batches = _collect(loader, 0)
    assert len(loader) == 2 and len(batches) == 2
    assert torch.equal(batches[1][1], y[8:16])
