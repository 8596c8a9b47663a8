"""Builders: where config dicts become Python objects (the data's builder: `databuild.py`).

Models, data, the loop, loggers and checkpoints never see a config; they get the objects built
here.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import get_class, get_method
from torch import nn

from dlexp.errors import DlexpError

# keys of a model/optim config that are for dlexp, not for the constructor
_BUILDER_KEYS = {"_target_", "task"}


def _import_target(group: str, target: str, functions: bool = False) -> Any:
    """The class `target` names; with `functions`, also a function (a model builder such as
    torchvision.models.resnet18)."""
    try:
        return get_method(target) if functions else get_class(target)
    except Exception as exc:  # ImportError, AttributeError, ValueError from Hydra
        if functions:
            what, example = "a class or a function", "dlexp.models.cnn.LeNet5"
        else:
            what, example = "a class", "torch.optim.AdamW"
        raise DlexpError(
            f"{group}._target_: cannot import '{target}' ({exc.__class__.__name__}: {exc}). "
            f"Give the full import path of {what}, e.g. {example}, "
            "and make sure its module is importable (installed or on PYTHONPATH)."
        ) from None


def _call_with_known_kwargs(group: str, cls: Any, kwargs: dict[str, Any], injected: set[str]):
    """Call `cls(**kwargs)`; keys the builder injected are dropped if `cls` does not take them.

    A callable with **kwargs (torchvision.models.resnet18) passes them on to a class that may
    not take them all: its TypeError names an injected key, which is then left out."""
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any and k not in injected]
    if unknown:
        valid = ", ".join(n for n in params if n != "self")
        raise DlexpError(
            f"{group}: {cls.__name__} does not take {', '.join(unknown)}. Valid keys: {valid}"
        )
    kwargs = {k: v for k, v in kwargs.items() if k in params or takes_any}
    while True:
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as exc:
            passed_on = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
            if takes_any and passed_on and passed_on[1] in injected and passed_on[1] in kwargs:
                kwargs.pop(passed_on[1])
                continue
            raise DlexpError(f"{group}: {cls.__name__} rejected its settings: {exc}") from None


def build_model(
    model_cfg: Mapping[str, Any],
    regularization: Mapping[str, Any],
    inputs: Mapping[str, Any],
    example: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    group: str = "model",
) -> nn.Module:
    """Call `model._target_` (a class, or a function that returns an `nn.Module`) with what the
    data decides and the regularization switches.

    `inputs` are keyword arguments the data set determines (in_channels, image_size,
    num_classes, vocab_size, ...); the target gets those its signature takes. `example` is one
    small input batch, used to give lazy layers their shapes.
    """
    cls = _import_target(group, model_cfg["_target_"], functions=True)
    kwargs = {k: v for k, v in model_cfg.items() if k not in _BUILDER_KEYS}
    injected = set(inputs)
    for key, value in inputs.items():
        if kwargs.get(key) is None:
            kwargs[key] = value
    switches = {k: regularization[k] for k in ("dropout", "batch_norm") if k in regularization}
    switches = {k: v for k, v in switches.items() if v is not None}
    takes = inspect.signature(cls).parameters
    missing = [k for k in switches if k not in takes]
    if missing and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes.values()):
        raise DlexpError(
            f"regularization.{missing[0]}: {cls.__name__} has no {missing[0]} argument, so "
            f"regularization={missing[0].replace('_', '')} cannot apply to it"
        )
    kwargs.update(switches)
    model = _call_with_known_kwargs(group, cls, kwargs, injected)
    if not isinstance(model, nn.Module):
        raise DlexpError(f"{group}._target_ {model_cfg['_target_']} did not build an nn.Module")
    if example is not None:
        _check_forward(model, example, group, inputs.get("num_classes"))
    return model


def _check_forward(
    model: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    group: str,
    num_classes: int | None,
) -> None:
    """One small example batch through the model before anything trains: lazy layers get their
    shapes, and a model that cannot take the data's input (or gives the wrong number of class
    scores) is reported as a mistake in its config, not as a shape error from deep inside."""
    was_training = model.training
    model.eval()
    shape = " and ".join(str(list(t.shape)) for t in example) if isinstance(example, tuple) else (
        str(list(example.shape))
    )  # fmt: skip
    name = type(model).__name__
    try:
        with torch.no_grad():
            out = model(*example) if isinstance(example, tuple) else model(example)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DlexpError(
            f"{group}: {name} cannot take this data's input (a batch shaped {shape}): {first}. "
            "Check the model's sizes against the data set's, or use one of dlexp's models"
        ) from None
    finally:
        model.train(was_training)
    if num_classes and not (
        isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] == num_classes
    ):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DlexpError(
            f"{group}: {name} returns {got} for a batch shaped {shape}; a classifier of this "
            f"data set must return [batch, {num_classes}], one score per class (its __init__ "
            "gets num_classes when it takes it)"
        )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels only: biases and norm scales are left alone."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    if not weight_decay or not no_decay:
        return [{"params": decay + no_decay, "weight_decay": weight_decay}]  # one fused update
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    optim_cfg: Mapping[str, Any], model: nn.Module, group: str = "optim"
) -> torch.optim.Optimizer:
    """`group` names the config node in messages (a GAN's are model.optim_g / model.optim_d)."""
    cls = _import_target(group, optim_cfg["_target_"])
    kwargs = {k: v for k, v in optim_cfg.items() if k not in _BUILDER_KEYS}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    groups = param_groups(model, float(kwargs.pop("weight_decay", 0.0)))
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    if on_cuda and "fused" in inspect.signature(cls).parameters and "fused" not in kwargs:
        kwargs["fused"] = True  # one kernel for the whole update instead of one per tensor
    try:
        return cls(groups, **kwargs)
    except (ValueError, TypeError) as exc:
        raise DlexpError(f"{group}: {cls.__name__} rejected its settings: {exc}") from None


def regularized_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors the explicit L1/L2 penalties act on: weights of 2+ dims, as weight decay."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]


def build_scheduler(
    sched_cfg: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    epochs: int,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step schedule (stepped after every optimizer step), with optional linear warm-up.

    None for a constant learning rate: stepping a scheduler that does nothing costs per step."""
    from torch.optim import lr_scheduler as S

    total = max(1, steps_per_epoch * epochs)
    warmup = min(
        total - 1, int(math.ceil(float(sched_cfg.get("warmup_epochs", 0)) * steps_per_epoch))
    )
    name = sched_cfg["name"]
    rest = max(1, total - warmup)
    if name == "none":
        if warmup <= 0:
            return None  # a constant rate: nothing to step
        main: S.LRScheduler = S.LambdaLR(optimizer, lambda _: 1.0)
    elif name == "step":
        main = S.StepLR(
            optimizer,
            step_size=max(1, sched_cfg["step_epochs"] * steps_per_epoch),
            gamma=sched_cfg["gamma"],
        )
    elif name == "cosine":
        main = S.CosineAnnealingLR(optimizer, T_max=rest, eta_min=sched_cfg["min_lr"])
    elif name == "onecycle":
        max_lr = sched_cfg.get("max_lr") or [g["lr"] for g in optimizer.param_groups]
        cycle = bool(sched_cfg.get("cycle_momentum", False))  # PyTorch's default is True
        momenta = {k: sched_cfg[k] for k in ("base_momentum", "max_momentum") if k in sched_cfg}
        try:
            return S.OneCycleLR(
                optimizer,
                max_lr=max_lr,
                total_steps=total,
                pct_start=sched_cfg["pct_start"],
                cycle_momentum=cycle,
                **(momenta if cycle else {}),
            )
        except ValueError as exc:  # cycle_momentum on an optimizer without momentum or betas
            raise DlexpError(f"scheduler.cycle_momentum: {exc}") from None
    else:
        raise DlexpError(
            f"scheduler.name: must be one of none, step, cosine, onecycle, got {name!r}"
        )
    if warmup <= 0:
        return main
    ramp = S.LinearLR(
        optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup
    )
    return S.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DlexpError(
            f"trainer.device: unknown device '{name}'. Valid: auto, cpu, cuda, cuda:N, mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DlexpError(
                f"trainer.device={name}, but CUDA is not available on this machine "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
                "Use trainer.device=cpu, or trainer.device=auto to pick the best available."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DlexpError(
                f"trainer.device={name}, but this machine has {count} CUDA device(s): "
                f"use cuda:0 … cuda:{count - 1}"
            )
    elif device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise DlexpError("trainer.device=mps, but MPS is not available. Use cpu or auto.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DlexpError(
            f"trainer.device: '{name}' is not supported. Valid: auto, cpu, cuda, cuda:N, mps"
        )
    return device
