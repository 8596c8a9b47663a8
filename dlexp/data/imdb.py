"""The Large Movie Review Dataset (Maas et al., 2011: "aclImdb"): 25,000 + 25,000 reviews, pos/neg.

`load_imdb` looks in `data_dir`, in this order, for
  1. the tokenised cache it wrote on an earlier run (one .npz: the second run starts in about
     a second instead of re-reading 50,000 files);
  2. the extracted folder `aclImdb/` (train/pos, train/neg, test/pos, test/neg of
     `<id>_<rating>.txt` files);
  3. the archive `aclImdb_v1.tar.gz`, checked against the SHA-256 of the official release, then
     its 50,000 labelled reviews are extracted (the unlabelled `train/unsup` part is skipped);
  4. with `download=true`, the official URL, with a progress bar on a terminal.
Without any of them it raises `DatasetNotFoundError` naming the folder and the files to put there.
The cache is keyed by the tokenizer settings; delete `aclImdb_tokens_*.npz` to rebuild it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dlexp.config.files import decode_text
from dlexp.data.tokenize import TOKENIZER_VERSION, Corpus, tokenize_corpus
from dlexp.errors import DatasetNotFoundError

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ARCHIVE = "aclImdb_v1.tar.gz"
ARCHIVE_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
ARCHIVE_BYTES = 84_125_825
FOLDER = "aclImdb"
CLASSES = ["neg", "pos"]
SPLITS = ("train", "test")
CACHE_FORMAT = 1


def load_imdb(data_dir: Path, *, download: bool, lowercase: bool) -> tuple[Corpus, np.ndarray]:
    """All 50,000 labelled reviews, tokenised (train first, then test), and an is-test mask."""
    root = Path(data_dir).expanduser()
    cache = cache_path(root, lowercase)
    cached = _read_cache(cache, lowercase)
    if cached is not None:
        return cached
    folder = root / FOLDER
    if not folder.exists():
        archive = root / ARCHIVE
        if not archive.is_file():
            if not download:
                raise DatasetNotFoundError(_not_found(root))
            _download(URL, archive)
        verify_archive(archive)
        _extract(archive, root)
    missing = [f"{s}/{c}" for s in SPLITS for c in CLASSES if not (folder / s / c).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"{folder} is incomplete: {', '.join(missing)} missing. Delete the folder, then put "
            f"{ARCHIVE} into {root} (or set data.download=true) and dlexp extracts it again."
        )
    files = [(f, label) for s in SPLITS for f, label in _review_files(folder / s)]
    labels = [label for _, label in files]
    texts = (decode_text(f, f.read_bytes(), "utf-8") for f, _ in files)  # the release is UTF-8
    corpus = tokenize_corpus(texts, labels, lowercase)
    n_train = sum(1 for f, _ in files if f.parent.parent.name == "train")
    is_test = np.arange(len(files)) >= n_train
    _write_cache(cache, corpus, is_test, lowercase)
    return corpus, is_test


def cache_path(root: Path, lowercase: bool) -> Path:
    return root / f"aclImdb_tokens_{'lower' if lowercase else 'cased'}.npz"


def _not_found(root: Path) -> str:
    return (
        f"IMDB not found in {root}: expected the archive {root / ARCHIVE} "
        f"({ARCHIVE_BYTES / 2**20:.0f} MB) or the extracted folder {root / FOLDER} "
        f"(train/pos, train/neg, test/pos, test/neg). Set data.download=true to fetch it from "
        f"{URL} (needs internet), or download {ARCHIVE} elsewhere and copy it (or the extracted "
        f"{FOLDER} folder) into {root}; data.data_dir changes the folder."
    )


def _review_files(split_dir: Path) -> Iterator[tuple[Path, int]]:
    """(file, label) of one split, neg then pos, each in review-id order: a fixed order."""

    def review_id(path: Path) -> tuple[int, str]:
        head = path.stem.split("_", 1)[0]
        return (int(head) if head.isdigit() else -1, path.name)

    for label, name in enumerate(CLASSES):
        for path in sorted((split_dir / name).glob("*.txt"), key=review_id):
            yield path, label


# --- download, checksum, extraction ---------------------------------------------------------


def _download(url: str, dest: Path) -> None:
    """Stream `url` into `dest` via a temporary file: an interrupted download leaves nothing."""
    import urllib.request

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    made = not dest.parent.exists()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    console = Console(stderr=True, highlight=False)
    console.print(f"downloading IMDB from {url} into {dest.parent}", markup=False)
    columns = (TextColumn(ARCHIVE), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with (
            urllib.request.urlopen(url, timeout=60) as response,
            open(part, "wb") as out,
            Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar,
        ):
            task = bar.add_task("download", total=int(response.headers.get("Content-Length") or 0))
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.advance(task, len(chunk))
        os.replace(part, dest)
    except OSError as err:  # URLError, timeouts and disk errors are all OSErrors
        part.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                dest.parent.rmdir()  # only when empty: nothing of the failed download stays
        reason = " ".join(str(getattr(err, "reason", err)).split())
        raise DatasetNotFoundError(
            f"Downloading IMDB from {url} into {dest.parent} failed, so nothing was kept: "
            f"{reason}. Check the connection and try again, or download {ARCHIVE} elsewhere "
            f"and copy it (or the extracted {FOLDER} folder) into {dest.parent} and use "
            "data.download=false."
        ) from None


def verify_archive(archive: Path) -> None:
    """Compare the archive with the official release's SHA-256 before trusting its contents."""
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != ARCHIVE_SHA256:
        raise DatasetNotFoundError(
            f"{archive} is not the official {ARCHIVE}: its SHA-256 is {digest.hexdigest()}, "
            f"expected {ARCHIVE_SHA256} ({ARCHIVE_BYTES:,} bytes; this file has "
            f"{archive.stat().st_size:,}). It is incomplete or damaged: delete it and set "
            f"data.download=true, or copy the original there."
        )


