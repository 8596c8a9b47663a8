"""An autoencoder's pictures: reconstructions beside their inputs, an interpolation between two
encoded images, and the latent space as a scatter of codes coloured by class.

Grids are tensors [3, H, W] in [0, 1] (the runner writes them as PNG and to TensorBoard); the
scatter is a matplotlib Figure. Images come in [0, 1], as the family trains on them.
`epoch_pictures` and `latent_pictures` draw a run's pictures and hand them to its Outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dlexp.engine.task import Outputs
from dlexp.models.vae import decode_images, encode_means
from dlexp.tasks.vae.images import Images
from dlexp.tasks.vae.loop import corrupt
from dlexp.tracking.figures import short_label

SHOWN = 16  # validation images in the reconstruction grid
PER_ROW = 8  # images per row of the reconstruction grid
STEPS = 10  # images per interpolation row, both ends included
PAIRS = 4  # interpolation rows


def fixed_batch(val_x: Tensor, denoise: str, level: float, seed: int) -> list[Tensor]:
    """The validation images the reconstruction grid shows every epoch and, when the model
    denoises, their corrupted copies: the same corruption every epoch (from `seed`)."""
    shown = val_x[:SHOWN]
    if denoise == "none":
        return [shown]
    gen = torch.Generator().manual_seed(seed)
    return [shown, corrupt(shown, denoise, level, gen)]


def epoch_pictures(
    out: Outputs,
    net: nn.Module,
    shown: Sequence[Tensor],
    fixed_noise: Tensor | None,
    epoch: int,
    step: int,
    batch: int,
) -> None:
    """The fixed validation batch (`shown`: the inputs, and their corrupted copies when the
    model denoises) beside its reconstructions; a VAE's samples from `fixed_noise`."""
    if not out.active:
        return
    rows = [*shown, decode_images(net, encode_means(net, shown[-1], batch))]
    what = "input, corrupted, reconstruction" if len(rows) == 3 else "input, reconstruction"
    name = f"reconstructions_epoch_{epoch:03d}.png"
    out.image(
        "reconstructions/val", reconstruction_grid(rows), step, name, f"{what}, epoch {epoch}"
    )
    if fixed_noise is not None:
        samples = grid(decode_images(net, fixed_noise), PER_ROW)
        name = f"samples_epoch_{epoch:03d}.png"
        out.image("samples/fixed_noise", samples, step, name, f"samples, epoch {epoch}")


def latent_pictures(
    out: Outputs, net: nn.Module, data: Images, variational: bool, step: int, batch: int
) -> None:
    """The interpolation between encoded validation images and the latent scatter."""
    if not out.active:
        return
    x, y = data.split("val")
    interpolation = interpolation_grid(net, x, interpolation_pairs(y))
    out.image("val/interpolation", interpolation, step, "interpolation.png", "interpolation")
    codes = encode_means(net, x, batch)
    fig = latent_figure(codes, y, data.classes, variational)
    out.figure("val/latent_space", fig, step, "latent_space.png")


def grid(images: Tensor, per_row: int) -> Tensor:
    from torchvision.utils import make_grid  # torchvision: only when a picture is drawn

    return make_grid(images.detach().float().cpu().clamp(0, 1), nrow=per_row, padding=2)


def reconstruction_grid(rows: Sequence[Tensor]) -> Tensor:
    """Rows of `PER_ROW` images interleaved: originals, (corrupted inputs,) reconstructions,
    then the next `PER_ROW` originals, ... so each reconstruction sits under its input."""
    n = len(rows[0])
    blocks = [r[lo : lo + PER_ROW] for lo in range(0, n, PER_ROW) for r in rows]
    return grid(torch.cat(blocks), PER_ROW)


def interpolation_pairs(labels: Tensor) -> list[tuple[int, int]]:
    """Up to `PAIRS` pairs of image indices of different classes: the first image of each class
    in order of appearance, taken two by two (0 with 1, 2 with 3, ...)."""
    firsts: dict[int, int] = {}
    for i, label in enumerate(labels.tolist()):
        firsts.setdefault(int(label), i)
    order = list(firsts.values())
    pairs = [(order[k], order[k + 1]) for k in range(0, len(order) - 1, 2)][:PAIRS]
    return pairs or [(0, min(1, len(labels) - 1))]


def interpolation_grid(net: nn.Module, x: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
    """One row per pair: the decoded straight line between the two images' codes."""
    codes = encode_means(net, x)
    t = torch.linspace(0, 1, STEPS, device=codes.device).view(-1, 1)
    lines = [(1 - t) * codes[a] + t * codes[b] for a, b in pairs]
    return grid(decode_images(net, torch.cat(lines)), STEPS)


def latent_figure(codes: Tensor, labels: Tensor, classes: Sequence[str], variational: bool) -> Any:
    """A scatter of the codes coloured by class: the plane itself for 2-d codes, else their
    first two principal components (with the share of variance they show)."""
    from matplotlib.figure import Figure  # matplotlib: only when the figure is drawn

    z = codes.detach().double().cpu()
    what = "posterior means" if variational else "codes"
    if z.shape[1] == 2:
        points, axes, title = z, ("z₁", "z₂"), f"latent space: validation {what}"
    elif z.shape[1] == 1:
        points = torch.cat([z, torch.zeros_like(z)], 1)
        axes, title = ("z₁", ""), f"latent space: validation {what}"
    else:
        centred = z - z.mean(0)
        _, s, v = torch.linalg.svd(centred, full_matrices=False)
        points = centred @ v[:2].T
        share = float(s[:2].square().sum() / s.square().sum().clamp_min(1e-12))
        axes = ("PC 1", "PC 2")
        title = f"latent space: validation {what}, PCA of {z.shape[1]} dims ({share:.0%} variance)"
    fig = Figure(figsize=(5.5, 5), layout="tight")
    ax = fig.subplots()
    points, y = points.numpy(), labels.cpu().numpy()
    cmap = "tab10" if len(classes) <= 10 else "tab20"
    scatter = ax.scatter(points[:, 0], points[:, 1], c=y, cmap=cmap, s=6, alpha=0.8)
    scatter.set_clim(-0.5, len(classes) - 0.5)
    bar = fig.colorbar(scatter, ax=ax, ticks=range(len(classes)))
    bar.ax.set_yticklabels([short_label(c) for c in classes], fontsize=7)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=9)
    return fig
