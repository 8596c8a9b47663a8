"""Text classification data (`kind: text`): token ids on the device, batched like the image path.

`build_text_data` reads a data set (an `ImdbSource` or `TextFiles`, which
`dlexp.engine.databuild` makes from the data config), builds the vocabulary from the training
split only, and returns `TextData`, whose loaders yield `((token_ids, lengths), labels)`.
Every split lives on the training device as one right-padded id matrix; each batch is cut to its
own longest sequence. The order of an epoch is `TensorLoader`'s (seed, epoch) permutation, so
resuming mid-epoch and DDP sharding work exactly as for images; `bucket=true` regroups that
permutation into batches of similar length (less padding), still a function of (seed, epoch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from dlexp.data.imdb import CLASSES, load_imdb
from dlexp.data.loaders import TensorLoader, epoch_generator
from dlexp.data.textfiles import TextFiles
from dlexp.data.tokenize import (
    PAD_ID,
    TOKEN_PATTERN,
    TOKENIZER_VERSION,
    UNK_ID,
    Corpus,
    Vocabulary,
    build_vocabulary,
    pad_documents,
    split_off,
)

BUCKET_POOL = 50  # batches whose samples are sorted by length together when bucketing


class TextLoader:
    """Batches of ((ids [n, t], lengths [n]), labels [n]) from device tensors.

    A `TensorLoader` over the host-side lengths supplies the order (shuffling, sharding, batch
    limits), so both paths share one definition of "the batches of epoch e". Lengths are also
    kept on the host, to cut each batch to its longest sequence without waiting for the device.
    """

    def __init__(
        self,
        ids: Tensor,
        lengths: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        bucket: bool = False,
        limit_batches: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.ids, self.lengths, self.labels = ids, lengths.to(ids.device), labels
        self.host_lengths = lengths.cpu()
        self.index = TensorLoader(
            self.host_lengths,
            labels.cpu(),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            limit_batches=limit_batches,
            rank=rank,
            world_size=world_size,
        )
        self.bucket = bucket

    @property
    def num_samples(self) -> int:
        return self.index.num_samples

    @property
    def batch_size(self) -> int:
        return self.index.batch_size

    def __len__(self) -> int:
        return len(self.index)

    def order(self, epoch: int) -> Tensor:
        """This rank's sample indices for `epoch` (host tensor)."""
        order = self.index.order(epoch)
        if order is None:
            order = torch.arange(len(self.host_lengths))
        if not self.bucket:
            return order
        lengths = self.host_lengths[order]
        if not self.index.shuffle:  # evaluation: longest first, the least padding possible
            return order[torch.argsort(lengths, descending=True, stable=True)]
        return bucketed(
            order, lengths, self.batch_size, epoch_generator(self.index.seed + 2_000_003, epoch)
        )

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[tuple[Tensor, Tensor], Tensor]]:
        """Batches of `epoch` from batch index `start` on (for resuming mid-epoch)."""
        order = self.order(epoch)
        on_device = order.to(self.ids.device)
        for i in range(start, len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, self.num_samples)
            width = int(self.host_lengths[order[lo:hi]].max())
            idx = on_device[lo:hi]
            ids = self.ids[:, :width].index_select(0, idx)
            yield (ids, self.lengths.index_select(0, idx)), self.labels.index_select(0, idx)


def bucketed(order: Tensor, lengths: Tensor, batch_size: int, gen: torch.Generator) -> Tensor:
    """Regroup a shuffled `order` into batches of similar length, then shuffle the batches.

    Pools of BUCKET_POOL batches are sorted by length and cut into batches; full batches are
    shuffled with `gen` and the one short batch (if any) stays last, so batch i of the result is
    always order[i*b:(i+1)*b] of a fixed permutation: a function of (seed, epoch) alone.
    """
    pool = batch_size * BUCKET_POOL
    parts = []
    for lo in range(0, len(order), pool):
        chunk = order[lo : lo + pool]
        parts.append(chunk[torch.argsort(lengths[lo : lo + pool], descending=True, stable=True)])
    grouped = torch.cat(parts) if parts else order
    full = len(grouped) // batch_size
    batches = list(grouped[: full * batch_size].split(batch_size))
    shuffled = [batches[i] for i in torch.randperm(full, generator=gen).tolist()]
    return torch.cat([*shuffled, grouped[full * batch_size :]])


