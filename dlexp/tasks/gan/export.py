"""What a GAN run exports: its generator, noise in, images out.

`export_module(payload)` is the family's export hook (named in `tasks/registry.py`). The check
runs on the run's own fixed noise (the rows behind its per-epoch grids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dlexp.engine.builders import build_model
from dlexp.engine.export import BATCH_SIZES, Exportable


def export_module(payload: Mapping[str, Any], source: Any) -> Exportable:
    model, data = payload["config"]["model"], payload["data"]
    latent, channels, size = model["latent_dim"], data["channels"], data["image_size"]
    inputs = {"latent_dim": latent, "channels": channels, "image_size": size}
    generator = build_model(model["generator"], {}, inputs, group="model.generator")
    generator.load_state_dict(payload["generator"])
    count = max(BATCH_SIZES)
    noise = payload.get("fixed_noise")
    if noise is None or len(noise) < count:
        noise = torch.randn(count, latent, generator=torch.Generator().manual_seed(0))
        checked_on = f"{count} noise vectors (seed 0)"
    else:
        noise = noise[:count].float().cpu()
        checked_on = f"{count} rows of the run's fixed noise"
    meta = {
        "task": "gan",
        "input": f"noise: float32 [batch, {latent}], each value drawn from a standard normal",
        "output": f"images: float32 [batch, {channels}, {size}, {size}] in [-1, 1]; "
        "pixels = round((x + 1) * 127.5) as uint8",
    }
    return Exportable(
        generator.eval(),
        lambda n: (noise[:n],),
        ("noise",),
        ("images",),
        ({0: "batch"},),
        meta,
        checked_on,
    )
