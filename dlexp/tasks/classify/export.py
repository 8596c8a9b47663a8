"""What a classification run exports: its model, checked on its own validation split.

`export_module(payload)` is the family's export hook (named in `tasks/registry.py`). Images:
the model takes normalised float images at the size it saw in training; the JSON says how to
get there from pixels. Text: it takes token ids and lengths; the JSON holds the vocabulary, the
tokenizer's rules and `max_len`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dlexp.data.loaders import prepare_images
from dlexp.data.tokenize import pad_documents
from dlexp.engine.databuild import image_splits, load_text_splits
from dlexp.engine.export import BATCH_SIZES, Exportable
from dlexp.engine.inference import Classifier, load_classifier
from dlexp.errors import DlexpError

COUNT = max(BATCH_SIZES)  # real inputs the check needs


def export_module(payload: Mapping[str, Any], source: Any) -> Exportable:
    """The classifier of a checkpoint and `COUNT` inputs from its run's validation split."""
    classifier = load_classifier(payload, source, torch.device("cpu"))
    data_cfg = payload["config"]["data"]
    meta: dict[str, Any] = {"task": "classify", "classes": classifier.classes}
    meta["output"] = "logits: their softmax gives each class's probability, in `classes` order"
    if classifier.kind == "text":
        return _text(classifier, data_cfg, meta)
    return _images(classifier, data_cfg, meta)


def _split(splits: Mapping[str, Any]) -> tuple[str, Any]:
    """The validation split, or the test or training split where it is empty."""
    for name in ("val", "test", "train"):
        if len(splits[name]):
            return name, splits[name]
    raise DlexpError("the run's data set is empty: there are no inputs to check the export on")


def _take(count: int) -> np.ndarray:
    """Indices of COUNT inputs out of `count` (repeated when there are fewer)."""
    return np.resize(np.arange(min(count, COUNT)), COUNT)


def _images(classifier: Classifier, data_cfg: Mapping[str, Any], meta: dict) -> Exportable:
    splits = image_splits(data_cfg)
    name, images = _split({"val": splits.val_x, "test": splits.test_x, "train": splits.train_x})
    chosen = _take(len(images))
    mean, std = list(classifier.data["mean"]), list(classifier.data["std"])
    x = prepare_images(images[torch.from_numpy(chosen)], mean, std, classifier.image_size)
    side, size = classifier.input_size, classifier.image_size
    before, after = (size - side) // 2, size - side - (size - side) // 2
    fit = (
        "as is"
        if size == side
        else f"pad to {size}x{size} px: {before} px left and top, {after} px right and bottom, "
        "filled with (0 - mean[c]) / std[c] (black)"
        if size > side
        else f"resize to {size}x{size} px (bilinear, antialiased)"
    )
    meta["preprocess"] = {
        "pixels": f"uint8 [{classifier.channels}, {side}, {side}] "
        + ("grayscale" if classifier.channels == 1 else "RGB"),
        "steps": ["x = pixels / 255", "x = (x - mean[c]) / std[c] per channel c", fit],
        "mean": mean,
        "std": std,
        "input_size": side,
        "image_size": size,
    }
    return Exportable(
        classifier.model,
        lambda n: (x[:n],),
        ("images",),
        ("logits",),
        ({0: "batch"},),
        meta,
        f"{len(set(chosen))} {_words[name]} images",
    )


def _text(classifier: Classifier, data_cfg: Mapping[str, Any], meta: dict) -> Exportable:
    corpus, splits, _ = load_text_splits(data_cfg)
    name, docs = _split(splits)
    chosen = docs[_take(len(docs))]
    mapping = np.asarray(classifier.vocabulary.lookup(corpus.words), dtype=np.int64)
    ids, lengths = pad_documents(corpus, chosen, mapping, classifier.data.get("max_len"))
    ids_t, lengths_t = torch.from_numpy(ids), torch.from_numpy(lengths)

    def batch(n: int) -> tuple[Tensor, Tensor]:
        return ids_t[:n, : int(lengths_t[:n].max())], lengths_t[:n]

    data = classifier.data
    meta["preprocess"] = {
        "steps": [
            "replace <br /> with a space; lowercase when tokenizer.lowercase",
            "tokens = every match of tokenizer.pattern (a regular expression)",
            "ids = position of each token in vocab, unk_index when absent; keep the first max_len",
            "an empty text is [unk_index]; pad a batch on the right with pad_index",
            "lengths = the number of ids of each text before padding",
        ],
        "tokenizer": dict(data["tokenizer"]),
        "max_len": data.get("max_len"),
        "pad_index": data["pad_index"],
        "unk_index": data["unk_index"],
        "vocab": list(data["vocab"]),
    }
    bidirectional = bool(getattr(classifier.model, "bidirectional", False))
    packs = getattr(classifier.model, "pack", "auto") == "always" or bidirectional
    unsupported = {}
    if packs:
        unsupported["onnx"] = (
            f"{type(classifier.model).__name__} packs padded batches"
            + (" (bidirectional)" if bidirectional else " (pack=always)")
            + ", which ONNX cannot express; export it with format=torchscript"
        )
    return Exportable(
        classifier.model,
        batch,
        ("tokens", "lengths"),
        ("logits",),
        ({0: "batch", 1: "tokens"}, {0: "batch"}),
        meta,
        f"{len(set(chosen.tolist()))} {_words[name]} texts",
        unsupported,
    )


_words = {"val": "validation", "test": "test", "train": "training"}
