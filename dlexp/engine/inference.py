"""A trained classifier rebuilt from its checkpoint alone, and new inputs prepared as in training.

Everything comes from the checkpoint: the model from its config, the weights, the class names,
and the data state — for images the normalisation, the size the model sees (`image_size`, e.g.
LeNet's zero-padded 32 px) and the data set's own size (`input_size`); for text the vocabulary,
the tokenizer's settings and `max_len`. Images go through the very function that prepared the
training data (`prepare_images`), texts through the saved vocabulary's `encode`. The caller has
checked the checkpoint's config with `check_trust` before asking for the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlexp.data.loaders import prepare_images
from dlexp.data.tokenize import TOKENIZER_VERSION, UNK_ID, Vocabulary
from dlexp.engine.builders import build_model
from dlexp.errors import DlexpError

# the data sets' own image sizes, for checkpoints written before `input_size` was recorded
INPUT_SIZES = {"mnist_sample": 28, "mnist": 28, "fashion_mnist": 28, "kmnist": 28, "cifar10": 32}
Inputs = Tensor | tuple[Tensor, ...]


@dataclass
class Classifier:
    """A classifier's model (eval mode), class names and the checkpoint's data state."""

    model: nn.Module
    classes: list[str]
    data: Mapping[str, Any]
    data_name: str
    device: torch.device

    @property
    def kind(self) -> str:
        """What the model reads: "image" or "text"."""
        return "text" if self.data.get("kind") == "text" else "image"

    @property
    def channels(self) -> int:
        return len(self.data["mean"])

    @property
    def image_size(self) -> int:
        """The side the model sees, after padding or resizing."""
        return int(self.data["image_size"])

    @property
    def input_size(self) -> int:
        """The side of the training images on disk: what new images must have."""
        size = self.data.get("input_size") or INPUT_SIZES.get(self.data_name)
        return int(size or self.image_size)

    def prepare_images(self, images: Sequence[np.ndarray]) -> Tensor:
        """uint8 images [C, H, W] → the model's input batch. Images not at `input_size` are
        resized to it first (bilinear, antialiased), then all go the training data's way."""
        side, batch = self.input_size, []
        for image in images:
            x = torch.from_numpy(np.ascontiguousarray(image))[None].float()
            if tuple(x.shape[-2:]) != (side, side):
                x = F.interpolate(
                    x, size=(side, side), mode="bilinear", antialias=True, align_corners=False
                ).clamp_(0, 255)
            batch.append(x)
        x = torch.cat(batch).to(self.device)
        return prepare_images(x, list(self.data["mean"]), list(self.data["std"]), self.image_size)

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Texts → (token ids [N, T], lengths [N]) with the run's vocabulary and `max_len`."""
        ids, lengths = self.vocabulary.encode(
            list(texts), bool(self.data["tokenizer"]["lowercase"]), self.data.get("max_len")
        )
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(lengths).to(self.device)

    @cached_property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.data["vocab"])

    @torch.no_grad()
    def probabilities(self, inputs: Inputs) -> Tensor:
        """Class probabilities [N, K] (float32, on the CPU)."""
        logits = self.model(*inputs) if isinstance(inputs, tuple) else self.model(inputs)
        return logits.float().softmax(1).cpu()


def load_classifier(payload: Mapping[str, Any], source: Path, device: torch.device) -> Classifier:
    """Rebuild a classification run's model from its checkpoint (config, data state, weights)."""
    config, data = payload.get("config") or {}, payload.get("data")
    classes = payload.get("classes")
    if "model" not in payload or not classes or not isinstance(data, Mapping):
        raise DlexpError(
            f"{source} is not a classifier checkpoint (it has no weights under 'model', class "
            "names or data state); give the best.pt or last.pt of a classification run"
        )
    if data.get("kind") == "text":
        version = (data.get("tokenizer") or {}).get("version")
        if version != TOKENIZER_VERSION:
            raise DlexpError(
                f"{source} was trained with tokenizer version {version}; this dlexp has version "
                f"{TOKENIZER_VERSION} and would split texts differently. Use the dlexp version "
                "that trained it, or train again"
            )
        inputs = {
            "vocab_size": len(data["vocab"]),
            "num_classes": len(classes),
            "pad_index": int(data["pad_index"]),
        }
        example: Inputs = (torch.tensor([[UNK_ID] * 3, [UNK_ID, 0, 0]]), torch.tensor([3, 1]))
    else:
        channels, size = len(data["mean"]), int(data["image_size"])
        inputs = {"in_channels": channels, "image_size": size, "num_classes": len(classes)}
        example = torch.zeros(2, channels, size, size)
    model = build_model(config["model"], config.get("regularization") or {}, inputs, example)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DlexpError(
            f"{source}: the weights do not fit the model its config builds ({first})"
        ) from None
    name = str((config.get("data") or {}).get("name", "?"))
    return Classifier(model.to(device).eval(), [str(c) for c in classes], data, name, device)
