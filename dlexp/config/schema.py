"""Typed schemas for every config group, checked before any data is loaded or torch is imported.

`validate(cfg)` returns every problem at once, each naming the key, what was given and what is
valid ("did you mean" for misspelt keys). The schemas are small tables, not dataclasses, because
model and optimizer keys depend on the chosen `_target_` and users may plug in their own classes,
whose keyword arguments are checked later against the constructor's signature.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dlexp.config import schema_text
from dlexp.config.derived import folder_problems
from dlexp.config.names import ACTIVATIONS, INITS, POOLINGS, VISION_DATASETS
from dlexp.config.schema_loggers import check_loggers
from dlexp.config.spec import (
    BOOL,
    NONNEG,
    POSITIVE,
    PROB,
    Choice,
    Float,
    Int,
    Spec,
    _check_table,
    unknown_key,
)

# what other modules take from here (unknown_key is re-exported for verbs and the preflight)
__all__ = [
    "ACTIVATIONS", "INITS", "MODELS", "OPTIMIZERS", "POOLINGS", "VISION_DATASETS",
    "check_switches", "check_timm_installed", "unknown_key", "validate_common",
]  # fmt: skip


TRAINER: dict[str, Any] = {
    "epochs": Int(1),
    "batch_size": Int(1),
    "eval_batch_size": Int(1),
    "device": Spec("str"),
    "seed": Int(0),
    "deterministic": BOOL,
    "precision": Choice("32", 32, "bf16", "16-mixed"),  # 32 typed on a command line is an int
    "grad_clip": Float(0.0, nullable=True),  # 0: off, also for sequence models
    "log_every_n_steps": Int(1),
    "monitor": Spec("str"),
    "monitor_mode": Choice("max", "min", "auto"),
    "early_stopping": {"patience": Int(1, nullable=True), "min_delta": NONNEG},
    "limit_train_batches": Int(1, nullable=True),
    "limit_val_batches": Int(1, nullable=True),
    "overfit_batches": Int(0),
    "figures_every_n_epochs": Int(0, nullable=True),
    "log_histograms": Int(0),
    "log_graph": BOOL,
    "progress": Choice("auto", "bar", "plain", "none"),
    "channels_last": Choice("auto", True, False),
    "threads": Int(1, nullable=True),
    "compile": BOOL,
    "test_after_fit": BOOL,
    "keep_last": Int(1),
    "nonfinite": Choice("stop", "skip"),
}

DATA: dict[str, Any] = {
    "kind": Choice("image"),
    "name": Choice(*VISION_DATASETS),
    "data_dir": Spec("str"),
    "download": BOOL,
    "val_fraction": Float(0.0, 1.0, hi_open=True),
    "split_seed": Int(0),
    "augment": Choice("none", "crop_flip"),
    "loader": Choice("auto", "tensor", "dataloader"),
    "memory_budget_mb": Int(0),
    "num_workers": Int(0),
}

_COMMON_MODEL = {
    "_target_": Spec("str"),
    "task": Choice("classify"),
    "in_channels": Int(1),
    "num_classes": Int(2),
    "image_size": Int(1, nullable=True),
    "activation": Choice(*ACTIVATIONS),
    "dropout": PROB,
    "batch_norm": BOOL,
    "init": Choice(*INITS),
}
MODELS: dict[str, dict[str, Any]] = {
    "dlexp.models.cnn.LeNet5": {**_COMMON_MODEL, "pooling": Choice(*POOLINGS)},
    "dlexp.models.cnn.ConvNet": {
        **_COMMON_MODEL,
        "pooling": Choice(*POOLINGS),
        "channels": Spec("ints", lo=1, min_length=1),
        "convs_per_block": Int(1),
        "kernel_size": Int(1),
    },
    "dlexp.models.cnn.MLP": {**_COMMON_MODEL, "hidden_sizes": Spec("ints", lo=1)},
}
# torchvision and timm classifiers by name (dlexp.models.hub): model=torchvision / model=timm
_HUB_MODEL = {
    **{k: _COMMON_MODEL[k] for k in ("_target_", "task", "in_channels", "num_classes")},
    "image_size": Int(1, nullable=True),
    "arch": Spec("str"),
    "small_input": BOOL,
    "dropout": Float(0.0, 1.0, hi_open=True, nullable=True),  # null: the library's default
    "kwargs": Spec("dict"),
}
TIMM = "dlexp.models.hub.timm_classifier"
MODELS["dlexp.models.hub.torchvision_classifier"] = {
    **_HUB_MODEL,
    "weights": Spec("str", nullable=True),
}
MODELS[TIMM] = {**_HUB_MODEL, "pretrained": BOOL}


def check_timm_installed(model: Mapping[str, Any]) -> list[str]:
    """model=timm without timm: said before a run folder exists (find_spec imports nothing)."""
    from importlib.util import find_spec

    if model.get("_target_") != TIMM or find_spec("timm") is not None:
        return []
    return ["model=timm needs the timm package: pip install 'dlexp[timm]' (or pip install timm)"]


_OPT = {"_target_": Spec("str"), "lr": POSITIVE, "weight_decay": NONNEG}
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "torch.optim.SGD": {
        **_OPT,
        "momentum": Float(0.0, 1.0, hi_open=True),
        "dampening": Float(0.0, 1.0),
        "nesterov": BOOL,
    },
    "torch.optim.Adam": {
        **_OPT,
        "betas": Spec("floats", lo=0.0, hi=1.0, hi_open=True, length=2),
        "eps": POSITIVE,
        "amsgrad": BOOL,
    },
    "torch.optim.RMSprop": {
        **_OPT,
        "alpha": Float(0.0, 1.0, lo_open=True, hi_open=True),
        "eps": POSITIVE,
        "momentum": Float(0.0, 1.0, hi_open=True),
        "centered": BOOL,
    },
}
OPTIMIZERS["torch.optim.AdamW"] = OPTIMIZERS["torch.optim.Adam"]

_WARMUP = {"name": Spec("str"), "warmup_epochs": Float(0.0)}
SCHEDULERS: dict[str, dict[str, Any]] = {
    "none": _WARMUP,
    "step": {**_WARMUP, "step_epochs": Int(1), "gamma": Float(0.0, 1.0, lo_open=True)},
    "cosine": {**_WARMUP, "min_lr": NONNEG},
    "onecycle": {
        **_WARMUP,
        "max_lr": Float(0.0, lo_open=True, nullable=True),
        "pct_start": Float(0.0, 1.0, lo_open=True, hi_open=True),
        "cycle_momentum": BOOL,
        "base_momentum": Float(0.0, 1.0, hi_open=True),
        "max_momentum": Float(0.0, 1.0, hi_open=True),
    },
}

REGULARIZATION = {
    "l1": NONNEG,
    "l2": NONNEG,
    "dropout": Float(0.0, 1.0, hi_open=True, nullable=True),
    "batch_norm": Spec("bool", nullable=True),
}
PATHS = {"output_root": Spec("str"), "data_dir": Spec("str")}
OPTUNA_LINK = {"storage": Spec("str"), "study": Spec("str"), "trial": Int(0)}


def check_switches(
    regularization: Mapping[str, Any], model: Mapping[str, Any], tables: Mapping[str, Any]
) -> list[str]:
    """regularization=[dropout] / [batchnorm] on a model without that switch is a mistake."""
    target = model.get("_target_")
    table = tables.get(target) if isinstance(target, str) else None
    if table is None:
        return []  # a user's own class: the builder checks its signature
    problems = []
    for key in ("dropout", "batch_norm"):
        if regularization.get(key) is not None and key not in table:
            have = sorted(t.rsplit(".", 1)[-1] for t, tab in tables.items() if key in tab)
            name = str(model["_target_"]).rsplit(".", 1)[-1]
            problems.append(
                f"regularization.{key}: {name} has no {key} switch; models with one: "
                f"{', '.join(have)}"
            )
    return problems


DEVICE = re.compile(r"auto|(cpu|mps|cuda)(:\d+)?")
MONITORS = ("val/acc", "val/loss", "train/acc", "train/loss")


def check_monitor(cfg: Mapping[str, Any]) -> list[str]:
    """trainer.monitor names one of a classifier's metrics, and its split exists."""
    problems: list[str] = []
    trainer, data = cfg.get("trainer") or {}, cfg.get("data") or {}
    monitor = trainer.get("monitor")
    if isinstance(monitor, str):
        if monitor not in MONITORS:
            problems.append(
                f"trainer.monitor: must be one of {', '.join(MONITORS)}, got {monitor!r}"
            )
        elif (
            monitor.startswith("val/")
            and data.get("val_fraction") == 0
            and not data.get("val")
            and not trainer.get("overfit_batches")  # validates on the training batches
        ):
            problems.append(
                f"trainer.monitor: {monitor} needs a validation split, which data.val_fraction=0 "
                "leaves empty; use trainer.monitor=train/acc, or a val_fraction above 0"
            )
    return problems


