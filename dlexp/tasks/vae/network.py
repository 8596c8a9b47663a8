"""The autoencoder family's builders: the network and the loop's options from a config, and
`draw`, which decodes `dlexp sample`'s images from a checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dlexp.engine.builders import build_model
from dlexp.engine.setup import autocast_for
from dlexp.errors import DlexpError
from dlexp.models.vae import decode_images
from dlexp.tasks.vae.loop import VaeOptions
from dlexp.tasks.vae.schema import FAMILY_KEYS


def build_network(model: Mapping[str, Any], channels: int, image_size: int) -> torch.nn.Module:
    """The network from the model config's own keys (the family's keys stay out)."""
    net_cfg = {k: v for k, v in model.items() if k not in FAMILY_KEYS}
    example = torch.zeros(2, channels, image_size, image_size)
    shape = {"channels": channels, "image_size": image_size}
    net = build_model(net_cfg, {}, shape, example)
    for method in ("encode", "decode"):
        if not callable(getattr(net, method, None)):
            raise DlexpError(
                f"model._target_: {model['_target_']} has no {method}() method; an autoencoder "
                "needs encode(x) -> (mean, logvar or None) and decode(z) -> logits"
            )
    return net


def vae_options(
    trainer: Mapping[str, Any],
    model: Mapping[str, Any],
    variational: bool,
    steps_per_epoch: int,
    device: torch.device,
) -> VaeOptions:
    """The loop's settings from the trainer and model groups."""
    precision = str(trainer["precision"])
    warmup = model.get("kl_warmup_epochs", 0) if variational else 0
    return VaeOptions(
        variational=variational,
        likelihood=model["likelihood"],
        gaussian_std=model["gaussian_std"],
        beta=model.get("beta", 1.0) if variational else 0.0,
        kl_warmup_steps=round(warmup * steps_per_epoch),
        denoise=model["denoise"]["kind"],
        denoise_level=model["denoise"]["level"],
        log_every=trainer["log_every_n_steps"],
        device=device,
        autocast=lambda: autocast_for(precision, device),
        grad_clip=float(trainer["grad_clip"] or 0) or None,
    )


def draw(payload: Mapping[str, Any], n: int, seed: int) -> torch.Tensor:
    """`dlexp sample`: `n` images in [-1, 1] decoded from N(0, I) noise seeded with `seed`,
    by the network of a checkpoint (on the CPU). The caller checked the config's trust."""
    model, data = payload["config"]["model"], payload["data"]
    net = build_network(model, data["channels"], data["image_size"])
    if not getattr(net, "variational", False):
        raise DlexpError(
            f"this run trains an autoencoder ({model['_target_']}): it has no prior to sample "
            "from; train a VAE (dlexp model=vae) to draw samples"
        )
    net.load_state_dict(payload["model"])
    noise = torch.randn(n, net.latent_dim, generator=torch.Generator().manual_seed(seed))
    return decode_images(net, noise) * 2 - 1
