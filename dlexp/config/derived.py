"""Values dlexp derives from others, and the checks that need them. Torch-free.

The direction of the monitored metric follows its name unless `trainer.monitor_mode` says
otherwise (`compare` sorts by the same rule); the image size a model sees follows the data set
unless `model.image_size` says otherwise. A model that cannot take that size is a mistake in
the command line, reported before a run folder exists, not when the model is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dlexp.config.paths import expand_path

# lower is better for metric names holding one of these...
LOWER_IS_BETTER = ("loss", "err", "frechet", "distance", "perplexity", "time")
# ...higher for these
HIGHER_IS_BETTER = ("acc", "f1", "auc", "score", "precision", "recall", "iou")

# the images' side of each image data set, as loaded (before a model's own size)
NATIVE_IMAGE_SIZE = {
    "mnist_sample": 28,
    "mnist": 28,
    "fashion_mnist": 28,
    "kmnist": 28,
    "cifar10": 32,
}
LENET_MIN_IMAGE_SIZE = 16  # two 5x5 convs and two 2x2 pools (models/cnn.py)


def direction_of(metric: str) -> str | None:
    """'min' for losses, errors and distances, 'max' for accuracies and scores, else None."""
    name = metric.removeprefix("best/").lower()
    if any(word in name for word in LOWER_IS_BETTER):
        return "min"
    if any(word in name for word in HIGHER_IS_BETTER):
        return "max"
    return None


def monitor_mode(trainer: Mapping[str, Any]) -> str:
    """`trainer.monitor_mode` as used: max or min as given, `auto` (or a config from before
    `auto` existed) from the metric's name; max when the name says nothing."""
    mode = trainer.get("monitor_mode", "auto")
    if mode in ("max", "min"):
        return str(mode)
    return direction_of(str(trainer.get("monitor") or "")) or "max"


def monitor_problems(trainer: Mapping[str, Any]) -> list[str]:
    """A direction that contradicts the metric's name, or a name that tells none."""
    monitor, mode = trainer.get("monitor"), trainer.get("monitor_mode", "auto")
    if not isinstance(monitor, str) or mode not in ("max", "min", "auto"):
        return []
    natural = direction_of(monitor)
    if mode == "auto" and natural is None:
        return [
            f"trainer.monitor_mode: cannot tell from the name '{monitor}' whether higher or lower "
            "is better; set trainer.monitor_mode=max or min"
        ]
    if mode != "auto" and natural is not None and mode != natural:
        wanted = "minimised" if natural == "min" else "maximised"
        return [
            f"trainer.monitor_mode: '{monitor}' should be {wanted}; set monitor_mode={natural} "
            "(or leave it out: auto follows the metric's name)"
        ]
    return []


def model_image_problems(model: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """Image models that cannot take the images they would get (the size the data set has,
    or model.image_size)."""
    target = str(model.get("_target_", ""))
    size = model.get("image_size") or NATIVE_IMAGE_SIZE.get(str(data.get("name")))
    if not isinstance(size, int) or isinstance(size, bool):
        return []
    source = "model.image_size" if model.get("image_size") else f"data={data.get('name')}"
    if target == "dlexp.models.cnn.LeNet5" and size < LENET_MIN_IMAGE_SIZE:
        return [
            f"model.image_size: LeNet-5 needs images of at least {LENET_MIN_IMAGE_SIZE} px "
            f"(two 5x5 convs, two 2x2 pools), got {size} from {source}"
        ]
    if target != "dlexp.models.cnn.ConvNet":
        return []
    problems, kernel, widths = [], model.get("kernel_size"), model.get("channels")
    if isinstance(kernel, int) and kernel >= 1 and kernel % 2 == 0:
        problems.append(
            f"model.kernel_size: must be odd (so 'same' padding is symmetric), got {kernel}; "
            f"use {kernel - 1} or {kernel + 1}"
        )
    if isinstance(widths, list) and widths and size < 2 ** len(widths):
        fits = max(1, size.bit_length() - 1)
        problems.append(
            f"model.channels: {len(widths)} blocks halve the image {len(widths)} times, which "
            f"{size} px images ({source}) do not survive; list at most {fits} widths, "
            f"e.g. {widths[:fits]}"
        )
    return problems


def one_per_mistake(problems: list[str]) -> list[str]:
    """A check of how two values fit together says nothing when one of them is wrong on its
    own: `trainer.epochs=-3` is one problem, not also a warm-up longer than the run."""
    bad = {p.split(":", 1)[0] for p in problems}
    kept, seen = [], set()
    for problem in problems:
        own = problem.split(":", 1)[0]
        others = [k for k in bad if k != own and " " not in k]
        mentioned = any(re.search(rf"(?<![\w.]){re.escape(k)}(?![\w.'])", problem) for k in others)
        if not mentioned and own not in seen:  # the first problem of a key says what is wrong
            kept.append(problem)
        seen.add(own)
    return kept


def folder_problems(key: str, value: Any) -> list[str]:
    """A folder setting that names a file (or a path through one) cannot become a folder."""
    if not isinstance(value, str) or not value or "${" in value:
        return []
    path = expand_path(value)
    on_the_way = next((p for p in [path, *path.parents] if p.exists()), None)
    if on_the_way is None or on_the_way.is_dir():
        return []
    where = "is a file" if on_the_way == path else f"runs through the file {on_the_way}"
    return [f"{key}: {value} {where}, not a folder; give a folder (it is created if missing)"]
