"""Recurrent models learn, in short real runs: sequential MNIST, a corpus where only word order
tells the label, and IMDB end to end (tiny archive) with a checkpoint that classifies new text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlexp.cli.train import train
from dlexp.data import imdb
from dlexp.data.tokenize import Vocabulary
from dlexp.engine.builders import build_model
from dlexp.engine.checkpoint import load_checkpoint
from tests.conftest import latest_run, read_jsonl, run_cli
from tests.textdata import imdb_checksum, order_corpus, write_aclimdb_archive, write_table

pytestmark = pytest.mark.slow

QUIET = ("trainer.progress=none", "trainer.figures_every_n_epochs=0")


def _train(make_cfg, tmp_path: Path, *overrides: str) -> tuple[float, Path]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    best = train(make_cfg(*QUIET, *overrides), run_dir=run_dir)
    return best, run_dir


def test_lstm_reads_mnist_row_by_row_to_over_90_percent(make_cfg, tmp_path: Path) -> None:
    best, run_dir = _train(
        make_cfg,
        tmp_path,
        "experiment=seqmnist_lstm",
        "trainer.epochs=4",
        "trainer.test_after_fit=false",
        "trainer.log_every_n_steps=10",
    )
    assert best > 0.90, f"sequential MNIST reached only {best:.3f} validation accuracy"
    steps = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "step"]
    # clipping is on by default for recurrent models, so the gradient norm is logged
    assert steps and all(r["train/grad_norm"] > 0 for r in steps)


def test_lstm_learns_word_order_where_a_bag_of_words_is_at_chance(make_cfg, tmp_path) -> None:
    rows = order_corpus(640, seed=1)
    train_file = write_table(tmp_path / "train.csv", rows[:512], "csv")
    val_file = write_table(tmp_path / "val.csv", rows[512:], "csv")
    best, run_dir = _train(
        make_cfg,
        tmp_path,
        "model=lstm",
        "model.hidden_size=32",
        "model.embedding_dim=16",
        "data=text_files",
        f"data.train={train_file}",
        f"data.val={val_file}",
        "data.test_fraction=0",
        "optim.lr=0.01",
        "trainer.epochs=6",
        "trainer.batch_size=32",
    )
    # both classes have the same words in the same numbers: without order, 50 % is the limit
    assert best >= 0.9, f"validation accuracy {best:.3f}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done"


def test_imdb_checkpoint_classifies_new_text(make_cfg, tmp_path: Path) -> None:
    # 32 reviews per class and split; each opens with one of four phrases, positive or negative
    sha = write_aclimdb_archive(tmp_path / "data" / imdb.ARCHIVE, n_per_class=32)
    with imdb_checksum(sha):
        best, run_dir = _train(
            make_cfg,
            tmp_path,
            "experiment=imdb_lstm",
            "model.hidden_size=16",
            "model.embedding_dim=8",
            "model.dropout=0",
            "data.val_fraction=0.25",
            "optim.lr=0.02",
            "trainer.epochs=6",
            "trainer.batch_size=8",
            "trainer.monitor=val/loss",
            "trainer.monitor_mode=min",
        )
    vocab_file = json.loads((run_dir / "vocab.json").read_text(encoding="utf-8"))
    ckpt = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    state = ckpt["data"]
    assert state == vocab_file and state["classes"] == ["neg", "pos"]
    assert "wonderful" in state["vocab"] and "test" not in state["vocab"]

    # what a user does later: rebuild the model, encode new text with the saved vocabulary
    cfg = ckpt["config"]
    inputs = {"vocab_size": len(state["vocab"]), "num_classes": 2, "pad_index": 0}
    model = build_model(cfg["model"], cfg["regularization"], inputs)
    model.load_state_dict(ckpt["model"])
    texts = {
        "A wonderful film, I loved it!": "pos",
        "Superb, moving.": "pos",
        "A dull film, I hated it!": "neg",
        "Awful, slow.": "neg",
    }
    ids, lengths = Vocabulary(state["vocab"]).encode(
        [*texts, "never-seen words only"],
        state["tokenizer"]["lowercase"],
        state["max_len"],
    )
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(ids), torch.from_numpy(lengths))
    assert logits.shape == (5, 2) and torch.isfinite(logits).all()
    # the toy reviews are easy: a model that learnt them reads new text the same way, with
    # the saved vocabulary and the checkpoint's class names (a flipped label shows up here)
    predicted = [state["classes"][i] for i in logits[:4].argmax(1).tolist()]
    assert predicted == list(texts.values()), logits
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done"
    assert summary["test"]["test/acc"] >= 0.9, summary["test"]  # chance is 0.5


def test_cli_trains_on_an_extracted_imdb_folder(tmp_path: Path) -> None:
    """The real command line, offline, with aclImdb/ put into the data folder by hand."""
    import tarfile

    archive = tmp_path / "download" / imdb.ARCHIVE
    write_aclimdb_archive(archive, n_per_class=8)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "data", filter="data")
    done = run_cli(
        tmp_path,
        "experiment=imdb_lstm",
        "model.hidden_size=8",
        "model.embedding_dim=8",
        "trainer.epochs=1",
        "trainer.batch_size=8",
        "trainer.progress=plain",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = latest_run(tmp_path)
    assert (run / "vocab.json").is_file() and (run / "figures" / "confusion_matrix.png").is_file()
    assert "vocabulary" in done.stdout and "length buckets" in done.stdout
    assert (tmp_path / "data" / imdb.cache_path(Path("."), True).name).is_file()