def _check_run_shape(cfg: Mapping[str, Any]) -> list[str]:
    """Values that are each valid but don't fit together (or a device that can't exist)."""
    problems = []
    trainer = cfg.get("trainer") or {}
    device = trainer.get("device")
    if isinstance(device, str) and not DEVICE.fullmatch(device):
        problems.append(f"trainer.device: must be auto, cpu, cuda, cuda:<n> or mps, got {device!r}")
    warmup, epochs = (cfg.get("scheduler") or {}).get("warmup_epochs"), trainer.get("epochs")
    if _number(warmup) and _number(epochs) and warmup > epochs:  # (= is a smoke test's 1 and 1)
        problems.append(
            f"scheduler.warmup_epochs: the warm-up ({warmup} epochs) is longer than the run "
            f"(trainer.epochs={epochs})"
        )
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_common(cfg: Mapping[str, Any]) -> list[str]:
    """Every problem in the groups all families share; `tasks.registry.validate` adds the
    family's own checks (its model, optimizers and combinations)."""
    problems: list[str] = []
    for group, table in (
        ("trainer", TRAINER),
        ("regularization", REGULARIZATION),
        ("paths", PATHS),
    ):
        problems += _check_table(group, cfg.get(group) or {}, table)
    problems += check_loggers(cfg.get("logger"))
    name = cfg.get("name")
    if name is not None and (isinstance(name, bool) or not isinstance(name, (str, int, float))):
        problems.append(f"name: expected a short text for the folder name, got {name!r}")
    if isinstance(cfg.get("optuna"), Mapping):  # set by dlexp's Optuna sweeper for each trial
        problems += _check_table("optuna", cfg["optuna"], OPTUNA_LINK)
    if cfg.get("resume", "never") not in ("never", "auto"):
        problems.append(f"resume: must be one of never, auto, got {cfg.get('resume')!r}")
    if not isinstance(cfg.get("fail_fast", False), bool):
        problems.append(f"fail_fast: expected true or false, got {cfg.get('fail_fast')!r}")
    data = cfg.get("data") or {}
    kind = data.get("kind", "image")
    if kind == "image":
        problems += _check_table("data", data, DATA)
    elif kind == "text":
        problems += schema_text.validate_data("data", data)
    else:
        problems.append(f"data.kind: must be one of image, text, got {kind!r}")

    sched = cfg.get("scheduler") or {}
    name = sched.get("name")
    if not isinstance(name, str) or name not in SCHEDULERS:
        problems.append(f"scheduler.name: must be one of {', '.join(SCHEDULERS)}, got {name!r}")
    else:
        problems += _check_table("scheduler", sched, SCHEDULERS[name])
        if name == "onecycle" and sched.get("warmup_epochs"):
            problems.append("scheduler.warmup_epochs: onecycle has its own warm-up; set it to 0")
        low, high = sched.get("base_momentum"), sched.get("max_momentum")
        if _number(low) and _number(high) and low > high:
            problems.append(
                f"scheduler.base_momentum: the cycle's low point ({low}) is above "
                f"scheduler.max_momentum ({high})"
            )

    optim = cfg.get("optim") or {}
    if optim.get("nesterov") and not optim.get("momentum"):
        problems.append("optim.nesterov: Nesterov needs optim.momentum > 0, e.g. 0.9")
    problems += _check_run_shape(cfg)
    problems += folder_problems("data.data_dir", data.get("data_dir"))
    problems += folder_problems("paths.data_dir", (cfg.get("paths") or {}).get("data_dir"))
    return problems
