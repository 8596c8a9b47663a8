"""`dlexp compare --plot`: the learning curves of the compared runs, one panel per metric."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlexp.errors import DlexpError
from dlexp.tracking.runs import Row, epoch_records, number


def plot_curves(runs: Sequence[Row], labels: Sequence[str], path: Path) -> None:
    """Per-epoch curves from metrics.jsonl: the monitored metric and the training loss."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.ticker import MaxNLocator

    curves = [epoch_records(r["folder"]) for r in runs]
    present = {k for records in curves for record in records for k in record}
    monitors = [k.removeprefix("best/") for r in runs for k in r if k.startswith("best/")]
    wanted = dict.fromkeys([*monitors, "train/loss", "train/g_loss", "train/d_loss"])
    panels = [m for m in wanted if m in present][:3]
    if not panels:
        raise DlexpError(f"--plot {path}: none of these runs has finished an epoch yet")
    # the legend goes under the panels, its labels wrapped to the width of a column: long
    # labels beside the panels would squeeze them to nothing
    width = 4.5 * len(panels) + 1
    columns = max(1, min(len(labels), int(width // 4.5)))
    wrapped = {label: textwrap.fill(label, 60, break_long_words=False) for label in labels}
    per_row = [
        max(wrapped[x].count("\n") + 1 for x in labels[i : i + columns])
        for i in range(0, len(labels), columns)
    ]
    fig = Figure(figsize=(width, 3.6 + 0.17 * sum(per_row) + 0.3), layout="constrained")
    FigureCanvasAgg(fig)
    handles: dict[str, Any] = {}
    for ax, metric in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for i, (label, records) in enumerate(zip(labels, curves, strict=True)):
            points = [(r["epoch"], number(r.get(metric))) for r in records]
            if points := [(x, y) for x, y in points if y is not None]:
                style = ("-", "--", ":", "-.")[i // 10 % 4]  # 10 colours, then a new dash
                xs, ys = zip(*points, strict=True)
                (handles[label],) = ax.plot(xs, ys, style, color=f"C{i % 10}", marker="o", ms=3)
        ax.set(title=metric, xlabel="epoch")
        epochs = sorted({int(x) for line in ax.get_lines() for x in line.get_xdata()})
        if len(epochs) <= 10:  # a tick at each epoch, none between (one epoch: not 0.95..1.05)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(
        list(handles.values()), [wrapped[x] for x in handles], loc="outside lower center",
        ncols=columns, fontsize="small", frameon=False,
    )  # fmt: skip
    fig.savefig(path, dpi=120)
