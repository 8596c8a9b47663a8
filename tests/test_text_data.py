"""The text pipeline: tokenizer, vocabulary (training split only), IMDB from a tiny archive in the
real aclImdb layout (download, checksum, extraction, cache), local CSV/TSV/JSONL/folder files,
the (seed, epoch) batch order, and the clear messages for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dlexp.data import imdb
from dlexp.data.tokenize import PAD, UNK, UNK_ID, Vocabulary, tokenize
from dlexp.engine.databuild import build_data
from dlexp.errors import DatasetNotFoundError, DlexpError
from dlexp.tasks.registry import validate
from tests.conftest import run_cli
from tests.textdata import (
    NEGATIVE,
    POSITIVE,
    imdb_checksum,
    order_corpus,
    sentiment_rows,
    write_aclimdb_archive,
    write_class_folders,
    write_table,
)

CPU = torch.device("cpu")


def text_files_cfg(train: Path, **over: Any) -> dict[str, Any]:
    cfg = {
        "kind": "text",
        "name": "text_files",
        "format": "auto",
        "train": str(train),
        "val": None,
        "test": None,
        "text_column": "text",
        "label_column": "label",
        "labels": None,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "split_seed": 0,
        "lowercase": True,
        "min_freq": 1,
        "max_vocab": None,
        "max_len": 16,
        "bucket": False,
    }
    return {**cfg, **over}


def imdb_cfg(data_dir: Path, **over: Any) -> dict[str, Any]:
    cfg = {
        "kind": "text",
        "name": "imdb",
        "data_dir": str(data_dir),
        "download": False,
        "val_fraction": 0.25,
        "split_seed": 0,
        "lowercase": True,
        "min_freq": 1,
        "max_vocab": None,
        "max_len": 12,
        "bucket": False,
    }
    return {**cfg, **over}


def build(cfg: dict[str, Any], batch_size: int = 4, **kw: Any):
    return build_data(cfg, batch_size=batch_size, eval_batch_size=5, device=CPU, seed=0, **kw)


def all_batches(loader, epoch: int = 0, start: int = 0) -> list[tuple[torch.Tensor, ...]]:
    return [(ids, lengths, y) for (ids, lengths), y in loader.batches(epoch, start)]


# --- tokenizer and vocabulary ------------------------------------------------------------------


def test_tokenizer_follows_its_documented_rules() -> None:
    text = "I didn't LIKE it!<br /><br />It's 10/10... really?"
    assert tokenize(text) == [
        "i", "didn't", "like", "it", "!", "it's", "10", "/", "10", ".", ".", ".", "really", "?",
    ]  # fmt: skip
    assert tokenize("Great Film", lowercase=False) == ["Great", "Film"]


def test_vocabulary_orders_by_frequency_and_keeps_pad_and_unk_first() -> None:
    vocab = Vocabulary.build({"b": 3, "a": 3, "c": 5, "rare": 1}, min_freq=2)
    assert vocab.tokens == [PAD, UNK, "c", "a", "b"]
    assert Vocabulary.build({"b": 3, "a": 3, "c": 5}, max_size=4).tokens == [PAD, UNK, "c", "a"]
    assert vocab.lookup(["c", "never-seen", "rare"]) == [2, UNK_ID, UNK_ID]
    ids, lengths = vocab.encode(["C b zzz", "a"], max_len=2)
    assert ids.tolist() == [[2, 4], [3, 0]] and lengths.tolist() == [2, 1]


def test_vocabulary_never_holds_validation_or_test_only_words(tmp_path: Path) -> None:
    rows = sentiment_rows(20)
    train = write_table(tmp_path / "train.csv", rows, "csv")
    val = write_table(tmp_path / "val.csv", [{"text": "valonly words", "label": "pos"}], "csv")
    test = write_table(tmp_path / "test.csv", [{"text": "testonly great", "label": "neg"}], "csv")
    data = build(text_files_cfg(train, val=str(val), test=str(test)))
    assert not {"valonly", "words", "testonly"} & set(data.vocab.tokens)
    assert "great" in data.vocab.tokens
    ((val_ids, val_len, _),) = all_batches(data.val)
    assert val_ids[0, : int(val_len[0])].tolist() == [UNK_ID, UNK_ID]
    ((test_ids, _, _),) = all_batches(data.test)
    assert test_ids[0].tolist() == [UNK_ID, data.vocab.index["great"]]
    # split off train with a seed: each row's number ("... number 17") is a word of its own,
    # so the vocabulary holds the training rows' numbers and every held-out row has an <unk>
    split = build(text_files_cfg(train))
    numbers = [t for t in split.vocab.tokens if t.isdigit()]
    assert len(numbers) == split.train.num_samples == 12
    for loader in (split.val, split.test):
        for ids, _, _ in all_batches(loader):
            assert (ids == UNK_ID).any(1).all()


# --- IMDB ----------------------------------------------------------------------------------------


def test_imdb_loads_from_an_archive_in_the_real_layout_then_from_its_cache(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    sha = write_aclimdb_archive(data_dir / imdb.ARCHIVE, n_per_class=6)
    with imdb_checksum(sha):
        first = build(imdb_cfg(data_dir))
    assert first.classes == ["neg", "pos"]
    assert (first.train.num_samples, first.val.num_samples, first.test.num_samples) == (9, 3, 12)
    folder = data_dir / "aclImdb"
    assert sorted(p.name for p in (folder / "train").iterdir()) == ["neg", "pos"], "no unsup"
    assert len(list(folder.rglob("*.txt"))) == 24
    assert "test" not in first.vocab.tokens and "train" in first.vocab.tokens
    assert "br" not in first.vocab.tokens, "HTML line breaks are not words"
    # labels: every review from a pos/ folder is class 1 = "pos", from neg/ class 0 = "neg"
    corpus, is_test = imdb.load_imdb(data_dir, download=False, lowercase=True)
    pos_words = set(tokenize(" ".join(POSITIVE))) - set(tokenize(" ".join(NEGATIVE)))
    neg_words = set(tokenize(" ".join(NEGATIVE))) - set(tokenize(" ".join(POSITIVE)))
    reviews = {}
    for i, label in enumerate(corpus.labels.tolist()):
        tokens = [corpus.words[t] for t in corpus.ids[corpus.offsets[i] : corpus.offsets[i + 1]]]
        assert bool(pos_words & set(tokens)) != bool(neg_words & set(tokens)), tokens
        wrote_into = "pos" if pos_words & set(tokens) else "neg"
        assert first.classes[label] == wrote_into, f"{' '.join(tokens)!r} got label {label}"
        assert bool(is_test[i]) == ("test" in tokens)
        reviews[" ".join(tokens)] = label
    assert len(reviews) == 24 and sorted(reviews.values()) == [0] * 12 + [1] * 12
    # aclImdb/train/pos/0_7.txt and aclImdb/train/neg/1_1.txt, as written by the test archive
    assert reviews["a wonderful film train review 0"] == 1
    assert reviews["a dull film train review 0"] == 0
    # and the test split's batches carry those labels, in the files' order
    test_labels = torch.cat([y for *_, y in all_batches(first.test)])
    assert test_labels.tolist() == corpus.labels[is_test].tolist()

    cache = imdb.cache_path(data_dir, lowercase=True)
    stamp = cache.stat().st_mtime_ns
    # the second load must not need the reviews or the archive at all
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (data_dir / imdb.ARCHIVE).unlink()
    second = build(imdb_cfg(data_dir))
    assert cache.stat().st_mtime_ns == stamp
    for a, b in zip(all_batches(first.test), all_batches(second.test), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert second.vocab.tokens == first.vocab.tokens
    # other tokenizer settings get their own cache, never a wrong one
    with pytest.raises(DatasetNotFoundError):
        build(imdb_cfg(data_dir, lowercase=False))


def test_imdb_downloads_with_checksum_and_progress(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "mirror" / imdb.ARCHIVE
    sha = write_aclimdb_archive(source, n_per_class=2)
    monkeypatch.setattr(imdb, "URL", source.as_uri())
    data_dir = tmp_path / "data"
    with imdb_checksum(sha):
        data = build(imdb_cfg(data_dir, download=True, val_fraction=0.5))
    assert (data_dir / imdb.ARCHIVE).read_bytes() == source.read_bytes()
    assert data.test.num_samples == 4 and not list(data_dir.glob("*.part"))


def test_imdb_without_files_says_where_to_put_them(tmp_path: Path, monkeypatch) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as err:
        build(imdb_cfg(data_dir))
    message = str(err.value)
    for phrase in (str(data_dir / imdb.ARCHIVE), str(data_dir / "aclImdb"), "data.download=true"):
        assert phrase in message
    monkeypatch.setattr(imdb, "URL", (tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(DatasetNotFoundError, match="Downloading IMDB from .* failed"):
        build(imdb_cfg(data_dir, download=True))
    assert not list(data_dir.glob("*")), "a failed download leaves nothing behind"


def test_imdb_rejects_an_archive_that_is_not_the_official_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_aclimdb_archive(data_dir / imdb.ARCHIVE)
    with pytest.raises(DatasetNotFoundError, match=f"expected {imdb.ARCHIVE_SHA256}"):
        build(imdb_cfg(data_dir))
    assert not (data_dir / "aclImdb").exists()


# --- local files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "folder"])
def test_every_local_format_loads_the_same_data(tmp_path: Path, fmt: str) -> None:
    rows = sentiment_rows(20)
    rows[3]["text"] = 'a "quoted", comma\tand tab text'
    if fmt == "folder":
        path = write_class_folders(tmp_path / "corpus", rows)
    else:
        path = write_table(tmp_path / f"train.{fmt}", rows, fmt)
    data = build(text_files_cfg(path))
    assert data.classes == ["neg", "pos"]
    assert data.train.num_samples + data.val.num_samples + data.test.num_samples == 20
    assert (data.val.num_samples, data.test.num_samples) == (4, 4)
    whole = build(text_files_cfg(path, val_fraction=0.0, test_fraction=0.0))
    assert {"wonderful", "dull", "quoted", "comma", "tab"} <= set(whole.vocab.tokens)


def test_columns_labels_and_given_splits_are_configurable(tmp_path: Path) -> None:
    rows = [
        {"review": r["text"], "stars": 5 if r["label"] == "pos" else 1} for r in sentiment_rows(10)
    ]
    train = write_table(tmp_path / "train.jsonl", rows, "jsonl")
    val = write_table(tmp_path / "val.jsonl", rows[:3], "jsonl")
    cfg = text_files_cfg(
        train, val=str(val), text_column="review", label_column="stars", labels=[5, 1, 3]
    )
    data = build(cfg)
    assert data.classes == ["5", "1", "3"] and data.model_inputs()["num_classes"] == 3
    assert data.val.num_samples == 3 and data.train.num_samples == 8  # test split off train


BAD_FILES = {
    "empty_file": ("train.csv", "", {}, ["data.train", "is empty"]),
    "header_only": ("train.csv", "text,label\n", {}, ["data.train", "is empty"]),
    "empty_text": ("train.csv", 'text,label\ngood,pos\n"",neg\n', {}, ["line 3", "empty text"]),
    "undeclared_label": (
        "train.tsv",
        "text\tlabel\ngood\tpos\nbad\tneg\nmeh\tneutral\n",
        {"labels": ["neg", "pos"]},
        ["data.labels", "line 4", "'neutral'", "neg, pos"],
    ),
    "missing_column": (
        "train.jsonl",
        '{"review": "good", "label": "pos"}\n',
        {},
        ["data.text_column", "'text'", "review, label"],
    ),
    "one_label": ("train.csv", "text,label\ngood,pos\nfine,pos\n", {}, ["only one label"]),
    "bad_json": ("train.jsonl", '{"text": "good", \n', {}, ["line 1", "not valid JSON"]),
    "unknown_suffix": ("train.txt", "good pos\n", {}, ["data.format", "csv, tsv, jsonl"]),
}


@pytest.mark.parametrize(("name", "content", "over", "phrases"), BAD_FILES.values(), ids=BAD_FILES)
def test_bad_files_get_a_clear_message(tmp_path, name, content, over, phrases) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DlexpError) as err:
        build(text_files_cfg(path, **over))
    for phrase in phrases:
        assert phrase in str(err.value), str(err.value)


def test_missing_file_and_empty_class_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(DlexpError, match="data.train: .*nope.csv does not exist"):
        build(text_files_cfg(tmp_path / "nope.csv"))
    (tmp_path / "corpus").mkdir()
    with pytest.raises(DlexpError, match="has no sub-folders"):
        build(text_files_cfg(tmp_path / "corpus"))
    (tmp_path / "corpus" / "pos").mkdir()
    with pytest.raises(DlexpError, match="is empty"):
        build(text_files_cfg(tmp_path / "corpus"))
    (tmp_path / "corpus" / "pos" / "1.txt").write_text("")
    (tmp_path / "corpus" / "neg").mkdir()
    (tmp_path / "corpus" / "neg" / "2.txt").write_text("boring")
    with pytest.raises(DlexpError, match="corpus/pos/1.txt has an empty text"):
        build(text_files_cfg(tmp_path / "corpus"))


# --- batches ------------------------------------------------------------------------------------


def test_batch_order_depends_only_on_seed_and_epoch(tmp_path: Path) -> None:
    path = write_table(tmp_path / "train.csv", order_corpus(60), "csv")
    for bucket in (False, True):
        a = build(text_files_cfg(path, bucket=bucket, val_fraction=0.0, test_fraction=0.0))
        b = build(text_files_cfg(path, bucket=bucket, val_fraction=0.0, test_fraction=0.0))
        for epoch in (0, 1):
            first, again = all_batches(a.train, epoch), all_batches(b.train, epoch)
            assert len(first) == len(a.train) == 15
            for x, y in zip(first, again, strict=True):
                assert all(torch.equal(p, q) for p, q in zip(x, y, strict=True))
            resumed = all_batches(a.train, epoch, start=6)
            assert all(torch.equal(p, q) for p, q in zip(resumed[0], first[6], strict=True))
        assert not torch.equal(all_batches(a.train, 0)[0][2], all_batches(a.train, 1)[0][2])


def test_batches_are_cut_to_their_longest_sequence_and_buckets_cut_padding(tmp_path) -> None:
    rows = [{"text": " ".join(["word"] * (1 + i % 15)), "label": i % 2} for i in range(200)]
    path = write_table(tmp_path / "train.csv", rows, "csv")
    waste = {}
    for bucket in (False, True):
        data = build(text_files_cfg(path, bucket=bucket, val_fraction=0.0, test_fraction=0.0))
        pads, seen = 0, []
        for ids, lengths, _ in all_batches(data.train):
            assert ids.shape[1] == int(lengths.max())
            assert torch.equal((ids != 0).sum(1), lengths)
            pads += ids.numel() - int(lengths.sum())
            seen += lengths.tolist()
        assert sorted(seen) == sorted(1 + i % 15 for i in range(200)), "every sample once"
        waste[bucket] = pads
    assert waste[True] < waste[False] / 3


def test_data_parallel_ranks_take_disjoint_shards(tmp_path: Path) -> None:
    rows = [{"text": f"w{i}", "label": i % 2} for i in range(40)]
    path = write_table(tmp_path / "train.csv", rows, "csv")
    cfg = text_files_cfg(path, val_fraction=0.0, test_fraction=0.0, bucket=True)
    shards = []
    for rank in (0, 1):
        data = build(cfg, rank=rank, world_size=2)
        ids = torch.cat([b[0][:, 0] for b in all_batches(data.train, epoch=3)])
        shards.append(set(ids.tolist()))
    assert len(shards[0]) == len(shards[1]) == 20 and not shards[0] & shards[1]


# --- what a checkpoint keeps ---------------------------------------------------------------------


def test_state_is_plain_and_encodes_new_text_like_training(tmp_path: Path) -> None:
    path = write_table(tmp_path / "train.csv", sentiment_rows(20), "csv")
    data = build(text_files_cfg(path, val_fraction=0.0, test_fraction=0.0, max_len=5))
    state = data.state()
    torch.save({"data": state}, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)["data"]
    assert loaded == state and loaded["vocab"][:2] == [PAD, UNK] and loaded["max_len"] == 5
    files = data.files()
    assert list(files) == ["vocab.json"] and json.loads(files["vocab.json"]) == state
    # encode the training texts again from the saved state: the same ids as the loader's
    ids, lengths = Vocabulary(loaded["vocab"]).encode(
        [r["text"] for r in sentiment_rows(20)], loaded["tokenizer"]["lowercase"], 5
    )
    (batch_ids, batch_lengths, _), *_ = all_batches(data.train)
    order = data.train.order(0)[: len(batch_ids)].numpy()
    assert np.array_equal(ids[order, : batch_ids.shape[1]], batch_ids.numpy())
    assert np.array_equal(lengths[order], batch_lengths.numpy())
    x, n = data.example()
    assert x.dtype == torch.long and n.tolist() == [3, 1]


# --- config checks, before anything is loaded ------------------------------------------------------


def test_schema_checks_text_configs_and_model_data_pairs(make_cfg, tmp_path: Path) -> None:
    from dlexp.config.resolvers import to_plain

    def problems(*overrides: str) -> list[str]:
        return validate(to_plain(make_cfg(*overrides)))

    for name in ("x.csv", "a.csv"):  # data.train must exist: it is checked before a run starts
        (tmp_path / name).write_text("text,label\n")
    x_csv, a_csv = tmp_path / "x.csv", tmp_path / "a.csv"

    assert problems("model=lstm_sentiment", "data=imdb") == []
    assert problems("experiment=imdb_lstm") == [] == problems("experiment=seqmnist_lstm")
    assert problems("model=gru", "data=text_files", f"data.train={x_csv}") == []
    (msg,) = problems("data=imdb")
    assert "LeNet5" in msg and "data=imdb" in msg and "model=lstm_sentiment" in msg
    (msg,) = problems("model=lstm_sentiment")
    assert msg.startswith("model._target_") and "data=mnist_sample" in msg and "model=lstm" in msg
    (msg,) = problems("model=lstm", "data=text_files")
    assert msg.startswith("data.train: required")
    (msg,) = problems("model=lstm", "data=imdb", "data.max_len=0")
    assert msg.startswith("data.max_len: must be >= 1")
    (msg,) = problems("model=lstm", "model.readout=first")
    assert "model.readout" in msg and "last, mean, max" in msg and "first" in msg
    (msg,) = problems("model=lstm", "data=text_files", f"data.train={a_csv}", "data.labels=[a,a]")
    assert msg.startswith("data.labels:")
    (msg,) = problems("model=gru", "data=imdb", "+data.format=csv")
    assert msg.startswith("data.format: unknown key")


def test_cli_refuses_a_text_model_on_images_before_writing_anything(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "model=lstm_sentiment", "trainer.progress=none")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    message = " ".join(done.stderr.split())
    for phrase in ("model=lstm_sentiment", "data=mnist_sample", "image data set", "model=lstm"):
        assert phrase in message, message
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.pt"))


@pytest.mark.slow
def test_cli_reports_a_missing_text_column_without_traceback(tmp_path: Path) -> None:
    write_table(tmp_path / "reviews.csv", [{"review": "good", "label": "pos"}] * 4, "csv")
    done = run_cli(
        tmp_path, "model=lstm_sentiment", "data=text_files", "data.train=reviews.csv",
        "trainer.progress=none",
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    err = " ".join(done.stderr.split())
    assert "data.text_column: column 'text' is not in the header of reviews.csv (line 1)" in err
    assert "which names: review, label" in err
