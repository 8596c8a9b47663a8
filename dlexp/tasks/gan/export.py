"""What a GAN run exports: its generator, noise in, images out.

`export_module(payload)` is the family's export hook (named in `tasks/registry.py`). The check
runs on the run's own fixed noise (the rows behind its per-epoch grids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlexp.engine.builders import build_model
from dlexp.engine.export import Exportable, check_noise


def export_module(payload: Mapping[str, Any], source: Any) -> Exportable:
    model, data = payload["config"]["model"], payload["data"]
    latent, channels, size = model["latent_dim"], data["channels"], data["image_size"]
    inputs = {"latent_dim": latent, "channels": channels, "image_size": size}
    generator = build_model(model["generator"], {}, inputs, group="model.generator")
    generator.load_state_dict(payload["generator"])
    noise, checked_on = check_noise(payload, latent)
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
