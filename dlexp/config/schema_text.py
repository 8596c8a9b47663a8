"""Schemas of the sequence family (RNN/LSTM/GRU models, text data sets). Torch-free.

`schema.validate` merges MODELS into the model tables and calls `validate_data` for data
configs with `kind: text` and `check_combination` for every classification config.
Keys the data set decides (vocab_size, num_classes, in_channels, ...) are not in the model
tables: setting them by hand is reported as an unknown key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlexp.config.files import encoding_problem
from dlexp.config.names import SUFFIX_FORMATS
from dlexp.config.paths import expand_path
from dlexp.config.spec import BOOL, PROB, Choice, Float, Int, Spec, _check_table

RNN = "dlexp.models.rnn.RNNClassifier"
SENTIMENT = "dlexp.models.rnn.SentimentLSTM"
TEXT_DATASETS = ("imdb", "text_files")
TEXT_MODELS = "model=lstm_sentiment, model=lstm, model=gru or model=rnn"

_SEQUENCE = {
    "_target_": Spec("str"),
    "task": Choice("classify"),
    "hidden_size": Int(1),
    "num_layers": Int(1),
    "bidirectional": BOOL,
    "dropout": PROB,
    "embedding_dim": Int(1),
    "pack": Choice("auto", "always"),
    "mkldnn": Choice("auto", True, False),
}
MODELS: dict[str, dict[str, Any]] = {
    RNN: {
        **_SEQUENCE,
        "cell": Choice("rnn", "lstm", "gru"),
        "readout": Choice("last", "mean", "max"),
    },
    SENTIMENT: _SEQUENCE,
}

_TEXT_COMMON = {
    "kind": Choice("text"),
    "name": Choice(*TEXT_DATASETS),
    "val_fraction": Float(0.0, 1.0, hi_open=True),
    "split_seed": Int(0),
    "lowercase": BOOL,
    "min_freq": Int(1),
    "max_vocab": Int(3, nullable=True),
    "max_len": Int(1),
    "bucket": BOOL,
}
PATH = Spec("str", nullable=True)
DATA: dict[str, dict[str, Any]] = {
    "imdb": {**_TEXT_COMMON, "data_dir": Spec("str"), "download": BOOL},
    "text_files": {
        **_TEXT_COMMON,
        "format": Choice("auto", "csv", "tsv", "jsonl", "folder"),
        "train": PATH,
        "val": PATH,
        "test": PATH,
        "text_column": Spec("str"),
        "label_column": Spec("str"),
        "labels": Spec("any", nullable=True),
        "test_fraction": Float(0.0, 1.0, hi_open=True),
        "encoding": Spec("str"),
    },
}


def validate_data(prefix: str, data: Mapping[str, Any]) -> list[str]:
    """Problems in a `kind: text` data config."""
    name = data.get("name")
    if name not in DATA:
        return [f"{prefix}.name: must be one of {', '.join(DATA)} for kind: text, got {name!r}"]
    problems = _check_table(prefix, data, DATA[name])
    if name != "text_files":
        return problems
    if not data.get("train"):
        problems.append(
            f"{prefix}.train: required for data=text_files, got {data.get('train') or 'null'}: the path "
            "of a CSV/TSV/JSONL file (text and label columns) or of a folder with one sub-folder "
            "of .txt files per class"
        )
    problems += [
        p for split in ("train", "val", "test") for p in _file_problems(prefix, split, data)
    ]
    bad_encoding = "encoding" in data and encoding_problem(f"{prefix}.encoding", data["encoding"])
    problems += [bad_encoding] if bad_encoding else []
    labels = data.get("labels")
    if labels is not None and (
        not isinstance(labels, list)
        or any(isinstance(v, bool) or not isinstance(v, (str, int)) for v in labels)
        or len({str(v) for v in labels}) != len(labels)
        or len(labels) < 2
    ):
        problems.append(
            f"{prefix}.labels: expected null or a list of at least two distinct labels like "
            f"[neg, pos], got {labels!r}"
        )
    fractions = [
        data.get(f"{s}_fraction") or 0.0 for s in ("val", "test") if data.get(s) in (None, "")
    ]
    if all(isinstance(f, (int, float)) for f in fractions) and sum(fractions) >= 1.0:
        problems.append(
            f"{prefix}.val_fraction + {prefix}.test_fraction: together they must leave some "
            f"training data (sum < 1), got {sum(fractions)}"
        )
    return problems


def _file_problems(prefix: str, split: str, data: Mapping[str, Any]) -> list[str]:
    """data.train / val / test must exist and be what data.format reads (a file or a folder)."""
    value, fmt = data.get(split), data.get("format", "auto")
    if not isinstance(value, str) or not value or "${" in value:
        return []
    path = expand_path(value)
    if not path.exists():
        return [
            f"{prefix}.{split}: {value} does not exist (relative paths start in {Path.cwd()}). "
            "Give a CSV, TSV or JSONL file with a text and a label column, or a folder with "
            "one sub-folder of .txt files per class"
        ]
    if fmt == "auto":
        fmt = "folder" if path.is_dir() else SUFFIX_FORMATS.get(path.suffix.lower(), "")
    if fmt and (fmt == "folder") == path.is_dir():
        return []
    return [
        f"{prefix}.format: {data.get('format')} does not fit {prefix}.{split}={value} "
        f"({'a folder' if path.is_dir() else 'a file'}). Valid: csv, tsv, jsonl (files, also "
        f"told by the suffixes {', '.join(SUFFIX_FORMATS)}) or folder"
    ]
