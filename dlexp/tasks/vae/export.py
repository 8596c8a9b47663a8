"""What a VAE run exports: its decoder, latent codes in, images out.

`export_module(payload)` is the family's export hook (named in `tasks/registry.py`). The check
runs on the run's own fixed noise (the rows behind its per-epoch sample grids). An
autoencoder's decoder is exported the same way: its inputs are codes from its encoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dlexp.engine.export import Exportable, check_noise
from dlexp.tasks.vae.network import build_network


class Decoder(nn.Module):
    """codes [batch, latent] → images [batch, C, H, W] in [0, 1], as `dlexp sample` draws."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode(z).float().sigmoid()  # as models.vae.decode_images, unbatched


def export_module(payload: Mapping[str, Any], source: Any) -> Exportable:
    model, data = payload["config"]["model"], payload["data"]
    net = build_network(model, data["channels"], data["image_size"])
    net.load_state_dict(payload["model"])
    latent, channels, size = net.latent_dim, data["channels"], data["image_size"]
    noise, checked_on = check_noise(payload, latent)
    variational = bool(getattr(net, "variational", False))
    meta = {
        "task": "vae",
        "input": f"codes: float32 [batch, {latent}]"
        + (", drawn from a standard normal for samples" if variational else ", from the encoder"),
        "output": f"images: float32 [batch, {channels}, {size}, {size}] in [0, 1]; "
        "pixels = round(x * 255) as uint8",
    }
    return Exportable(
        Decoder(net).eval(),
        lambda n: (noise[:n],),
        ("codes",),
        ("images",),
        ({0: "batch"},),
        meta,
        checked_on,
    )
