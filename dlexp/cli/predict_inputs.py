"""The inputs of `dlexp predict`: gathered, checked against the run's task, then predicted in
batches. A wrong kind of input, a missing path or an empty folder stops the command before any
work; an input that cannot be read is skipped with its reason and the rest go ahead."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlexp.data.inputs import (
    ARRAY_SUFFIX,
    IMAGE_SUFFIXES,
    TEXT_FORMATS,
    ImageInput,
    Unreadable,
    expand_folders,
    read_texts,
    scan_images,
)
from dlexp.errors import DlexpError

TEXT_INPUTS = (
    ".txt (one text a line), .csv, .tsv or .jsonl files (the run's text column), or text=..."
)
IMAGE_INPUTS = "image files (.png, .jpg, ...), folders of them, or .npy arrays"
SHOWN = 5  # reasons named when nothing could be used


@dataclass
class Batch:
    """Inputs that can be tried: (name, text or image), and those already skipped."""

    items: list[tuple[str, Any]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Prediction:
    name: str
    top: list[tuple[str, float]]  # (class, probability), most probable first


@dataclass
class Result:
    predictions: list[Prediction]
    skipped: list[tuple[str, str]]
    notes: list[str]


def check_kind(kind: str, paths: list[Path], texts: list[str]) -> tuple[list[Path], list[str]]:
    """Before anything is loaded: inputs of the kind the run reads. Image runs: the files to
    try (folders expanded) and notes; text runs: the files as given."""
    if kind == "text":
        for path in paths:
            if path.is_dir() or path.suffix.lower() not in TEXT_FORMATS:
                image = path.is_dir() or path.suffix.lower() in (*IMAGE_SUFFIXES, ARRAY_SUFFIX)
                what = "a folder" if path.is_dir() else "an image" if image else "not a text file"
                raise DlexpError(
                    f"{path} is {what}, but this run classifies text: give {TEXT_INPUTS}"
                )
        return paths, []
    if texts:
        raise DlexpError(f"text=...: this run classifies images; give {IMAGE_INPUTS}")
    for path in paths:
        if path.is_file() and path.suffix.lower() in TEXT_FORMATS:
            raise DlexpError(
                f"{path} is a text file, but this run classifies images: give {IMAGE_INPUTS}"
            )
    files, ignored = expand_folders(paths)
    notes = [f"left out {ignored} file(s) in the folders that are not images"] if ignored else []
    return files, notes


def collect_texts(paths: list[Path], texts: list[str], column: str) -> Batch:
    """`text=` texts and every text of the files; rows that cannot be used are skipped."""
    batch = Batch([(text, text) for text in texts])
    for path in paths:
        try:
            rows = read_texts(path, column)
        except Unreadable as exc:
            batch.skipped.append((str(path), str(exc)))
            continue
        for where, text in rows:
            if isinstance(text, Unreadable):
                batch.skipped.append((where, str(text)))
            else:
                batch.items.append((text, text))
    return _usable(batch)


def collect_images(files: list[Path], notes: list[str], classifier: Any, resize: bool) -> Batch:
    """Every image of the files (a .npy array: one per row), checked for size."""
    batch = Batch([], notes=list(notes))
    for path in files:
        try:
            batch.items += [(image.name, image) for image in scan_images(path, classifier.channels)]
        except Unreadable as exc:
            batch.skipped.append((str(path), str(exc)))
    side = classifier.input_size
    other = [image for _, image in batch.items if image.size != (side, side)]
    if other:
        h, w = other[0].size
        if not resize:
            raise DlexpError(
                f"{len(other)} of {len(batch.items)} image(s) are not {side}x{side} px, the size "
                f"of the run's training images ({other[0].name} is {w}x{h}). Pass resize=true to "
                f"resize them to {side}x{side} (bilinear; the aspect ratio is not kept)"
            )
        batch.notes.append(f"resized {len(other)} image(s) to {side}x{side} px (resize=true)")
    return _usable(batch)


def _usable(batch: Batch) -> Batch:
    if not batch.items:
        raise DlexpError(_nothing(batch.skipped))
    return batch


def _nothing(skipped: list[tuple[str, str]]) -> str:
    reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped[:SHOWN])
    more = f"; and {len(skipped) - SHOWN} more" if len(skipped) > SHOWN else ""
    return f"none of the {len(skipped)} input(s) could be used: {reasons}{more}"


def predict_all(classifier: Any, batch: Batch, batch_size: int, top_k: int) -> Result:
    """Predictions for every item of `batch`, `batch_size` at a time, with a progress bar on
    a terminal when there is more than one batch."""
    from rich.progress import Progress

    result = Result([], list(batch.skipped), list(batch.notes))
    chunks = [batch.items[i : i + batch_size] for i in range(0, len(batch.items), batch_size)]
    k = min(top_k, len(classifier.classes))
    with Progress(transient=True, disable=len(chunks) < 2) as progress:
        task = progress.add_task("predicting", total=len(batch.items))
        for chunk in chunks:
            names, inputs = _prepare(classifier, chunk, result.skipped)
            if names:
                probs = classifier.probabilities(inputs)
                values, indices = probs.topk(k, dim=1)
                for name, p, i in zip(names, values.tolist(), indices.tolist(), strict=True):
                    top = [(classifier.classes[c], q) for c, q in zip(i, p, strict=True)]
                    result.predictions.append(Prediction(name, top))
            progress.advance(task, len(chunk))
    if not result.predictions:
        raise DlexpError(_nothing(result.skipped))
    return result


def _prepare(classifier: Any, chunk: list, skipped: list[tuple[str, str]]) -> tuple[list, Any]:
    """The names and the model's input for one chunk; images that fail to load are skipped."""
    if classifier.kind == "text":
        return [name for name, _ in chunk], classifier.encode([text for _, text in chunk])
    names, arrays = [], []
    for name, image in chunk:
        assert isinstance(image, ImageInput)
        try:
            arrays.append(image.read())
        except Unreadable as exc:
            skipped.append((name, str(exc)))
            continue
        names.append(name)
    return names, (classifier.prepare_images(arrays) if arrays else None)
