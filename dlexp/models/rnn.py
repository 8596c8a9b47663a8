"""Recurrent classifiers: one class for RNN, LSTM and GRU cells, and the classic sentiment LSTM.

Two kinds of input, fixed when the model is built from what the data set passes in:
  * token ids (text; `vocab_size` given): `forward(tokens [N, T] long, lengths [N])`, through an
    embedding;
  * real-valued sequences (`in_channels` and `image_size` given): `forward(images [N, C, H, W])`
    reads each image row by row, H steps of C*W features (sequential MNIST), or
    `forward(x [N, T, C*W], lengths=None)`.

Padding never changes a sequence's result. Token batches are right-padded; a unidirectional RNN
runs over the padded batch and the readout only looks at valid steps (the state at each
sequence's own last step; masks for mean/max pooling). On this project's 2-core CPU that was
2.6-2.9x faster than packing for LSTMs, 1.3-2.1x for GRUs (benchmarks/rnn_paths.py). The
reverse direction of a bidirectional RNN would start on the pads, so a bidirectional model packs
the batch, and only when the batch has padding at all.

oneDNN (mkldnn) made the padded LSTM 1.2-2.8x faster on CPU (1.5-2x at the sequential-MNIST
shape) but the packed one no faster (0.9-1.05x), and packed runs under load were once measured
far slower with it. So `mkldnn="auto"` keeps PyTorch's default (on) for padded runs and turns
oneDNN off for packed ones; `False` turns it off for every CPU run, `True` never touches it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
READOUTS = ("last", "mean", "max")
PACKING = ("auto", "always")


class RNNClassifier(nn.Module):
    """Embedding (token ids) or rows (images) -> stacked RNN/LSTM/GRU -> readout -> linear.

    `readout`: "last" (the final hidden state of each direction), "mean" or "max" (pooled over
    each sequence's valid steps). `dropout` acts between stacked layers and before the linear
    head. `pack`: "auto" (only where bidirectional needs it) or "always" (the slower reference).
    """

    default_grad_clip = 1.0  # the runner clips to this when trainer.grad_clip is null

    def __init__(
        self,
        *,
        num_classes: int,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        readout: str = "last",
        embedding_dim: int = 128,
        vocab_size: int | None = None,
        pad_index: int = 0,
        in_channels: int | None = None,
        image_size: int | None = None,
        pack: str = "auto",
        mkldnn: bool | str = "auto",
    ) -> None:
        super().__init__()
        _check_choice("cell", cell, tuple(CELLS))
        _check_choice("readout", readout, READOUTS)
        _check_choice("pack", pack, PACKING)
        _check_choice("mkldnn", mkldnn, ("auto", True, False))
        if vocab_size is not None:
            self.embedding: nn.Embedding | None = nn.Embedding(
                vocab_size, embedding_dim, padding_idx=pad_index
            )
            self.features = embedding_dim
        elif in_channels is not None and image_size is not None:
            self.embedding, self.features = None, in_channels * image_size
        else:
            raise ValueError(
                "needs vocab_size (token ids from a text data set) or in_channels and "
                "image_size (images read row by row); got neither"
            )
        self.cell, self.readout, self.pack, self.mkldnn = cell, readout, pack, mkldnn
        self.bidirectional, self.hidden_size = bidirectional, hidden_size
        self.rnn = CELLS[cell](
            self.features,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # between layers only
            bidirectional=bidirectional,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)
        if cell == "lstm":
            _open_forget_gates(self.rnn)

    def extra_repr(self) -> str:
        mode = "tokens" if self.embedding is not None else "rows of images"
        return f"input={mode}, readout={self.readout}, pack={self.pack}, mkldnn={self.mkldnn}"

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        seq = self._sequence(x)
        steps = seq.shape[1]
        packed = self.pack == "always" or (
            self.bidirectional and lengths is not None and bool((lengths < steps).any())
        )
        with self._onednn(seq, packed):
            if packed:
                if lengths is None:
                    lengths = torch.full((seq.shape[0],), steps, dtype=torch.long)
                features = self._packed(seq, lengths)
            else:
                features = self._padded(seq, lengths)
        return self.head(self.dropout(features))

    # -- inputs -----------------------------------------------------------------------------
    def _sequence(self, x: Tensor) -> Tensor:
        """[N, T, F] floats from token ids or images, with a clear error for the wrong kind."""
        if self.embedding is not None:
            if x.is_floating_point() or x.dim() != 2:
                raise ValueError(
                    f"this model reads token ids (built for a text data set, vocabulary "
                    f"{self.embedding.num_embeddings:,}), but got a {x.dtype} tensor of shape "
                    f"{tuple(x.shape)}; for images build it from an image data set"
                )
            return self.embedding(x)
        if not x.is_floating_point() or x.dim() not in (3, 4):
            raise ValueError(
                f"this model reads images row by row (built for an image data set), but got a "
                f"{x.dtype} tensor of shape {tuple(x.shape)}; for token ids build it from a text "
                f"data set"
            )
        if x.dim() == 4:  # [N, C, H, W] -> H steps of C*W features
            x = x.permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1)
        if x.shape[-1] != self.features:
            raise ValueError(
                f"each step must have {self.features} features (channels x image width), got "
                f"{x.shape[-1]} from an input of shape {tuple(x.shape)}"
            )
        return x

    def _onednn(self, seq: Tensor, packed: bool) -> contextlib.AbstractContextManager[None]:
        enabled = self.mkldnn if isinstance(self.mkldnn, bool) else (False if packed else None)
        if seq.device.type != "cpu" or enabled is None or enabled is True:
            return contextlib.nullcontext()
        return _mkldnn_disabled()

    # -- the two ways through the RNN --------------------------------------------------------
    def _padded(self, seq: Tensor, lengths: Tensor | None) -> Tensor:
        """Right-padded batch: step t only sees steps <= t, so valid steps ignore the pads."""
        out, _ = self.rnn(seq)
        if self.readout != "last":
            return _pool(out, lengths, self.readout)
        h = self.hidden_size
        if lengths is None:
            last = out[:, -1, :h]
        else:
            last = out[torch.arange(out.shape[0], device=out.device), lengths - 1, :h]
        if not self.bidirectional:
            return last
        return torch.cat([last, out[:, 0, h:]], dim=1)  # reverse direction ends at step 0

    def _packed(self, seq: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, hidden = self.rnn(packed)
        if self.readout == "last":
            h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h, c)
            directions = 2 if self.bidirectional else 1
            return torch.cat(list(h_n[-directions:]), dim=1)  # the top layer's directions
        padded, _ = pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        return _pool(padded, lengths.to(seq.device), self.readout)


class SentimentLSTM(RNNClassifier):
    """Embedding -> LSTM -> linear on the final hidden state: the classic sentiment classifier.

    The same pieces as `RNNClassifier(cell="lstm", readout="last")`, for text only: it refuses
    to be built for images, so it never silently reads pixels as words.
    """

    def __init__(
        self,
        *,
        vocab_size: int | None = None,
        num_classes: int = 2,
        embedding_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pad_index: int = 0,
        pack: str = "auto",
        mkldnn: bool | str = "auto",
    ) -> None:
        if vocab_size is None:
            raise ValueError(
                "SentimentLSTM reads token ids and needs a text data set (data=imdb or "
                "data=text_files); to read images row by row use model=lstm"
            )
        super().__init__(
            num_classes=num_classes,
            cell="lstm",
            readout="last",
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            embedding_dim=embedding_dim,
            vocab_size=vocab_size,
            pad_index=pad_index,
            pack=pack,
            mkldnn=mkldnn,
        )


def _pool(out: Tensor, lengths: Tensor | None, how: str) -> Tensor:
    """Mean or max over each sequence's valid steps (all steps when `lengths` is None)."""
    if lengths is None:
        return out.mean(1) if how == "mean" else out.amax(1)
    valid = (torch.arange(out.shape[1], device=out.device) < lengths[:, None]).unsqueeze(-1)
    if how == "mean":
        return (out * valid).sum(1) / lengths[:, None].to(out.dtype)
    return out.masked_fill(~valid, float("-inf")).amax(1)


def _open_forget_gates(lstm: nn.Module, value: float = 1.0) -> None:
    """Start the forget gates open (bias 1; Jozefowicz et al. 2015): gradients then reach early
    steps of long sequences from the first update on, which speeds up learning."""
    h = lstm.hidden_size
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            if name.startswith("bias_ih"):
                p[h : 2 * h].fill_(value)
            elif name.startswith("bias_hh"):
                p[h : 2 * h].zero_()


@contextlib.contextmanager
def _mkldnn_disabled() -> Iterator[None]:
    """Only the `enabled` flag; `torch.backends.mkldnn.flags()` would also reset the TF32 and
    determinism flags (and warn about TF32 on CPU-only builds)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def _check_choice(name: str, value: object, valid: tuple[object, ...]) -> None:
    if not any(type(value) is type(v) and value == v for v in valid):
        shown = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in valid)
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
