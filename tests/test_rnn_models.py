"""The recurrent classifiers: every cell x direction x readout builds, learns a gradient, and
gives a sequence the same result alone and padded inside a batch. Small and fast: no training."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from dlexp.config.resolvers import to_plain
from dlexp.engine.builders import build_model
from dlexp.errors import DlexpError
from dlexp.models.rnn import CELLS, READOUTS, RNNClassifier, SentimentLSTM

VOCAB, CLASSES = 50, 3
GRID = list(itertools.product(CELLS, (False, True), READOUTS))
GRID_IDS = [f"{c}-{'bi' if b else 'uni'}-{r}" for c, b, r in GRID]


def token_model(cell: str, bidirectional: bool, readout: str, **kw: object) -> RNNClassifier:
    torch.manual_seed(0)
    return RNNClassifier(
        num_classes=CLASSES,
        cell=cell,
        bidirectional=bidirectional,
        readout=readout,
        vocab_size=VOCAB,
        embedding_dim=8,
        hidden_size=12,
        **kw,
    )


def padded_batch(seqs: list[list[int]], extra: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids, `extra` columns wider than needed (pads after the longest one too)."""
    width = max(map(len, seqs)) + extra
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    return ids, torch.tensor([len(s) for s in seqs])


SEQS = [[5, 9, 2, 7, 3], [4, 4], [8, 1, 6, 2, 9, 3, 5], [7]]


@pytest.mark.parametrize(("cell", "bidirectional", "readout"), GRID, ids=GRID_IDS)
def test_padding_never_changes_a_sequences_result(cell, bidirectional, readout) -> None:
    model = token_model(cell, bidirectional, readout, num_layers=2).eval()
    ids, lengths = padded_batch(SEQS)
    with torch.no_grad():
        batched = model(ids, lengths)
        for i, seq in enumerate(SEQS):
            alone = model(torch.tensor([seq]), torch.tensor([len(seq)]))
            torch.testing.assert_close(batched[i : i + 1], alone, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(("cell", "bidirectional", "readout"), GRID, ids=GRID_IDS)
def test_every_cell_direction_and_readout_trains_without_nan(cell, bidirectional, readout) -> None:
    model = token_model(cell, bidirectional, readout, dropout=0.1, num_layers=2).train()
    ids, lengths = padded_batch(SEQS)
    logits = model(ids, lengths)
    assert logits.shape == (len(SEQS), CLASSES)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), grads.keys()
    assert grads["embedding.weight"][0].abs().sum() == 0, "<pad> must get no gradient"
    assert grads["embedding.weight"][5].abs().sum() > 0


@pytest.mark.parametrize(("cell", "bidirectional", "readout"), GRID, ids=GRID_IDS)
def test_images_are_read_row_by_row(cell, bidirectional, readout) -> None:
    torch.manual_seed(0)
    model = RNNClassifier(
        num_classes=10,
        cell=cell,
        bidirectional=bidirectional,
        readout=readout,
        in_channels=3,
        image_size=6,
        hidden_size=8,
    )
    images = torch.randn(4, 3, 6, 6, requires_grad=True)
    logits = model(images)
    assert logits.shape == (4, 10)
    logits.sum().backward()
    assert torch.isfinite(images.grad).all()
    # row r is one step of 3 x 6 features, channel-major: the same as a [N, H, C*W] sequence
    rows = images.detach().permute(0, 2, 1, 3).reshape(4, 6, 18)
    torch.testing.assert_close(model(images.detach()), model(rows))


@pytest.mark.parametrize("readout", READOUTS)
def test_packed_and_padded_paths_agree(readout: str) -> None:
    ids, lengths = padded_batch(SEQS)
    padded = token_model("lstm", False, readout).eval()
    packed = token_model("lstm", False, readout, pack="always").eval()
    with torch.no_grad():
        torch.testing.assert_close(padded(ids, lengths), packed(ids, lengths), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_mkldnn_setting_changes_speed_not_results_and_is_restored(bidirectional: bool) -> None:
    ids, lengths = padded_batch(SEQS)
    before = torch.backends.mkldnn.enabled
    outs = []
    for flag in ("auto", True, False):
        model = token_model("lstm", bidirectional, "last", mkldnn=flag).eval()
        with torch.no_grad():
            outs.append(model(ids, lengths))
        assert torch.backends.mkldnn.enabled == before
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=2e-5, rtol=1e-4)


def test_sentiment_lstm_is_embedding_lstm_linear_on_the_final_hidden_state() -> None:
    torch.manual_seed(0)
    model = SentimentLSTM(vocab_size=VOCAB, num_classes=2, embedding_dim=8, hidden_size=12).eval()
    assert isinstance(model.rnn, nn.LSTM) and model.readout == "last"
    assert model.default_grad_clip == 1.0 == RNNClassifier.default_grad_clip
    seq = torch.tensor([[3, 8, 2, 9]])
    with torch.no_grad():
        _, (h_n, _) = model.rnn(model.embedding(seq))
        torch.testing.assert_close(model(seq, torch.tensor([4])), model.head(h_n[-1]))


