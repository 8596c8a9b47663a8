"""Autoencoders and variational autoencoders (Kingma & Welling 2014), convolutional and MLP.

Every network here has the same three methods, so one loop trains them all:

- `encode(x) -> (mean, logvar)`: the code of images x [N, C, H, W] in [0, 1]. An autoencoder's
  code is deterministic and its `logvar` is None; a VAE's encoder is a Gaussian q(z|x) with a
  mean and a log-variance per latent dimension.
- `decode(z) -> logits` [N, C, H, W]: one logit per pixel. `sigmoid(logits)` is the
  reconstruction (the Bernoulli mean, or the Gaussian mean, see `tasks/vae/loop.py`).
- `forward(x) -> (logits, mean, logvar)`: in training a VAE decodes z = mean + σ·ε, ε ~ N(0, I)
  (the reparameterisation trick, so gradients reach the encoder through the sample); in eval
  mode it decodes the mean.

The data set decides `channels` and `image_size` (1x28x28, 3x32x32, ...); the config decides
`latent_dim`, `widths`, `batch_norm` and `activation`. `variational` is a class attribute: it
says whether the family adds the KL term and can sample from the prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlexp.models.init import make_activation


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _widths(values: Sequence[int]) -> list[int]:
    widths = [int(v) for v in values]
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"widths must list one or more positive integers, got {list(values)!r}")
    return widths


def conv_sides(image_size: int, stages: int) -> list[int]:
    """The side of the feature map after each stride-2 conv: 28 → [28, 14, 7]; 32 → [32, 16, 8]."""
    sides = [image_size]
    for _ in range(stages):
        sides.append(sides[-1] // 2)  # a 4x4 kernel, stride 2, padding 1 halves (rounding down)
    if sides[-1] < 1:
        raise ValueError(
            f"{stages} stride-2 stages shrink {image_size} px images to nothing; "
            f"list at most {image_size.bit_length() - 1} widths"
        )
    return sides


class _Autoencoder(nn.Module):
    """What every network here shares: an encoder to features, a linear head to the code
    (twice as wide for a VAE: mean and log-variance) and a decoder from the code."""

    variational = False
    latent_dim: int
    encoder: nn.Module
    head: nn.Linear
    decoder: nn.Module

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        code = self.head(self.encoder(x))
        if not self.variational:
            return code, None
        mean, logvar = code.chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        mean, logvar = self.encode(x)
        z = mean
        if logvar is not None and self.training:
            z = reparameterize(mean, logvar, torch.randn_like(mean))
        return self.decode(z), mean, logvar


def reparameterize(mean: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = μ + σ·ε: a sample of N(μ, σ²) that is differentiable in μ and log σ²."""
    return mean + (0.5 * logvar).exp() * eps


class ConvAutoencoder(_Autoencoder):
    """Stride-2 convs (4x4) down to a small map, a linear code, and transposed convs back up.

    `widths` are the channels of each encoder stage (each halves the side: 28 → 14 → 7 for
    [32, 64]); the decoder mirrors them. Batch norm follows every hidden conv.
    """

    def __init__(
        self,
        latent_dim: int = 16,
        channels: int = 1,
        image_size: int = 28,
        widths: Sequence[int] = (32, 64),
        batch_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.latent_dim = _positive("latent_dim", latent_dim)
        _positive("channels", channels)
        widths = _widths(widths)
        sides = conv_sides(_positive("image_size", image_size), len(widths))
        make_activation(activation)  # checks the name before any layer is built
        flat = widths[-1] * sides[-1] ** 2
        down: list[nn.Module] = []
        prev = channels
        for width in widths:
            down.append(nn.Conv2d(prev, width, 4, 2, 1, bias=not batch_norm))
            down += _norm_act(width, batch_norm, activation, conv=True)
            prev = width
        self.encoder = nn.Sequential(*down, nn.Flatten())
        self.head = nn.Linear(flat, latent_dim * (2 if self.variational else 1))
        up: list[nn.Module] = [
            nn.Linear(latent_dim, flat),
            make_activation(activation),
            nn.Unflatten(1, (widths[-1], sides[-1], sides[-1])),
        ]
        outs = [*widths[-2::-1], channels]  # the channels after each transposed conv
        for k, out in enumerate(outs):
            stage = len(widths) - 1 - k  # from the coarsest map back to the image
            extra = sides[stage] - 2 * sides[stage + 1]  # 7 → 14 needs none, 3 → 7 one row
            last = k == len(outs) - 1
            conv = nn.ConvTranspose2d(
                prev, out, 4, 2, 1, output_padding=extra, bias=last or not batch_norm
            )
            up.append(conv)
            if not last:
                up += _norm_act(out, batch_norm, activation, conv=True)
            prev = out
        self.decoder = nn.Sequential(*up)


class ConvVAE(ConvAutoencoder):
    """The convolutional autoencoder with a Gaussian encoder: a VAE."""

    variational = True


class MLPAutoencoder(_Autoencoder):
    """Fully connected: C·H·W → widths → code, and the mirror image back to C·H·W logits."""

    def __init__(
        self,
        latent_dim: int = 16,
        channels: int = 1,
        image_size: int = 28,
        widths: Sequence[int] = (512, 256),
        batch_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.latent_dim = _positive("latent_dim", latent_dim)
        shape = (_positive("channels", channels), _positive("image_size", image_size), image_size)
        widths = _widths(widths)
        make_activation(activation)
        pixels = channels * image_size * image_size
        down: list[nn.Module] = [nn.Flatten()]
        prev = pixels
        for width in widths:
            down.append(nn.Linear(prev, width, bias=not batch_norm))
            down += _norm_act(width, batch_norm, activation, conv=False)
            prev = width
        self.encoder = nn.Sequential(*down)
        self.head = nn.Linear(prev, latent_dim * (2 if self.variational else 1))
        up: list[nn.Module] = []
        prev = latent_dim
        for width in reversed(widths):
            up.append(nn.Linear(prev, width, bias=not batch_norm))
            up += _norm_act(width, batch_norm, activation, conv=False)
            prev = width
        up += [nn.Linear(prev, pixels), nn.Unflatten(1, shape)]
        self.decoder = nn.Sequential(*up)


class MLPVAE(MLPAutoencoder):
    """The MLP autoencoder with a Gaussian encoder: a VAE."""

    variational = True


def _norm_act(width: int, batch_norm: bool, activation: str, conv: bool) -> list[nn.Module]:
    norm: list[nn.Module] = []
    if batch_norm:
        norm.append(nn.BatchNorm2d(width) if conv else nn.BatchNorm1d(width))
    return [*norm, make_activation(activation)]


# -- using a trained network --------------------------------------------------------------------
@torch.no_grad()
def decode_images(net: nn.Module, z: Tensor, batch_size: int = 1000) -> Tensor:
    """Images in [0, 1] decoded from codes z, in eval mode (batch norm's running statistics)."""
    was_training = net.training
    net.eval()
    try:
        step = range(0, len(z), batch_size)
        return torch.cat([net.decode(z[i : i + batch_size]).float().sigmoid() for i in step])
    finally:
        net.train(was_training)


@torch.no_grad()
def encode_means(net: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """The codes (a VAE's posterior means) of images x in [0, 1], in eval mode, as float32."""
    was_training = net.training
    net.eval()
    try:
        return torch.cat(
            [net.encode(x[i : i + batch_size])[0].float() for i in range(0, len(x), batch_size)]
        )
    finally:
        net.train(was_training)