@dataclass
class TextData:
    """The three loaders plus what a model and a checkpoint need to know about the text."""

    train: TextLoader
    val: TextLoader
    test: TextLoader
    classes: list[str]
    vocab: Vocabulary
    name: str
    lowercase: bool
    max_len: int
    loader_kind: str = "tensor"
    val_images: None = None  # no image grid for text; the confusion matrix still is drawn

    def model_inputs(self) -> dict[str, Any]:
        return {
            "vocab_size": len(self.vocab),
            "num_classes": len(self.classes),
            "pad_index": PAD_ID,
        }

    def example(self) -> tuple[Tensor, Tensor]:
        """Two short sequences, one padded: gives lazy layers their shapes."""
        return torch.tensor([[UNK_ID] * 3, [UNK_ID, PAD_ID, PAD_ID]]), torch.tensor([3, 1])

    def state(self) -> dict[str, Any]:
        """Plain types only (checkpoints load with weights_only=True): enough to encode new
        text exactly as in training, e.g. `Vocabulary(state["vocab"]).encode(texts, ...)`."""
        return {
            "kind": "text",
            "name": self.name,
            "classes": list(self.classes),
            "vocab": list(self.vocab.tokens),
            "tokenizer": {
                "lowercase": self.lowercase,
                "pattern": TOKEN_PATTERN,
                "version": TOKENIZER_VERSION,
            },
            "max_len": self.max_len,
            "pad_index": PAD_ID,
            "unk_index": UNK_ID,
        }

    def files(self) -> dict[str, str]:
        """`vocab.json` (= `state()`) for the run folder, to read new text later."""
        return {"vocab.json": json.dumps(self.state(), ensure_ascii=False)}

    def describe(self) -> str:
        kind = f"{self.loader_kind} loader" + (", length buckets" if self.train.bucket else "")
        return (
            f"{self.train.num_samples:,} train / {self.val.num_samples:,} val / "
            f"{self.test.num_samples:,} test, vocabulary {len(self.vocab):,}, "
            f"max_len {self.max_len}, {kind}"
        )


@dataclass(frozen=True)
class ImdbSource:
    """The Large Movie Review Dataset in `data_dir`; `val_fraction` of its training reviews
    (drawn with `split_seed`) validate, its official test reviews test."""

    data_dir: Path
    download: bool
    val_fraction: float
    split_seed: int
    lowercase: bool
    name: ClassVar[str] = "imdb"

    def load(self) -> tuple[Corpus, dict[str, np.ndarray], list[str]]:
        """The whole corpus, tokenised, with the document indices of each split and the class
        names."""
        corpus, is_test = load_imdb(self.data_dir, download=self.download, lowercase=self.lowercase)
        rng = np.random.default_rng(self.split_seed)
        train = np.flatnonzero(~is_test)
        train, val = split_off(train, round(self.val_fraction * len(train)), rng)
        return corpus, {"train": train, "val": val, "test": np.flatnonzero(is_test)}, CLASSES


TextSource = ImdbSource | TextFiles


def build_text_data(
    source: TextSource,
    *,
    min_freq: int,
    max_vocab: int | None,
    max_len: int,
    bucket: bool,
    batch_size: int,
    eval_batch_size: int,
    device: torch.device,
    seed: int,
    limit_train_batches: int | None = None,
    limit_val_batches: int | None = None,
    overfit_batches: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> TextData:
    """Read, split, build the vocabulary on train only (words seen `min_freq` times, at most
    `max_vocab`), make loaders of texts cut to `max_len` tokens (`bucket`: of similar length)."""
    corpus, splits, classes = source.load()
    train_idx, val_idx = splits["train"], splits["val"]
    vocab, mapping = build_vocabulary(corpus, train_idx, min_freq, max_vocab)
    if overfit_batches:  # debugging aid, as for images: train and validate on the same batches
        train_idx = train_idx[: overfit_batches * batch_size]
        val_idx = train_idx

    def make(docs: np.ndarray, bs: int, train: bool, limit: int | None) -> TextLoader:
        ids, lengths = pad_documents(corpus, docs, mapping, max_len)
        return TextLoader(
            torch.from_numpy(ids).to(device),
            torch.from_numpy(lengths),
            torch.from_numpy(corpus.labels[docs]).to(device),
            bs,
            shuffle=train and not overfit_batches,
            seed=seed,
            bucket=bucket,
            limit_batches=limit,
            rank=rank if train else 0,
            world_size=world_size if train else 1,
        )

    return TextData(
        train=make(train_idx, batch_size, True, limit_train_batches),
        val=make(val_idx, eval_batch_size, False, limit_val_batches),
        test=make(splits["test"], eval_batch_size, False, None),
        classes=classes,
        vocab=vocab,
        name=source.name,
        lowercase=source.lowercase,
        max_len=max_len,
    )
