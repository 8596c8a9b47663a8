"""New inputs for a trained classifier, read from files: images, `.npy` arrays and texts.

Torch-free. Images come back as uint8 arrays [C, H, W] at the size they have on disk, in the
run's colour mode (grayscale or RGB, converted by Pillow); texts as strings. Preparing them
exactly as in training (normalisation, padding, the vocabulary) is `engine/inference.py`'s job.
An input that cannot be used raises `Unreadable` with the reason: the caller names it, skips it
and goes on with the rest.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlexp.errors import DlexpError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
ARRAY_SUFFIX = ".npy"
TEXT_FORMATS = {
    ".txt": "lines",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
MODES = {1: "L", 3: "RGB"}  # channels -> Pillow mode


class Unreadable(Exception):
    """One input that cannot be used; the message says why. The other inputs go ahead."""


@dataclass
class ImageInput:
    """One image to classify: its name in the predictions file and how to read it."""

    name: str
    size: tuple[int, int]  # (height, width) on disk
    read: Callable[[], np.ndarray]  # uint8 [C, H, W]; raises Unreadable


def expand_folders(paths: Sequence[Path]) -> tuple[list[Path], int]:
    """Files as given, and the image and `.npy` files in folders (recursively, sorted; hidden
    ones left out); plus how many other files the folders held. An empty folder is an error."""
    files: list[Path] = []
    ignored = 0
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = [
            p
            for p in sorted(path.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
        images = [p for p in found if p.suffix.lower() in (*IMAGE_SUFFIXES, ARRAY_SUFFIX)]
        if not images:
            what = f" (only {len(found)} other file(s))" if found else ""
            raise DlexpError(
                f"{path} holds no image files{what}; give a folder of "
                f"{', '.join(IMAGE_SUFFIXES[:3])}, ... or .npy files"
            )
        files += images
        ignored += len(found) - len(images)
    return files, ignored


def scan_images(path: Path, channels: int) -> list[ImageInput]:
    """The images of one file: an image file is one, a `.npy` array one per row."""
    if path.suffix.lower() == ARRAY_SUFFIX:
        return _scan_array(path, channels)
    from PIL import Image, UnidentifiedImageError  # Pillow comes with torchvision/matplotlib

    try:
        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except UnidentifiedImageError:
        raise Unreadable("not an image file (Pillow cannot identify it)") from None
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc})") from None
    return [ImageInput(str(path), (height, width), lambda: _read_image(path, channels))]


def _read_image(path: Path, channels: int) -> np.ndarray:
    from PIL import Image

    if channels not in MODES:
        raise Unreadable(f"the run's images have {channels} channels: give them as a .npy array")
    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert(MODES[channels]), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise Unreadable(f"is damaged ({exc})") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1).copy()


def _scan_array(path: Path, channels: int) -> list[ImageInput]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Unreadable(f"is not a readable .npy array ({exc})") from None
    images = _as_nchw(array, channels)
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise Unreadable(f"holds {images.dtype} values; give uint8 0..255 or floats in [0, 1]")
    height, width = images.shape[-2:]

    def reader(i: int) -> Callable[[], np.ndarray]:
        return lambda: _pixels(np.asarray(images[i]))

    return [ImageInput(f"{path}[{i}]", (height, width), reader(i)) for i in range(images.shape[0])]


def _as_nchw(array: np.ndarray, channels: int) -> np.ndarray:
    """[H, W], [N, H, W] (one channel), [N, C, H, W] or [N, H, W, C] -> [N, C, H, W]."""
    shape = tuple(array.shape)
    if array.ndim == 2 and channels == 1:
        return array[None, None]
    if array.ndim == 3 and channels == 1:
        return array[:, None]
    if array.ndim == 3 and channels in (shape[0], shape[-1]):  # one colour image
        array = array[None]
    if array.ndim == 4 and shape[1] == channels:
        return array
    if array.ndim == 4 and shape[-1] == channels:
        return array.transpose(0, 3, 1, 2)
    raise Unreadable(
        f"has shape {shape}; the run's images have {channels} channel(s): give [N, H, W]"
        + (" or [H, W]" if channels == 1 else "")
        + f", [N, {channels}, H, W] or [N, H, W, {channels}]"
    )


def _pixels(image: np.ndarray) -> np.ndarray:
    """uint8 0..255 from integers in that range or floats in [0, 1]."""
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise Unreadable("holds floats outside [0, 1]; give uint8 0..255 or floats in [0, 1]")
        return np.rint(image * 255).astype(np.uint8)
    if image.min() < 0 or image.max() > 255:
        raise Unreadable("holds integers outside 0..255")
    return image.astype(np.uint8)


def read_texts(path: Path, column: str) -> Iterable[tuple[str, str | Unreadable]]:
    """(where, text) for every text of a `.txt` (one a line; blank lines left out), CSV, TSV
    or JSONL file (the `column` of each row); a row that cannot be used gives Unreadable."""
    fmt = TEXT_FORMATS[path.suffix.lower()]
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if fmt == "lines":
                rows = [(n, line.rstrip("\r\n")) for n, line in enumerate(f, 1)]
                return [(f"{path.name} line {n}", line) for n, line in rows if line.strip()]
            if fmt == "jsonl":
                return [
                    _json_text(path, n, line, column) for n, line in enumerate(f, 1) if line.strip()
                ]
            return _table_texts(path, f, "," if fmt == "csv" else "\t", column)
    except UnicodeDecodeError as exc:
        raise Unreadable(f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc})") from None


def _table_texts(path: Path, f: Iterable[str], delimiter: str, column: str) -> list:
    csv.field_size_limit(1 << 30)  # reviews can exceed the default 128 kB per field
    reader = csv.DictReader(f, delimiter=delimiter)
    header = list(reader.fieldnames or [])
    if column not in header:
        raise DlexpError(
            f"{path}: the run reads its texts from the column {column!r} (data.text_column), "
            f"but the header names {', '.join(header) or 'no columns'}"
        )
    rows = []
    for row in reader:
        where, text = f"{path.name} line {reader.line_num}", row.get(column)
        rows.append((where, _text_or_reason(text, column)))
    return rows


def _json_text(path: Path, n: int, line: str, column: str) -> tuple[str, str | Unreadable]:
    where = f"{path.name} line {n}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return where, Unreadable(f"is not valid JSON ({exc.msg})")
    if not isinstance(row, dict):
        return where, Unreadable("is not a JSON object with named fields")
    return where, _text_or_reason(row.get(column), column)


def _text_or_reason(text: object, column: str) -> str | Unreadable:
    if text is None:
        return Unreadable(f"has no {column!r} field")
    if not str(text).strip():
        return Unreadable(f"has an empty {column!r}")
    return str(text)
