"""GAN generators and discriminators: an MLP pair (Goodfellow et al. 2014) and DCGAN (Radford
et al. 2016).

A generator maps noise [N, latent_dim] to images [N, C, H, W] in [-1, 1] (Tanh); a discriminator
maps images to one raw score per image [N] (a logit for the BCE loss, a critic value for the
LSGAN and hinge losses). The data set decides `channels` and `image_size`, the model config
everything else, so the same classes serve MNIST-like data and CIFAR-10.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlexp.models.init import check_choice

GAN_INITS: tuple[str, ...] = ("dcgan", "default")


def _widths(name: str, values: Sequence[int]) -> list[int]:
    widths = [int(v) for v in values]
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"{name} must list one or more positive integers, got {list(values)!r}")
    return widths


def _check_shape(channels: int, image_size: int, latent_dim: int | None = None) -> None:
    for name, value in (
        ("channels", channels),
        ("image_size", image_size),
        ("latent_dim", latent_dim),
    ):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class MLPGenerator(nn.Module):
    """latent → 128 → 256 → 512 → 1024 → C·H·W, LeakyReLU(0.2) and batch norm, Tanh output.

    The first layer has no batch norm: it would only re-standardise the Gaussian noise it is
    fed, and dropping it there is what the well-known reference implementations do.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 1,
        image_size: int = 28,
        hidden_sizes: Sequence[int] = (128, 256, 512, 1024),
        negative_slope: float = 0.2,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        _check_shape(channels, image_size, latent_dim)
        widths = _widths("hidden_sizes", hidden_sizes)
        self.latent_dim, self.shape = latent_dim, (channels, image_size, image_size)
        layers: list[nn.Module] = []
        prev = latent_dim
        for i, width in enumerate(widths):
            norm = batch_norm and i > 0
            layers.append(nn.Linear(prev, width, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.LeakyReLU(negative_slope))
            prev = width
        layers += [nn.Linear(prev, channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """C·H·W → 512 → 256 → 1 with LeakyReLU(0.2); no batch norm, no sigmoid (losses take logits)."""

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 28,
        hidden_sizes: Sequence[int] = (512, 256),
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        _check_shape(channels, image_size)
        layers: list[nn.Module] = [nn.Flatten()]
        prev = channels * image_size * image_size
        for width in _widths("hidden_sizes", hidden_sizes):
            layers += [nn.Linear(prev, width), nn.LeakyReLU(negative_slope)]
            prev = width
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(-1)


def dcgan_plan(image_size: int) -> tuple[int, int]:
    """(side of the first feature map, number of 2x up/downsamplings) for `image_size`.

    Halve while the side stays even and above 4: 32 → 4 with 3 stride-2 layers, 28 → 7 with 2.
    """
    side, steps = image_size, 0
    while side % 2 == 0 and side > 4:
        side, steps = side // 2, steps + 1
    if steps < 2:
        raise ValueError(
            f"DCGAN needs an image_size that halves at least twice to an even side, e.g. 28, 32 "
            f"or 64; got {image_size}"
        )
    return side, steps


def dcgan_init(module: nn.Module, scheme: str) -> None:
    """DCGAN paper init: conv weights N(0, 0.02), batch-norm scales N(1, 0.02), biases 0."""
    check_choice("init", scheme, GAN_INITS)
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGenerator(nn.Module):
    """Transposed convs with batch norm and ReLU, Tanh output.

    Noise is projected to a `side`x`side` map (7 for 28 px, 4 for 32 px) of `features·2^(k-1)`
    channels, then each stride-2 layer doubles the side and halves the channels.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 1,
        image_size: int = 28,
        features: int = 64,
        init: str = "dcgan",
    ) -> None:
        super().__init__()
        _check_shape(channels, image_size, latent_dim)
        _check_shape(features, 1)
        side, steps = dcgan_plan(image_size)
        width = features * 2 ** (steps - 1)
        layers: list[nn.Module] = [
            nn.Unflatten(1, (latent_dim, 1, 1)),
            nn.ConvTranspose2d(latent_dim, width, side, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        for _ in range(steps - 1):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(),
            ]
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.latent_dim = latent_dim
        self.net = nn.Sequential(*layers)
        dcgan_init(self, init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class DCDiscriminator(nn.Module):
    """Strided convs with LeakyReLU (batch norm after the first), then one conv to a score.

    The first layer has no batch norm, as in the DCGAN paper: normalising the raw input
    batch makes real and fake batches look alike to the critic.
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 28,
        features: int = 64,
        negative_slope: float = 0.2,
        batch_norm: bool = True,
        init: str = "dcgan",
    ) -> None:
        super().__init__()
        _check_shape(channels, image_size)
        _check_shape(features, 1)
        side, steps = dcgan_plan(image_size)
        layers: list[nn.Module] = []
        prev, width = channels, features
        for i in range(steps):
            norm = batch_norm and i > 0
            layers.append(nn.Conv2d(prev, width, 4, 2, 1, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(negative_slope))
            prev, width = width, width * 2
        layers += [nn.Conv2d(prev, 1, side, 1, 0), nn.Flatten(0)]
        self.net = nn.Sequential(*layers)
        dcgan_init(self, init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# -- using a generator ------------------------------------------------------------------------
@torch.no_grad()
def generate(generator: nn.Module, noise: Tensor, batch_size: int = 1000) -> Tensor:
    """G(noise) in eval mode (batch norm uses its running statistics), in batches."""
    was_training = generator.training
    generator.eval()
    try:
        return torch.cat(
            [generator(noise[i : i + batch_size]).float() for i in range(0, len(noise), batch_size)]
        )
    finally:
        generator.train(was_training)


def image_grid(images: Tensor) -> Tensor:
    """A square-ish grid [3, H, W] in [0, 1] of images in [-1, 1]."""
    from torchvision.utils import make_grid

    nrow = math.ceil(math.sqrt(len(images)))
    return make_grid(images.detach().float().cpu().add(1).div(2).clamp(0, 1), nrow=nrow, padding=2)
