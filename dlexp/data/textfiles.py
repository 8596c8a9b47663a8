"""`data=text_files`: CSV / TSV / JSONL files, or one folder of .txt files per class."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dlexp.config.files import decode_text
from dlexp.config.names import SUFFIX_FORMATS
from dlexp.config.paths import expand_path
from dlexp.data.tokenize import Corpus, split_off, tokenize_corpus
from dlexp.errors import DlexpError

Record = tuple[str, str, str]  # where (file and line, for messages), text, label


@dataclass(frozen=True)
class TextFiles:
    """Local files: `train` is required; `val` and `test` are read when given, else split off
    the training file with `split_seed` (`val_fraction` and `test_fraction` of it).

    Paths are kept as the user wrote them (messages quote them) and expanded when read.
    `labels`: the declared labels in their order, or None for those found in `train`."""

    train: str | Path
    val: str | Path | None
    test: str | Path | None
    format: str  # auto | csv | tsv | jsonl | folder
    text_column: str
    label_column: str
    labels: tuple[str, ...] | None
    encoding: str
    val_fraction: float
    test_fraction: float
    split_seed: int
    lowercase: bool
    name: ClassVar[str] = "text_files"

    def load(self) -> tuple[Corpus, dict[str, np.ndarray], list[str]]:
        """The whole corpus, tokenised, with the document indices of each split and the class
        names."""
        return load_text_files(self)


def load_text_files(files: TextFiles) -> tuple[Corpus, dict[str, np.ndarray], list[str]]:
    """Every given file read and checked, labels mapped to class indices, the corpus tokenised;
    a split not given is drawn from the training file."""
    given = {"train": files.train, "val": files.val, "test": files.test}
    records = {s: _read_records(s, path, files) for s, path in given.items() if path}
    classes = _classes(files, records)
    position = {c: i for i, c in enumerate(classes)}
    texts, labels, splits = [], [], {}
    for split, rows in records.items():
        splits[split] = np.arange(len(texts), len(texts) + len(rows))
        texts += [text for _, text, _ in rows]
        labels += [position[label] for _, _, label in rows]
    corpus = tokenize_corpus(texts, labels, files.lowercase)
    rng, total = np.random.default_rng(files.split_seed), len(splits["train"])
    fractions = {"test": files.test_fraction, "val": files.val_fraction}
    for split in ("test", "val"):  # both fractions are of the whole training file
        if split not in splits:
            count = round(fractions[split] * total)
            splits["train"], splits[split] = split_off(splits["train"], count, rng)
    return corpus, splits, classes


def _read_records(split: str, given: str | Path, files: TextFiles) -> list[Record]:
    key, path = f"data.{split}", expand_path(given)
    if not path.exists():
        raise DlexpError(
            f"{key}: {path} does not exist. Give a CSV, TSV or JSONL file with a text and a "
            f"label column, or a folder with one sub-folder of .txt files per class."
        )
    fmt = files.format
    if fmt == "auto":
        fmt = "folder" if path.is_dir() else SUFFIX_FORMATS.get(path.suffix.lower(), "")
    if not fmt or (fmt == "folder") != path.is_dir():
        raise DlexpError(
            f"data.format={files.format} does not fit {key}={path} "
            f"({'a folder' if path.is_dir() else 'a file'}). Valid: csv, tsv, jsonl (files, "
            f"also told by the suffixes {', '.join(SUFFIX_FORMATS)}) or folder."
        )
    if fmt == "folder":
        rows = _read_folder(key, path, files.encoding)
    else:
        text = decode_text(path, path.read_bytes(), files.encoding, "data.encoding")
        rows = _read_table(path, text, fmt, files.text_column, files.label_column)
    if not rows:
        what = "no .txt files in its class folders" if fmt == "folder" else "no rows"
        raise DlexpError(f"{key}: {path} is empty ({what}); give it at least one example.")
    for where, text, _ in rows:
        if not text.strip():
            raise DlexpError(f"{key}: {where} has an empty text; remove it or give it text.")
    return rows


def _read_table(
    path: Path, text: str, fmt: str, text_column: str, label_column: str
) -> list[Record]:
    import csv
    import io

    with io.StringIO(text, newline="") as f:
        if fmt == "jsonl":
            raw = [
                (f"{path.name} line {n}", _json_row(path, n, line)) for n, line in enumerate(f, 1)
            ]
            raw = [(where, row) for where, row in raw if row is not None]
        else:
            csv.field_size_limit(1 << 30)  # reviews can exceed the default 128 kB per field
            reader = csv.DictReader(f, delimiter="," if fmt == "csv" else "\t")
            raw = _csv_rows(path, reader)
            header = list(reader.fieldnames or [])
            for column, key in ((text_column, "text_column"), (label_column, "label_column")):
                if header and column not in header:  # (an empty file: "no rows" below)
                    raise DlexpError(
                        f"data.{key}: column {column!r} is not in the header of {path.name} "
                        f"(line 1), which names: {', '.join(header)}. Set data.{key} to one "
                        "of them."
                    )
    rows = []
    for where, row in raw:
        for column, key in ((text_column, "text_column"), (label_column, "label_column")):
            if row.get(column) is None:
                found = ", ".join(str(k) for k in row if k is not None)
                raise DlexpError(
                    f"data.{key}: column {column!r} is missing in {where}; the columns there "
                    f"are: {found}. Set data.{key} to the right column name."
                )
        rows.append((where, str(row[text_column]), str(row[label_column]).strip()))
    return rows


def _csv_rows(path: Path, reader: Any) -> list[tuple[str, dict[str, Any]]]:
    """Rows with the line each starts on; a quote never closed swallows every line after it,
    which is said as such (the csv module reads it as one long text without a label)."""
    import csv

    rows, start = [], 2
    try:
        for row in reader:
            rows.append((f"{path.name} line {start}", row))
            if (
                reader.line_num > start and None in row.values() and not any(row.get(None) or [])
            ):  # a row cut short across several lines: an opening quote never closed
                raise DlexpError(
                    f'data: {path} line {start}: a quote (") opens a text that is never '
                    f"closed, so lines {start}-{reader.line_num} read as one text. Close the "
                    'quote, or double a quote inside a quoted text ("")'
                )
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DlexpError(f"data: {path} line {reader.line_num}: {exc}") from None
    return rows


def _json_row(path: Path, n: int, line: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DlexpError(f"data: {path} line {n} is not valid JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise DlexpError(f"data: {path} line {n} is not a JSON object with named fields")
    return row


def _read_folder(key: str, path: Path, encoding: str) -> list[Record]:
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    setting = "data.encoding"
    if not folders:
        raise DlexpError(
            f"{key}: {path} has no sub-folders. The folder format wants one sub-folder of .txt "
            f"files per class, e.g. {path / 'pos' / '1.txt'} and {path / 'neg' / '2.txt'}."
        )
    return [
        (str(f.relative_to(path.parent)), decode_text(f, f.read_bytes(), encoding, setting), d.name)
        for d in folders
        for f in sorted(d.glob("*.txt"))
    ]


def _classes(files: TextFiles, records: Mapping[str, list[Record]]) -> list[str]:
    """Declared `labels` (their order), or the training split's labels, sorted (numerically
    when they are all integers). Every label of every split must be one of them."""
    declared = files.labels
    found = {label for _, _, label in records["train"]}
    numeric = all(c.lstrip("-").isdigit() for c in found)
    classes = list(declared) if declared else sorted(found, key=_natural(numeric))
    for split, rows in records.items():
        for where, _, label in rows:
            if label in classes:
                continue
            if declared:
                raise DlexpError(
                    f"data.labels: {where} has label {label!r}, which is not one of the "
                    f"declared labels: {', '.join(classes)}."
                )
            raise DlexpError(
                f"data.{split}: {where} has label {label!r}, which never occurs in the "
                f"training data (labels there: {', '.join(classes)}). Declare every label "
                f"with data.labels=[...]."
            )
    if len(classes) < 2:
        raise DlexpError(
            f"data.train: {files.train} has only one label ({', '.join(classes)}); a "
            f"classifier needs at least two. "
            + (
                "Check that it holds one subfolder per class."
                if files.format == "folder" or Path(str(files.train)).expanduser().is_dir()
                else f"Check data.label_column={files.label_column}."
            )
        )
    return classes


def _natural(numeric: bool) -> Any:
    return (lambda c: int(c)) if numeric else (lambda c: c)
