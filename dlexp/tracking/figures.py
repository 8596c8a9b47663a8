"""Pictures people would rather look at than read: a confusion matrix and misclassified examples.

Drawn with PIL into RGB arrays (H, W, 3, uint8), which go to PNG files and to TensorBoard as
they are: a few milliseconds each, where matplotlib took most of a second to import and draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlexp.errors import DlexpError

WHITE, BLACK, GRID = (255, 255, 255), (0, 0, 0), (210, 210, 210)
CRIMSON = (220, 20, 60)
# matplotlib's "Blues", from no share of a true class (white) to all of it (dark blue)
BLUES = np.array(
    [
        (247, 251, 255), (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
        (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107),
    ],
    dtype=np.float64,
)  # fmt: skip


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true, predicted], computed with one bincount on the tensors' device."""
    flat = targets.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes).cpu()


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1)
    except TypeError:
        return ImageFont.load_default()


def _text_width(draw: Any, text: str, font: Any) -> int:
    return int(draw.textlength(text, font=font))


def _vertical(text: str, font: Any, color: tuple[int, int, int]) -> Any:
    """`text` turned 90° to the left, on a transparent image, to paste beside a matrix."""
    from PIL import Image, ImageDraw

    width = int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(text, font=font)) + 2
    img = Image.new("RGBA", (width, font.size + 4), (0, 0, 0, 0))
    ImageDraw.Draw(img).text((1, 1), text, fill=color, font=font)
    return img.rotate(90, expand=True)


def blues(rates: np.ndarray) -> np.ndarray:
    """Shares in [0, 1] → RGB uint8 colours along the Blues ramp."""
    pos = np.clip(rates, 0, 1) * (len(BLUES) - 1)
    low = np.floor(pos).astype(int).clip(max=len(BLUES) - 2)
    frac = (pos - low)[..., None]
    return np.rint(BLUES[low] * (1 - frac) + BLUES[low + 1] * frac).astype(np.uint8)


