"""The data builder: the one place that reads the keys of a data config.

`dlexp.data` knows no config: it takes a source (`ImageSource`, `ImdbSource`, `TextFiles`) and
plain options. This module makes them from `data.*`, so the tasks and exporters ask here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dlexp.config.paths import expand_path
from dlexp.data.loaders import TensorLoader
from dlexp.data.pipeline import ImageData, ImageSource, build_gan_images, build_image_data
from dlexp.data.text import ImdbSource, TextData, TextSource, build_text_data
from dlexp.data.textfiles import TextFiles
from dlexp.data.tokenize import Corpus
from dlexp.data.vision import ImageSplits
from dlexp.errors import DlexpError


def image_source(data_cfg: Mapping[str, Any]) -> ImageSource:
    return ImageSource(
        name=data_cfg["name"],
        data_dir=expand_path(data_cfg["data_dir"]),
        download=data_cfg["download"],
        val_fraction=data_cfg["val_fraction"],
        split_seed=data_cfg["split_seed"],
    )


def text_source(data_cfg: Mapping[str, Any]) -> TextSource:
    """IMDB or local files, as `data.name` says."""
    name = data_cfg["name"]
    if name == "imdb":
        return ImdbSource(
            data_dir=expand_path(data_cfg["data_dir"]),
            download=data_cfg["download"],
            val_fraction=data_cfg["val_fraction"],
            split_seed=data_cfg["split_seed"],
            lowercase=data_cfg["lowercase"],
        )
    if name == "text_files":
        declared = data_cfg.get("labels")
        return TextFiles(
            train=data_cfg.get("train"),
            val=data_cfg.get("val"),
            test=data_cfg.get("test"),
            format=data_cfg["format"],
            text_column=data_cfg["text_column"],
            label_column=data_cfg["label_column"],
            labels=tuple(str(c) for c in declared) if declared else None,
            encoding=data_cfg.get("encoding") or "utf-8",  # runs from before data.encoding
            val_fraction=data_cfg["val_fraction"],
            test_fraction=data_cfg["test_fraction"],
            split_seed=data_cfg["split_seed"],
            lowercase=data_cfg["lowercase"],
        )
    raise DlexpError(f"data.name: unknown text data set {name!r}; valid: imdb, text_files")


def image_splits(data_cfg: Mapping[str, Any]) -> ImageSplits:
    """The image data set a data config names, split into train/val/test (uint8 tensors)."""
    return image_source(data_cfg).load()


def load_text_splits(
    data_cfg: Mapping[str, Any],
) -> tuple[Corpus, dict[str, np.ndarray], list[str]]:
    """The whole corpus, tokenised, with the document indices of each split and class names."""
    return text_source(data_cfg).load()


def build_data(
    data_cfg: Mapping[str, Any],
    *,
    batch_size: int,
    eval_batch_size: int,
    device: torch.device,
    seed: int,
    model_image_size: int | None = None,  # images only
    channels_last: bool = False,  # images only
    limit_train_batches: int | None = None,
    limit_val_batches: int | None = None,
    overfit_batches: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> ImageData | TextData:
    """A classifier's data: image data sets in `dlexp.data.pipeline`, text in `dlexp.data.text`."""
    options: dict[str, Any] = dict(
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        device=device,
        seed=seed,
        limit_train_batches=limit_train_batches,
        limit_val_batches=limit_val_batches,
        overfit_batches=overfit_batches,
        rank=rank,
        world_size=world_size,
    )
    if data_cfg.get("kind", "image") == "text":
        return build_text_data(
            text_source(data_cfg),
            min_freq=data_cfg["min_freq"],
            max_vocab=data_cfg["max_vocab"],
            max_len=data_cfg["max_len"],
            bucket=data_cfg["bucket"],
            **options,
        )
    return build_image_data(
        image_source(data_cfg),
        augment=data_cfg["augment"],
        loader=data_cfg["loader"],
        memory_budget_mb=data_cfg["memory_budget_mb"],
        num_workers=data_cfg["num_workers"],
        model_image_size=model_image_size,
        channels_last=channels_last,
        **options,
    )


def build_gan_data(
    data_cfg: Mapping[str, Any],
    *,
    batch_size: int,
    seed: int,
    limit_train_batches: int | None,
    num_real: int,
    device: torch.device,
) -> tuple[TensorLoader, torch.Tensor]:
    """A GAN's training batches and up to `num_real` validation images, in [-1, 1]."""
    return build_gan_images(
        image_source(data_cfg),
        batch_size=batch_size,
        seed=seed,
        limit_train_batches=limit_train_batches,
        num_real=num_real,
        device=device,
    )
