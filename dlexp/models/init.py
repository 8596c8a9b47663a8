"""Activations and weight-initialisation schemes shared by every model.

Both are chosen by name from a config file, so each lookup checks the name and says
which names are valid instead of failing somewhere deep inside PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dlexp.config.names import ACTIVATIONS, INITS

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def check_choice(option: str, value: object, choices: Sequence[str]) -> None:
    """Raise a ValueError naming every valid choice unless `value` is one of `choices`.

    Models call this at the top of their constructor so a typo in a config is reported
    before any layer is built.
    """
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def make_activation(name: str) -> nn.Module:
    """Build a fresh activation module; a new one per layer keeps `print(model)` honest."""
    check_choice("activation", name, ACTIVATIONS)
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope=0.01)
    return nn.GELU()


def init_weights(module: nn.Module, scheme: str) -> None:
    """Re-initialise every conv, linear and batch-norm layer inside `module` in place.

    `default` keeps PyTorch's own init (kaiming_uniform with a=sqrt(5), which is deliberately
    conservative). The other schemes are the usual alternatives, so a run can compare them
    by changing one config value.
    """
    check_choice("init", scheme, INITS)
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, (*_CONVS, nn.Linear)):
            _init_weight(m, scheme)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BATCH_NORMS) and m.affine:
            # Start every batch-norm layer as the identity map, so depth adds no initial scale.
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _init_weight(m: nn.Module, scheme: str) -> None:
    if scheme == "xavier":
        nn.init.xavier_uniform_(m.weight)
    elif scheme == "normal":
        # The GPT-2 / DCGAN choice: small and independent of layer width.
        nn.init.normal_(m.weight, mean=0.0, std=0.02)
    elif isinstance(m, _CONVS):
        # He et al. (2015): fan_out keeps the variance of the *gradients* constant through a
        # stack of ReLU convs, which is what matters most for training deep VGG/ResNet
        # stacks; it is also torchvision's choice for VGG and ResNet.
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    else:
        # For linear layers fan_in keeps the *activations'* variance constant; with the
        # wide-then-narrow shapes of classifier heads fan_out would give the last layer
        # (few outputs) very large weights and overconfident initial logits.
        nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