def test_a_token_model_refuses_images_and_an_image_model_refuses_tokens() -> None:
    text = token_model("gru", False, "last")
    with pytest.raises(ValueError, match="reads token ids.*shape \\(2, 1, 28, 28\\)"):
        text(torch.zeros(2, 1, 28, 28))
    images = RNNClassifier(num_classes=10, in_channels=1, image_size=28)
    with pytest.raises(ValueError, match="reads images row by row.*torch.int64"):
        images(torch.ones(2, 7, dtype=torch.long), torch.tensor([7, 3]))
    with pytest.raises(ValueError, match="28 features"):
        images(torch.zeros(2, 1, 14, 14))


def test_bad_settings_are_named_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru, got 'lstmm'"):
        RNNClassifier(num_classes=2, vocab_size=9, cell="lstmm")
    with pytest.raises(ValueError, match="readout must be one of last, mean, max"):
        RNNClassifier(num_classes=2, vocab_size=9, readout="first")
    with pytest.raises(ValueError, match="needs vocab_size"):
        RNNClassifier(num_classes=2)


def _plain(cfg) -> dict:
    return to_plain(cfg) if OmegaConf.is_config(cfg) else cfg


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_model_lstm_is_model_rnn_with_the_cell_changed(make_cfg, cell: str) -> None:
    named = _plain(make_cfg(f"model={cell}"))["model"]
    spelled = _plain(make_cfg("model=rnn", f"model.cell={cell}"))["model"]
    assert named == spelled


def test_builder_gives_sequence_models_what_the_data_decides(make_cfg) -> None:
    cfg = _plain(make_cfg("model=lstm"))
    text = build_model(cfg["model"], cfg["regularization"], {"vocab_size": 30, "num_classes": 4})
    assert text.embedding.num_embeddings == 30 and text.head.out_features == 4
    images = build_model(
        cfg["model"], cfg["regularization"], {"in_channels": 1, "image_size": 28, "num_classes": 10}
    )
    assert images.embedding is None and images.rnn.input_size == 28
    reg = {**cfg["regularization"], "dropout": 0.4}
    assert build_model(cfg["model"], reg, {"vocab_size": 30, "num_classes": 4}).dropout.p == 0.4
    sentiment = _plain(make_cfg("model=lstm_sentiment", "data=imdb"))
    with pytest.raises(DlexpError, match="SentimentLSTM.*needs a text data set"):
        build_model(sentiment["model"], sentiment["regularization"], {"num_classes": 10})


@pytest.mark.parametrize("option", ["rnn", "lstm", "gru", "lstm_sentiment"])
def test_every_shipped_sequence_config_builds_for_token_ids(make_cfg, option: str) -> None:
    """test_configs builds every model for images; text inputs are covered here."""
    cfg = _plain(make_cfg(f"model={option}", "data=imdb"))
    inputs = {"vocab_size": 40, "num_classes": 2, "pad_index": 0}
    model = build_model(cfg["model"], cfg["regularization"], inputs).eval()
    ids, lengths = padded_batch(SEQS)
    with torch.no_grad():
        logits = model(ids, lengths)
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()


@pytest.mark.parametrize(("setting", "expected"), [(None, 1.0), (0.0, None), (2.5, 2.5)])
def test_grad_clip_null_is_the_family_default_and_zero_turns_it_off(setting, expected) -> None:
    from dlexp.tasks.classify.task import loop_options

    trainer = {
        "epochs": 1, "log_every_n_steps": 1, "precision": "32", "grad_clip": setting,
        "monitor": "val/acc", "monitor_mode": "max", "channels_last": False,
        "early_stopping": {"patience": None, "min_delta": 0.0},
        "figures_every_n_epochs": None, "nonfinite": "stop",
    }  # fmt: skip
    model = SentimentLSTM(vocab_size=VOCAB, num_classes=2, embedding_dim=4, hidden_size=4)
    opts = loop_options(
        trainer, {"l1": 0.0, "l2": 0.0}, model, torch.device("cpu"),
        channels_last=False, world_size=1,
    )  # fmt: skip
    assert opts.grad_clip == expected
    mlp = torch.nn.Linear(2, 2)  # no family default: off unless set
    off = loop_options(
        {**trainer, "grad_clip": None}, {"l1": 0.0, "l2": 0.0}, mlp, torch.device("cpu"),
        channels_last=False, world_size=1,
    )  # fmt: skip
    assert off.grad_clip is None