def _wanted(name: str) -> bool:
    """Only the labelled reviews: aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt."""
    parts = name.split("/")
    return (
        len(parts) == 4
        and parts[0] == FOLDER
        and parts[1] in SPLITS
        and parts[2] in CLASSES
        and parts[3].endswith(".txt")
        and ".." not in parts
    )


def _extract(archive: Path, root: Path) -> None:
    """Extract into a temporary folder, then rename: an interrupted run leaves no half folder."""
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    tmp = Path(tempfile.mkdtemp(prefix=".aclImdb-", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.isfile() and _wanted(member.name):
                    tar.extract(member, tmp, **safe)
        if not (tmp / FOLDER).is_dir():
            raise DatasetNotFoundError(f"{archive} holds no {FOLDER}/ reviews; is it {ARCHIVE}?")
        os.replace(tmp / FOLDER, root / FOLDER)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DatasetNotFoundError(
            f"Could not extract {archive} ({type(err).__name__}: {err}). Delete it and download "
            f"it again, or extract it into {root} by hand."
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the tokenised cache ----------------------------------------------------------------------


def _meta(lowercase: bool) -> str:
    return json.dumps({"format": CACHE_FORMAT, "tokenizer": TOKENIZER_VERSION, "lower": lowercase})


def _read_cache(path: Path, lowercase: bool) -> tuple[Corpus, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if bytes(f["meta"]).decode() != _meta(lowercase):
                return None  # written by another tokenizer version: rebuilt below
            text = bytes(f["words"]).decode("utf-8")
            words = text.split("\n") if text else []
            corpus = Corpus(words, f["ids"], f["offsets"], f["labels"])
            return corpus, f["is_test"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # a damaged cache is simply rebuilt


def _write_cache(path: Path, corpus: Corpus, is_test: np.ndarray, lowercase: bool) -> None:
    """Write atomically; a read-only data_dir just means no cache. Tokens hold no whitespace,
    so the word list is stored as one newline-joined byte string (no pickle needed)."""
    tmp: str | None = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = f.name
            np.savez(
                f,
                meta=np.frombuffer(_meta(lowercase).encode(), dtype=np.uint8),
                words=np.frombuffer("\n".join(corpus.words).encode("utf-8"), dtype=np.uint8),
                ids=corpus.ids,
                offsets=corpus.offsets,
                labels=corpus.labels,
                is_test=is_test,
            )
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