def confusion_image(counts: torch.Tensor, classes: Sequence[str]) -> np.ndarray:
    """Rows: true class, columns: predicted; cells coloured by the share of their row, with
    the counts written in (up to 20 classes)."""
    from PIL import Image, ImageDraw

    n = len(classes)
    table = counts.numpy().astype(np.int64)
    rates = table / np.maximum(table.sum(1, keepdims=True), 1)
    cell = 36 if n <= 12 else 28 if n <= 20 else max(6, 560 // n)
    font, small = _font(11), _font(10)
    # many classes: labels as tall as a cell, borders only where they show
    label_font = font if cell >= 14 else _font(max(6, cell - 2))
    labels = [str(c)[:12] for c in classes]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(_text_width(measure, s, label_font) for s in labels) + 8
    left, top = label_w + 20, 44
    columns = [_vertical(s, label_font, BLACK) for s in labels]
    bottom = max(c.height for c in columns) + 24
    side = n * cell
    img = Image.new("RGB", (max(left + side + 12, 280), top + side + bottom), WHITE)
    draw = ImageDraw.Draw(img)
    accuracy = np.trace(table) / max(1, table.sum())
    draw.text((8, 6), f"confusion matrix (accuracy {accuracy:.2%})", fill=BLACK, font=font)
    draw.text((8, 22), "colour: share of the true class", fill=(90, 90, 90), font=small)
    pixels = np.repeat(np.repeat(blues(rates), cell, 0), cell, 1)
    img.paste(Image.fromarray(pixels), (left, top))
    for k in range(n + 1 if cell >= 8 else 0):  # cell borders
        draw.line([(left + k * cell, top), (left + k * cell, top + side)], fill=GRID)
        draw.line([(left, top + k * cell), (left + side, top + k * cell)], fill=GRID)
    for i in range(n):
        y = top + i * cell + cell // 2
        draw.text((left - 6, y), labels[i], fill=BLACK, font=label_font, anchor="rm")
        col = columns[i]
        img.paste(col, (left + i * cell + (cell - col.width) // 2, top + side + 4), col)
        if n > 20:
            continue
        for j in range(n):
            if table[i, j]:
                color = WHITE if rates[i, j] > 0.5 else BLACK
                xy = (left + j * cell + cell // 2, y)
                draw.text(xy, str(table[i, j]), fill=color, font=small, anchor="mm")
    draw.text((left + side // 2, img.height - 6), "predicted", fill=BLACK, font=font, anchor="md")
    true = _vertical("true", font, BLACK)
    img.paste(true, (2, top + (side - true.height) // 2), true)
    return np.asarray(img)


def misclassified_image(
    images: torch.Tensor,
    targets: torch.Tensor,
    preds: torch.Tensor,
    classes: Sequence[str],
    limit: int = 32,
) -> np.ndarray:
    """A grid of wrongly classified uint8 images (N, C, H, W), each captioned "true->predicted"."""
    from PIL import Image, ImageDraw

    every = (preds.cpu() != targets.cpu()).nonzero().flatten()
    wrong = every[:limit].tolist()
    captions = [
        f"{short_label(classes[int(targets[i])])}->{short_label(classes[int(preds[i])])}"
        for i in wrong
    ]
    font, small = _font(11), _font(10)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widest = max((_text_width(measure, c, small) for c in captions), default=0)
    scale = max(1, 64 // int(images.shape[-1]))
    thumb = int(images.shape[-1]) * scale
    tile_w, tile_h, cols, head = max(thumb, widest) + 8, thumb + 20, 8, 26
    rows = max(1, -(-len(wrong) // cols))
    img = Image.new("RGB", (cols * tile_w + 8, head + rows * tile_h + 4), WHITE)
    draw = ImageDraw.Draw(img)
    draw.text((6, 6), misclassified_caption(len(wrong), len(every)), fill=BLACK, font=font)
    for k, (i, caption) in enumerate(zip(wrong, captions, strict=True)):
        x, y = 4 + (k % cols) * tile_w, head + (k // cols) * tile_h
        pixels = images[i].cpu().permute(1, 2, 0).numpy()
        if pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        pixels = np.ascontiguousarray(np.repeat(np.repeat(pixels, scale, 0), scale, 1))
        draw.text((x + tile_w // 2, y + 7), caption, fill=CRIMSON, font=small, anchor="mm")
        img.paste(Image.fromarray(pixels), (x + (tile_w - thumb) // 2, y + 15))
    return np.asarray(img)


def misclassified_caption(shown: int, wrong: int) -> str:
    return f"misclassified validation examples: true -> predicted, {shown} of {wrong} shown"


def short_label(name: str, limit: int = 9) -> str:
    """'7 - seven' (torchvision's MNIST names) → '7'; long names are cut to fit a thumbnail."""
    name = str(name)
    return name.split(" - ")[0] if " - " in name else name[:limit]


def as_rgb(figure: Any) -> np.ndarray:
    """An RGB array (H, W, 3, uint8) from an RGB array or a matplotlib Figure (a VAE's latent
    scatter is one)."""
    if getattr(figure, "ndim", None) == 3:
        return np.ascontiguousarray(figure)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # only for a Figure

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(image: Any, path: Path) -> None:
    """Write an RGB array (or a matplotlib Figure, e.g. a scatter plot) as a PNG, atomically:
    a run stopped meanwhile leaves no half file."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if hasattr(image, "savefig"):
        image.savefig(tmp, format="png", dpi=100)
    else:
        Image.fromarray(image).save(tmp, format="PNG")
    tmp.replace(path)


def validation_figures(
    preds: torch.Tensor,
    targets: torch.Tensor,
    classes: Sequence[str],
    images: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """name → RGB image: the confusion matrix, and misclassified examples when there are images."""
    counts = confusion_matrix(preds, targets, len(classes))
    figs = {"confusion_matrix": confusion_image(counts, classes)}
    if images is not None:
        figs["misclassified"] = misclassified_image(images, targets, preds, classes)
    return figs


def save_grid(grid: torch.Tensor, path: Path) -> None:
    """A grid [3, H, W] in [0, 1] as a PNG (or JPEG, by the suffix)."""
    from torchvision.utils import save_image

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
    except OSError as exc:
        raise DlexpError(f"cannot write {path}: {exc.strerror or exc}") from None


def grid_image(grid: torch.Tensor, title: str = "") -> np.ndarray:
    """A grid [3, H, W] in [0, 1] as an RGB array, with `title` above it (TensorBoard)."""
    from PIL import Image, ImageDraw

    pixels = grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if not title:
        return np.ascontiguousarray(pixels)
    font, head = _font(11), 20
    width = max(
        pixels.shape[1], _text_width(ImageDraw.Draw(Image.new("RGB", (1, 1))), title, font) + 8
    )
    img = Image.new("RGB", (width, pixels.shape[0] + head), WHITE)
    img.paste(Image.fromarray(np.ascontiguousarray(pixels)), ((width - pixels.shape[1]) // 2, head))
    ImageDraw.Draw(img).text((4, 4), title, fill=BLACK, font=font)
    return np.asarray(img)
