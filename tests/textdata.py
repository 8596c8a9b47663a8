"""Tiny text data sets written in the real on-disk formats, for offline tests.

`write_aclimdb_archive` writes a real gzip tar in the layout of aclImdb_v1.tar.gz
(aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, plus the parts dlexp skips: train/unsup,
the .feat files and the URL lists). `write_table` writes CSV, TSV or JSONL; `write_class_folders`
a folder of class folders. `order_corpus` makes a corpus whose label depends on word order only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

POSITIVE = ["a wonderful film", "great acting and a great story", "i loved it!", "superb, moving"]
NEGATIVE = ["a dull film", "terrible acting and a boring story", "i hated it!", "awful, slow"]


def imdb_reviews(n_per_class: int, split: str) -> list[tuple[str, str, int]]:
    """(label folder, text, rating) triples; review text mentions its split and index."""
    reviews = []
    for i in range(n_per_class):
        reviews.append(("pos", f"{POSITIVE[i % 4]} <br /><br />{split} review {i}", 7 + i % 4))
        reviews.append(("neg", f"{NEGATIVE[i % 4]} <br />{split} review {i}", 1 + i % 4))
    return reviews


def write_aclimdb_archive(path: Path, n_per_class: int = 6) -> str:
    """Write a tiny aclImdb_v1.tar.gz at `path`; return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def add(tar: tarfile.TarFile, name: str, text: str) -> None:
        data = text.encode("utf-8")
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w:gz") as tar:
        add(tar, "aclImdb/README", "Large Movie Review Dataset v1.0 (tiny test copy)\n")
        add(tar, "aclImdb/imdb.vocab", "the\nand\na\n")
        for split in ("train", "test"):
            add(tar, f"aclImdb/{split}/labeledBow.feat", "0:1 1:2\n")
            for i, (folder, text, rating) in enumerate(imdb_reviews(n_per_class, split)):
                add(tar, f"aclImdb/{split}/{folder}/{i}_{rating}.txt", text)
            add(tar, f"aclImdb/{split}/urls_pos.txt", "http://www.imdb.com/title/tt0000001/\n")
        add(tar, "aclImdb/train/unsup/0_0.txt", "an unlabelled review that must not be read")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def imdb_checksum(sha256: str) -> Iterator[None]:
    """Let dlexp accept a test archive: it checks archives against the official SHA-256."""
    with mock.patch("dlexp.data.imdb.ARCHIVE_SHA256", sha256):
        yield


def write_table(path: Path, rows: Sequence[dict[str, object]], fmt: str) -> Path:
    """Rows as CSV, TSV (header line, csv quoting) or JSONL (one object per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=list(rows[0]), delimiter="," if fmt == "csv" else "\t"
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_class_folders(root: Path, rows: Sequence[dict[str, object]]) -> Path:
    """root/<label>/<i>.txt for each row."""
    for i, row in enumerate(rows):
        folder = root / str(row["label"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.txt").write_text(str(row["text"]), encoding="utf-8")
    return root


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, object]]:
    """`n` short reviews, half positive, half negative (a bag of words is enough here)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        rows.append({"text": f"{words} number {i}", "label": label})
    return rows


def order_corpus(n: int, seed: int = 0) -> list[dict[str, object]]:
    """Texts like "the film was good not bad ..." (pos) and "... bad not good ..." (neg).

    Both classes use exactly the same words, with the same counts, in every text: only their
    order tells the label, so any bag-of-words model is at chance (50 %). Filler words of random
    number and kind pad both sides, so the model must find the phrase, not count positions.
    """
    rng = random.Random(seed)
    filler = ["the", "film", "was", "really", "quite", "honestly", "overall", "plot"]
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        left = [rng.choice(filler) for _ in range(rng.randint(0, 4))]
        right = [rng.choice(filler) for _ in range(rng.randint(0, 4))]
        phrase = ["good", "not", "bad"] if label == "pos" else ["bad", "not", "good"]
        rows.append({"text": " ".join([*left, *phrase, *right]), "label": label})
    return rows
