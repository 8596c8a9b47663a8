"""Fit a library's ImageNet network to a data set: its head, its input channels, its stem.

Plain functions on any `nn.Module`; `dlexp.models.hub` applies them to torchvision and timm
classifiers. Each finds the layer it changes by its shape, not by an architecture's attribute
names, so the same code serves ResNets, ConvNeXts, ViTs, SqueezeNet, ...
"""

from __future__ import annotations

import math

import torch
from torch import nn


def replace_head(model: nn.Module, num_classes: int, old_classes: int) -> None:
    """The last Linear (or 1x1 conv, SqueezeNet) with `old_classes` outputs becomes a fresh
    one with `num_classes`: a pretrained network's ImageNet head does not fit other classes."""
    for name, module in reversed(list(model.named_modules())):
        if isinstance(module, nn.Linear) and module.out_features == old_classes:
            new: nn.Module = nn.Linear(module.in_features, num_classes, module.bias is not None)
        elif isinstance(module, nn.Conv2d) and module.out_channels == old_classes:
            new = nn.Conv2d(
                module.in_channels, num_classes, module.kernel_size, module.stride,
                module.padding, bias=module.bias is not None,
            )  # fmt: skip
        else:
            continue
        model.set_submodule(name, new)
        return
    raise ValueError(
        f"{type(model).__name__} has no layer with {old_classes} outputs to replace by a "
        f"{num_classes}-class head"
    )


def adapt_input_conv(model: nn.Module, in_channels: int, pretrained: bool) -> None:
    """Rebuild the first convolution for `in_channels` (the data's) instead of RGB.

    Pretrained kernels are summed over RGB: a 1-channel image then gives exactly what the
    network gives that image repeated into three channels (timm's `in_chans` does the same).
    Random kernels are sliced instead, which keeps the library's initial scale.
    """
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        raise ValueError(
            f"{type(model).__name__} has no convolution to take {in_channels} channels"
        )
    name, conv = found
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise ValueError(
            f"the first convolution of {type(model).__name__} is grouped ({conv.groups} groups) "
            f"and cannot take {in_channels} channels"
        )
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )  # fmt: skip
    weight = conv.weight.detach()
    with torch.no_grad():
        if pretrained and in_channels == 1:
            new.weight.copy_(weight.sum(dim=1, keepdim=True))
        else:
            repeats = math.ceil(in_channels / conv.in_channels)
            tiled = weight.repeat(1, repeats, 1, 1)[:, :in_channels]
            # pretrained: spread the same total response over the new channels
            scale = conv.in_channels / in_channels if pretrained else 1.0
            new.weight.copy_(tiled * scale)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())
    model.set_submodule(name, new)


def small_input_stem(model: nn.Module, arch: str) -> None:
    """The CIFAR variant of a ResNet stem: a 3x3 stride-1 conv and no max pool, instead of a
    7x7 stride-2 conv and a pool that leave a 32 px image 8 px wide after the stem."""
    conv, pool = getattr(model, "conv1", None), getattr(model, "maxpool", None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(pool, nn.Module):
        raise ValueError(
            f"small_input: {arch} has no ResNet-style stem (conv1 and maxpool) to shrink; it "
            "applies to resnet*, resnext* and wide_resnet*. For other networks resize the "
            "images instead (model.image_size=224)"
        )
    new = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    model.conv1, model.maxpool = new, nn.Identity()


def drop_aux_heads(model: nn.Module) -> None:
    """GoogLeNet and Inception v3 return (logits, aux logits) while training; keep the logits,
    as torchvision itself does for pretrained networks built with aux_logits=False."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for name in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, name):
                setattr(model, name, None)
    if getattr(model, "transform_input", False):
        # it re-normalizes RGB for ImageNet; dlexp normalizes with the data set's statistics
        model.transform_input = False


def check_forward(
    model: nn.Module, arch: str, in_channels: int, image_size: int, num_classes: int
) -> None:
    """One tiny forward pass now: an image size the network cannot take is named at build
    time, not as a shape error in the first training step."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, in_channels, image_size, image_size))
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{arch} cannot read {image_size} px images ({reason}). Resize them with "
            "model.image_size=224 (the size ImageNet networks are made for)"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{arch} gives {shape} for one image, not logits of shape (1, {num_classes})"
        )
