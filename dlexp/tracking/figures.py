"""Pictures people would rather look at than read: a confusion matrix and misclassified examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dlexp.errors import DlexpError


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display needed; figures go to files and TensorBoard
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true, predicted], computed with one bincount on the tensors' device."""
    flat = targets.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes).cpu()


def confusion_figure(counts: torch.Tensor, classes: Sequence[str]) -> Any:
    plt = _pyplot()
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    rates = counts.float() / counts.sum(1, keepdim=True).clamp_min(1)
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    labels = [str(c)[:12] for c in classes]
    ax.set_xticks(range(n), labels, rotation=90 if n > 10 else 45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                value = int(counts[i, j])
                if value:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=color)
    accuracy = counts.diag().sum().item() / max(1, counts.sum().item())
    ax.set_title(f"confusion matrix (accuracy {accuracy:.2%})")
    fig.tight_layout()
    return fig


def misclassified_figure(
    images: torch.Tensor,
    targets: torch.Tensor,
    preds: torch.Tensor,
    classes: Sequence[str],
    limit: int = 32,
) -> Any:
    """A grid of wrongly classified uint8 images (N, C, H, W) titled 'true → predicted'."""
    plt = _pyplot()
    wrong = (preds.cpu() != targets.cpu()).nonzero().flatten()[:limit]
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist(), strict=False):
        img = images[i].cpu()
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img.permute(1, 2, 0).numpy())
        true, pred = short_label(classes[int(targets[i])]), short_label(classes[int(preds[i])])
        ax.set_title(f"{true}→{pred}", fontsize=8, color="crimson")
    fig.suptitle(f"misclassified validation examples ({len(wrong)} shown)", fontsize=9)
    fig.tight_layout()
    return fig


def short_label(name: str, limit: int = 9) -> str:
    """'7 - seven' (torchvision's MNIST names) → '7'; long names are cut to fit a thumbnail."""
    name = str(name)
    return name.split(" - ")[0] if " - " in name else name[:limit]


def save_and_close(fig: Any, path: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def validation_figures(
    preds: torch.Tensor,
    targets: torch.Tensor,
    classes: Sequence[str],
    images: torch.Tensor | None = None,
) -> dict[str, Any]:
    """name → figure: the confusion matrix, and misclassified examples when there are images."""
    counts = confusion_matrix(preds, targets, len(classes))
    figs = {"confusion_matrix": confusion_figure(counts, classes)}
    if images is not None:
        figs["misclassified"] = misclassified_figure(images, targets, preds, classes)
    return figs


def save_grid(grid: torch.Tensor, path: Path) -> None:
    """A grid [3, H, W] in [0, 1] as a PNG (or JPEG, by the suffix)."""
    from torchvision.utils import save_image

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
    except OSError as exc:
        raise DlexpError(f"cannot write {path}: {exc.strerror or exc}") from None


def grid_figure(grid: torch.Tensor, title: str) -> Any:
    """A titled matplotlib Figure of a grid (for TensorBoard's images tab). No pyplot: nothing
    global to set up or close."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4.3), layout="tight")
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return fig
